"""The command lines: convert_args on the launch-script corpus, --list-flags, --to-megatron,
and pretrain_gpt.py --print-config on every public example argv."""
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from fsdp2_core.config import config_to_sections, load_config
from megatron_compat.cli import main as pretrain_main
from megatron_compat.flag_spec import REFERENCE_FILES, reference_spellings
from megatron_compat.launch_script import run_time_overrides
from megatron_compat.shell import read_launch_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tests", "launch_scripts")
EXPECTED = json.load(open(os.path.join(SCRIPTS, "expected.json")))
REAL_ARGV = os.path.join(ROOT, "tests", "reference", "real_launch_argv.json")
from tools.classify_scripts import run_convert  # noqa: E402  (convert_args.main with its output captured)


def _get(cfg, dotted):
    obj = cfg
    for part in dotted.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_script_converts_to_expected_config(name, tmp_path):
    expected = EXPECTED[name]["canonical"]
    yaml_out, script_out = tmp_path / "new.yaml", tmp_path / "new.sh"
    argv = [os.path.join(SCRIPTS, name), "-o", str(yaml_out), "--script-out", str(script_out)]
    if EXPECTED[name].get("script_args"):
        argv += ["--"] + EXPECTED[name]["script_args"]
    code, out, err = run_convert(argv)
    if "refused" in expected or "refused_entry" in expected or "refused_launcher" in expected:
        assert code == 1 and not yaml_out.exists() and not script_out.exists()
        for flag in expected.get("refused", []):
            assert flag in err
        if "refused_entry" in expected:
            assert f"entry point {expected['refused_entry']}" in err
        if "refused_launcher" in expected:
            assert f"{expected['refused_launcher']} starts MindSpore processes" in err
        return
    if "already_fsdp2" in expected:
        assert code == 0 and "nothing to convert" in out and not yaml_out.exists()
        return
    assert code == 0, err
    cfg = load_config(str(yaml_out))
    for key, value in expected.items():
        assert _get(cfg, key) == value, key
    new = read_launch_script(script_out.read_text(), (), str(script_out))
    # a field holding a command substitution the conversion did not run is computed by the new script, at run time
    overrides = run_time_overrides(config_to_sections(cfg, only_changed=True))
    assert new.entry_name == "train_fsdp2.py" and new.argv == [str(yaml_out)] + overrides
    assert load_config(str(yaml_out), overrides) == cfg
    old = read_launch_script(open(os.path.join(SCRIPTS, name)).read(), EXPECTED[name].get("script_args", []), name)
    assert new.world_size == old.world_size
    assert [s.kind for s in new.wrappers] == [s.kind for s in old.wrappers]  # srun stays srun, mpirun mpirun
    assert f"world size {old.world_size or 'unknown'} ({old.world_size_source})" in out
    assert "mapped" in out and "dialect: megatron" in out


def test_force_writes_without_the_refused_flags(tmp_path):
    yaml_out = tmp_path / "new.yaml"
    code, out, err = run_convert([os.path.join(SCRIPTS, "posttrain_sft_function.sh"), "-o", str(yaml_out),
                                  "--script-out", str(tmp_path / "new.sh"), "--force"])
    assert code == 1 and yaml_out.exists() and "--position-embedding-type" in out
    assert load_config(str(yaml_out)).parallel.tp_size == 2


def test_script_read_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("echo hello\n")
    code, _, err = run_convert([str(bad)])
    assert code == 1 and "bad.sh" in err


@pytest.mark.subprocess
def test_list_flags_covers_every_reference_spelling():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_args.py"), "--list-flags"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert all(len(r) == 3 and r[1] in ("mapped", "absorbed", "rejected") and r[2] for r in rows)
    listed = [r[0] for r in rows]
    assert len(listed) == len(set(listed))
    missing = {s for f in REFERENCE_FILES for s in reference_spellings(f)} - set(listed)
    assert not missing, sorted(missing)[:20]


def test_to_megatron_round_trip(tmp_path):
    yaml_out = tmp_path / "new.yaml"
    assert run_convert([os.path.join(SCRIPTS, "qwen3_30b_a3b_mindspeed.sh"), "-o", str(yaml_out),
                        "--script-out", str(tmp_path / "new.sh")])[0] == 0
    code, out, _ = run_convert(["--to-megatron", str(yaml_out)])
    assert code == 0
    flags = out.replace("\\\n", " ").split()
    from megatron_compat.translate import translate
    again = translate(flags, world_size=16)
    assert again.ok, again.problems()
    assert again.config == load_config(str(yaml_out))


