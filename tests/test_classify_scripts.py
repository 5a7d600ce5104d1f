"""tools/classify_scripts.py: the launch-script corpus classified as expected.json says,
crashes and hangs recorded without stopping the run, reasons normalised, the page rewritten."""
import json
import os
import time

import pytest

from tools import classify_scripts

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tests", "launch_scripts")
EXPECTED_PATH = os.path.join(SCRIPTS, "expected.json")
EXPECTED = json.load(open(EXPECTED_PATH))


def expected_outcome(entry):
    refused = any(key in entry["canonical"] for key in ("refused", "refused_entry", "refused_launcher"))
    return "refused" if refused else "converted"


@pytest.fixture(scope="module")
def corpus_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("classify") / "report.json"
    assert classify_scripts.main([SCRIPTS, "--args-from", EXPECTED_PATH, "--json", str(out)]) == 0
    return json.loads(out.read_text())


def test_every_corpus_script_is_classified_as_expected(corpus_report):
    got = {s["script"]: s for s in corpus_report["scripts"]}
    assert sorted(got) == sorted(EXPECTED)
    for name, entry in EXPECTED.items():
        assert got[name]["outcome"] == expected_outcome(entry), (name, got[name]["raw"])


def test_refusals_name_the_flag_or_entry_that_blocks(corpus_report):
    got = {s["script"]: s for s in corpus_report["scripts"]}
    for name, entry in EXPECTED.items():
        for flag in entry["canonical"].get("refused", []):
            assert any(flag in reason for reason in got[name]["raw"]), (name, got[name]["raw"])
        if "refused_entry" in entry["canonical"]:
            assert got[name]["reasons"][0] == ["non-GPT entry point", entry["canonical"]["refused_entry"]]


def test_headline_counts_match_the_outcomes(corpus_report):
    n_converted = sum(expected_outcome(e) == "converted" for e in EXPECTED.values())
    pct = round(100 * n_converted / len(EXPECTED))
    assert corpus_report["headline"] == (f"{len(EXPECTED)} scripts: {n_converted} converted ({pct}%), "
                                         f"{len(EXPECTED) - n_converted} refused, 0 crash")