def _real_pretrain_argvs():
    data = json.load(open(REAL_ARGV))
    return [(k, v) for k, v in data.items() if k != "_about" and v["entry"] == "pretrain_gpt.py"]


def _world(launcher):
    def value(*names):
        for i, tok in enumerate(launcher):
            if tok in names:
                return int(launcher[i + 1])
        return 1
    return value("--nproc_per_node", "--nproc-per-node") * value("--nnodes")


@pytest.mark.parametrize("name,entry", _real_pretrain_argvs(), ids=[k for k, _ in _real_pretrain_argvs()])
def test_print_config_on_public_example_argv(name, entry, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", str(_world(entry["launcher"])))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = pretrain_main(entry["args"] + ["--print-config"])
    if code == 0:
        cfg = yaml.safe_load(out.getvalue())
        assert cfg["training"]["output_dir"] and cfg["model"]["architecture"]["model_type"]
    else:
        assert code == 2 and "refusing to start" in err.getvalue()
        reasons = err.getvalue().split("refusing to start:")[1]
        assert "--" in reasons  # every refusal names a flag
    assert "dialect: megatron" in err.getvalue()


_TINY_GPT = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
             "--micro-batch-size 2 --global-batch-size 64 --train-iters 10 --lr 1e-3 --vocab-size 128 "
             "--tokenizer-type NullTokenizer --data-path /data/x_text_document --save /ckpt/x")


def test_bashs_random_seed_is_named_as_a_run_time_value(tmp_path):
    """MLPerf's GPT-3 script: --seed $RANDOM. bash sets $RANDOM (a new number at every run); the reason said the script
    did not set it."""
    script = tmp_path / "run.sh"
    script.write_text(f"torchrun --nproc_per_node 8 pretrain_gpt.py {_TINY_GPT} --seed $RANDOM\n")
    code, _, err = run_convert([str(script), "-o", str(tmp_path / "new.yaml"), "--script-out", str(tmp_path / "n.sh")])
    assert code == 1
    assert "--seed has no value (line 1): it is written --seed $RANDOM, and $RANDOM is bash's random number" in err
    assert "known only at run time" in err and "--set RANDOM=VALUE" in err
    assert "$RANDOM is not set by the script" not in err and "${RANDOM} is not set" not in err
    code, _, err = run_convert([str(script), "-o", str(tmp_path / "new.yaml"), "--script-out", str(tmp_path / "n.sh"),
                                "--set", "RANDOM=1234"])
    assert code == 0, err
    assert load_config(str(tmp_path / "new.yaml")).training.seed == 1234


def test_empty_variable_in_the_launch_line_is_named(tmp_path):
    """Unset, $GPUS_PER_NODE shifted torchrun's options: the report named an entry point "4". Now it names it."""
    script = tmp_path / "run.sh"
    script.write_text(f"torchrun --nproc_per_node $GPUS_PER_NODE --nnodes 4 pretrain_gpt.py {_TINY_GPT}\n")
    out_args = ["-o", str(tmp_path / "new.yaml"), "--script-out", str(tmp_path / "new.sh")]
    code, out, err = run_convert([str(script)] + out_args)
    assert code == 0, err
    assert "pretrain_gpt.py launched at line 1 by torchrun, world size unknown (torchrun --nproc_per_node " \
           "$GPUS_PER_NODE, known at run time)" in out
    assert "$GPUS_PER_NODE is not set by the script" in err and "--set GPUS_PER_NODE=VALUE" in err
    assert 'NPROC_PER_NODE=${NPROC_PER_NODE:-"$GPUS_PER_NODE"}' in (tmp_path / "new.sh").read_text()
    code, out, err = run_convert([str(script)] + out_args + ["--set", "GPUS_PER_NODE=8"])
    assert code == 0 and "world size 32 (torchrun --nproc_per_node 8 × --nnodes 4)" in out
    assert load_config(str(tmp_path / "new.yaml")).training.gradient_accumulation_steps == 1  # 64 = 2 × 32 × 1
    code, _, err = run_convert([str(script), "--set", "GPUS_PER_NODE"])
    assert code == 1 and "--set GPUS_PER_NODE: give NAME=VALUE" in err


def test_fork_entry_point_is_judged_by_its_flags(tmp_path):
    code, out, err = run_convert([os.path.join(SCRIPTS, "fork_entry_qwen.sh"), "-o", str(tmp_path / "new.yaml"),
                                  "--script-out", str(tmp_path / "new.sh")])
    assert code == 0, err
    assert ("entry point pretrain_qwen.py is not Megatron's pretrain_gpt.py; judged a GPT-style decoder by its "
            "flags") in out
    script = tmp_path / "t5.sh"
    script.write_text(f"torchrun pretrain_t5_like.py {_TINY_GPT} --encoder-num-layers 2 --decoder-num-layers 2\n")
    code, _, err = run_convert([str(script)])
    assert code == 1 and "entry point pretrain_t5_like.py trains a T5 encoder-decoder model (it is given " \
                         "--decoder-num-layers)" in err


def test_an_option_in_a_string_that_grows_itself_still_names_its_variable(tmp_path):
    """OPTS="... --micro-batch-size ${MBS}"; OPTS="${OPTS} --more": each assignment replaces the variable, but the
    first one's text still says which variable follows the option (LOLA's scaling script, run without arguments)."""
    script = tmp_path / "run.sh"
    script.write_text(f'MBS=$1\nOPTS="{_TINY_GPT} --micro-batch-size $MBS"\nOPTS="${{OPTS}} --seed 3"\n'
                      "torchrun --nproc_per_node 8 pretrain_gpt.py $OPTS\n")
    code, _, err = run_convert([str(script), "-o", str(tmp_path / "new.yaml"), "--script-out", str(tmp_path / "n.sh")])
    assert code == 1
    assert "--micro-batch-size has no value (line 4): it is written --micro-batch-size $MBS, and $MBS is set from " \
           "the script's argument 1" in err, err


def test_huge_arithmetic_wraps_as_bash_does(tmp_path):
    """$((2**99999)) once reached Python's big integers (an error about 4300 digits); bash computes in 64 bits."""
    script = tmp_path / "run.sh"
    script.write_text(f"torchrun --nproc_per_node 8 pretrain_gpt.py {_TINY_GPT} --seed $((2**99999 + 7))\n")
    code, _, err = run_convert([str(script), "-o", str(tmp_path / "new.yaml"), "--script-out", str(tmp_path / "n.sh")])
    assert code == 0, err
    assert yaml.safe_load((tmp_path / "new.yaml").read_text())["training"]["seed"] == 7