def _script(tmp_path, name, text="torchrun --nproc_per_node 2 pretrain_gpt.py --num-layers 2\n"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_crash_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    real_main = classify_scripts.convert_args.main

    def flaky(argv):
        if argv[0].endswith("a_bad.sh"):
            raise KeyError("boom")
        return real_main(argv)

    monkeypatch.setattr(classify_scripts.convert_args, "main", flaky)
    _script(tmp_path, "a_bad.sh")
    _script(tmp_path, "b_typo.sh", "torchrun pretrain_gpt.py --num-layerz 2\n")
    outcomes = classify_scripts.survey([str(tmp_path)], {}, timeout=30)
    assert [(o.script, o.outcome) for o in outcomes] == [("a_bad.sh", "crash"), ("b_typo.sh", "refused")]
    assert outcomes[0].reasons == [("crash", "KeyError")] and "test_classify_scripts.py" in outcomes[0].raw[0]
    assert outcomes[1].reasons[0] == ("unknown flag", "--num-layerz")


def test_a_hang_is_cut_off_as_a_timeout(tmp_path, monkeypatch):
    def hang(argv):
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(classify_scripts.convert_args, "main", hang)
    started = time.monotonic()
    outcome, reasons = classify_scripts.classify(_script(tmp_path, "slow.sh"), timeout=0.3)
    assert outcome == "crash" and reasons[0].startswith("timeout") and time.monotonic() - started < 5


@pytest.mark.parametrize("reason,expected", [
    ("/x/run.sh: no launch line of torchrun, python -m torch.distributed.launch|run or python SCRIPT.py was found",
     ("no launch line found", "")),
    ("unknown flag --use-mpi; did you mean --use-cpu-initialization?", ("unknown flag", "--use-mpi")),
    ("--rampup-batch-size is not supported: batch-size ramp-up; instead: constant",
     ("rejected flag", "--rampup-batch-size")),
    ("/x/run.sh:44: entry point pretrain_bert.py trains a BERT model; the engine",
     ("non-GPT entry point", "pretrain_bert.py")),
    ("--save: expects one value (a string), got 0: ''", ("flag left without a value", "--save")),
    ("--load: expects one value (a string), got 4: 'your model ckpt path'",
     ("flag value split into several words", "--load")),
    ("--lr: could not convert 'abc' to float", ("bad flag value", "--lr")),
    ("add --micro-batch-size: Megatron needs the micro batch size per GPU", ("missing flag", "--micro-batch-size")),
    ("/x/run.sh:12: 'if' is not closed by 'fi'", ("other", "'if' is not closed by 'fi'")),
    ("the architecture needs --num-layers as well", ("missing flag", "--num-layers")),
    ("posttrain_gpt.py needs --stage: MindSpeed-LLM picks its trainer by it", ("missing flag", "--stage")),
    ("unexpected argument 'IP': every value must follow a flag", ("stray value", "'IP'")),
    ("rope models map to the Llama/Qwen families, which need --normalization RMSNorm",
     ("architecture", "rope models map to the Llama/Qwen families")),
    ("KeyError: 'boom' at shell_reader.py:900", ("crash", "KeyError")),
    ("/x/run.sh:3: entry point preprocess_data.py does not describe a model to train (it is not given --num-layers",
     ("not a training script", "preprocess_data.py")),
    ("/x/run.sh:4: torchrun --master_addr is given $MASTER_ADDR='your master node IP', which bash splits into 4 words",
     ("value split into the script's place", "MASTER_ADDR")),
    ("/x/run.sh:1: torchrun has no script to run: $TRAIN_SCRIPT is not set", ("no script to run", "torchrun")),
    ("/x/run.sh:2: torchrun --nproc_per_node (line 2) has no value: $GPUS is set to an empty value",
     ("launcher option without a value", "torchrun --nproc_per_node")),
])
def test_reasons_are_normalised(reason, expected):
    assert classify_scripts.normalise(reason) == expected


@pytest.mark.parametrize("text,style", [
    ('srun --jobid $SLURM_JOB_ID bash -c "torchrun --nnodes $SLURM_NNODES train.py"\n', "srun + bash -c + torchrun"),
    ("mpirun -np 16 -x PATH python pretrain_gpt.py --num-layers 2\n", "mpirun"),
    ('cmd="python -m torch.distributed.run pretrain_gpt.py"\neval $cmd\n', "eval + torch.distributed"),
    ("deepspeed \\\n  --num_gpus 8 pretrain_gpt.py --deepspeed\n# srun is only mentioned here\n", "deepspeed"),
    ("python pretrain_gpt.py --num-layers 2\n", "python"),
])
def test_launcher_style_names_wrappers_outer_first(text, style):
    assert classify_scripts.launcher_style(text) == style


def test_markdown_rewrites_only_the_generated_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"# Intro kept\n{classify_scripts.BEGIN}\nold table\n{classify_scripts.END}\nfooter kept\n")
    assert classify_scripts.main([os.path.join(SCRIPTS, "llama3_8b_megatron.sh"), "--markdown", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("# Intro kept\n") and text.endswith("footer kept\n") and "old table" not in text
    assert "| source | path | launcher | outcome | blocking reason |" in text
    assert "1 scripts: 1 converted (100%)" in text


def test_markdown_page_without_markers_is_an_error(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="page.md has no"):
        classify_scripts.main([_script(tmp_path, "ok.sh"), "--markdown", str(page)])


def test_tallies_count_scripts_not_reasons():
    Outcome = classify_scripts.Outcome
    outcomes = [
        Outcome("a.sh", "s", "torchrun", "refused", [("rejected flag", "--x"), ("rejected flag", "--y")]),
        Outcome("b.sh", "s", "torchrun", "refused", [("unknown flag", "--z"), ("rejected flag", "--x")]),
        Outcome("c.sh", "s", "torchrun", "converted"),
    ]
    assert classify_scripts.by_category(outcomes) == [("rejected flag", 1, 2), ("unknown flag", 1, 1)]
    assert classify_scripts.by_reason(outcomes)[0] == ("rejected flag", "--x", 1, 2, 0)
    assert classify_scripts.by_source(outcomes) == [("s", 3, 1, 2, 0)]


def test_a_system_exit_is_a_crash_but_ctrl_c_still_stops(tmp_path, monkeypatch):
    def leave(argv):
        raise SystemExit(3)

    monkeypatch.setattr(classify_scripts.convert_args, "main", leave)
    outcome, reasons = classify_scripts.classify(_script(tmp_path, "x.sh"))
    assert outcome == "crash" and reasons[0].startswith("SystemExit: 3")

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(classify_scripts.convert_args, "main", interrupted)
    with pytest.raises(KeyboardInterrupt):
        classify_scripts.classify(_script(tmp_path, "y.sh"))


SURVEY_REASONS = os.path.join(ROOT, "docs", "launch_script_survey_reasons.tsv")


@pytest.mark.parametrize("reason,klass", [
    # a Mamba flag the script leaves without a value is the script's, not a missing Mamba layer
    ("/x/train.sh:103: --hybrid-layer-pattern has no value (line 103): it is written --hybrid-layer-pattern "
     "$HYBRID_LAYER_PATTERN, and $HYBRID_LAYER_PATTERN is not set by the script", "as published"),
    ("/x/train.sh:9: --mamba-state-dim has no value (line 9): it is written --mamba-state-dim $S", "as published"),
    ("unknown flag --mamba-num-heads: not a flag here", "gap"),
    ("/x/run_gpt3.sh:116: --seed has no value (line 116): it is written --seed $RANDOM, and $RANDOM is bash's random "
     "number (0-32767), a new one at every expansion: known only at run time; give it a value", "as published"),
])
def test_survey_reasons_tell_a_missing_value_from_a_mamba_gap(reason, klass):
    rules = classify_scripts.read_reason_kinds(SURVEY_REASONS)
    assert classify_scripts.kind_of(reason, rules)[0] == klass