def test_a_path_that_starts_with_the_callers_variable_is_passed_when_the_new_script_runs(tmp_path):
    """`--save $HOME/ckpt`: nothing here sets HOME (convert_args takes the environment only from --set); cut to
    /ckpt the path would be wrong, so the new script passes it as the old one had it, with HOME live, and says so.
    --set gives the value now; ${X:-default} gives a value and converts."""
    script = tmp_path / "run.sh"
    tiny = _TINY_GPT.replace("--save /ckpt/x", "--save $HOME/ckpt/x")
    script.write_text(f"torchrun --nproc_per_node 8 pretrain_gpt.py {tiny}\n")
    out = ["-o", str(tmp_path / "new.yaml"), "--script-out", str(tmp_path / "n.sh")]
    code, _, err = run_convert([str(script)] + out)
    assert code == 0, err
    assert "--save is ${HOME}/ckpt/x, from the caller's environment" in err
    assert yaml.safe_load((tmp_path / "new.yaml").read_text())["training"]["output_dir"] == "${HOME}/ckpt/x"
    assert '--training.output_dir \\\n    "${HOME}/ckpt/x"' in (tmp_path / "n.sh").read_text()
    assert run_convert([str(script), "--set", "HOME=/home/me"] + out)[0] == 0
    assert yaml.safe_load((tmp_path / "new.yaml").read_text())["training"]["output_dir"] == "/home/me/ckpt/x"
    assert "--training.output_dir" not in (tmp_path / "n.sh").read_text()
    script.write_text(f"torchrun --nproc_per_node 8 pretrain_gpt.py {_TINY_GPT} --seed ${{SEED:-7}}\n")
    assert run_convert([str(script)] + out)[0] == 0


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_paths_from_the_scripts_arguments_are_the_new_scripts_arguments(tmp_path):
    """Megatron-LM's examples take their paths as arguments (CHECKPOINT_PATH=$1, DATA_PATH=$2). Converted without
    them, the new script takes the same arguments and passes those paths to train_fsdp2.py; a number taken from an
    argument still stops the conversion (the config needs it)."""
    tiny = _TINY_GPT.replace("--save /ckpt/x", "--save $CHECKPOINT_PATH")
    tiny = re.sub(r"--data-path \S+", "--data-path $DATA_PATH", tiny) if "--data-path" in tiny else \
        tiny + " --data-path $DATA_PATH"
    script = tmp_path / "run.sh"
    script.write_text(f"CHECKPOINT_PATH=$1\nDATA_PATH=$2\ntorchrun --nproc_per_node 2 pretrain_gpt.py {tiny}\n")
    new_yaml, new_sh = tmp_path / "new.yaml", tmp_path / "n.sh"
    code, _, err = run_convert([str(script), "-o", str(new_yaml), "--script-out", str(new_sh)])
    assert code == 0, err
    assert "--save is ${1}, from the script's argument ($CHECKPOINT_PATH" in err
    stub = 'torchrun() { printf "%s\\n" "$@"; }\nexport -f torchrun\n'
    out = subprocess.run(["bash", "-c", stub + 'source "$0" "$@"', str(new_sh), "/ckpt/run1", "0.3 /d/a 0.7 /d/b"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    given = {flag: out[out.index(flag) + 1] for flag in ("--training.output_dir", "--data.dataset")}
    assert given == {"--training.output_dir": "/ckpt/run1", "--data.dataset": "0.3 /d/a 0.7 /d/b"}
    cfg = load_config(str(new_yaml), [w for pair in given.items() for w in pair])
    assert (cfg.training.output_dir, cfg.data.dataset) == ("/ckpt/run1", "0.3 /d/a 0.7 /d/b")
    alone = subprocess.run([sys.executable, os.path.join(ROOT, "train_fsdp2.py"), str(new_yaml)], cwd=tmp_path,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
    assert alone.returncode != 0 and not (tmp_path / "${1}").exists()  # the YAML alone: no directory named ${1}
    assert "train_fsdp2.py: error: data.dataset is '${2}'; training.output_dir is '${1}': a value the converted " \
           "launch script gives when it runs" in alone.stderr, alone.stderr[-2000:]
    assert "Traceback" not in alone.stderr
    script.write_text(f"LAYERS=$1\ntorchrun --nproc_per_node 2 pretrain_gpt.py {_TINY_GPT} --num-layers $LAYERS\n")
    code, _, err = run_convert([str(script), "-o", str(new_yaml), "--script-out", str(new_sh)])
    assert code == 1 and "--num-layers has no value" in err


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_path_computed_by_a_command_is_computed_again_when_the_new_script_runs(tmp_path):
    """`--save ckpt/run-$(date +%Y)`: the conversion does not run the command; the new launch script computes the
    field when it runs and passes it as an override, as the old script computed --save."""
    script = tmp_path / "run.sh"
    tiny = _TINY_GPT.replace("--save /ckpt/x", "--save /ckpt/run-$(date +%Y)")
    script.write_text(f"torchrun --nproc_per_node 2 pretrain_gpt.py {tiny}\n")
    new_yaml, new_sh = tmp_path / "new.yaml", tmp_path / "n.sh"
    assert run_convert([str(script), "-o", str(new_yaml), "--script-out", str(new_sh)])[0] == 0
    assert "# training.output_dir is known only when the new script runs" in new_yaml.read_text()
    text = new_sh.read_text()
    assert '--training.output_dir \\\n    "/ckpt/run-$(date +%Y)"' in text, text
    stub = 'torchrun() { printf "%s\\n" "$@"; }\nexport -f torchrun\n'
    out = subprocess.run(["bash", "-c", stub + 'source "$0"', str(new_sh)], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    given = out[out.index("--training.output_dir") + 1]
    year = subprocess.run(["date", "+%Y"], capture_output=True, text=True, check=True).stdout.strip()
    assert given == f"/ckpt/run-{year}"
    assert load_config(str(new_yaml), ["--training.output_dir", given]).training.output_dir == given
