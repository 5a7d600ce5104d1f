"""Fault injection, in process: bad flags, YAMLs, tool arguments, data files and checkpoint files.

Each case is (name, how to run it, expected outcome, a piece of the expected message). Outcomes:
  refused  a clear error (ConfigError, CheckpointError, a data error, a tool's exit with a message)
           naming the flag, field, key or file;
  handled  no error, and the stated behaviour.
Any other exception is a raw one from our code and fails the case. The table covers the cases of
the fault-injection report (issue #20); the sweeps below it try every numeric flag and field with
values nobody means (0, negatives, nan, inf, 1e20) and accept only clean answers.
"""
import contextlib
import io
import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import yaml

from fsdp2_core.checkpoint import CheckpointError
from fsdp2_core.config import FIELD_INDEX, ConfigError, build_config, load_config
from fsdp2_core.data.megatron.indexed_dataset import IndexedDatasetError
from megatron_compat.flag_spec import all_specs
from megatron_compat.registry import rule_for
from megatron_compat.translate import translate
from tests.faults.fault_helpers import set_sequence_length, write_corpus

BASE = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --save /ckpt/run "
        "--data-path /data/corpus_text_document --tokenizer-type NullTokenizer --vocab-size 100 "
        "--position-embedding-type rope --normalization RMSNorm --swiglu --disable-bias-linear "
        "--hidden-dropout 0.0").split()
USER_ERRORS = (ConfigError, CheckpointError, IndexedDatasetError)


@dataclass
class Case:
    name: str
    run: Callable  # (tmp_path) -> text: returns on "handled", raises a user error or SystemExit on "refused"
    outcome: str   # "refused" | "handled"
    needle: str    # a piece of the message (refused) or of the returned text (handled)


def with_flags(*pairs):
    """BASE with these flags set (a flag already in BASE is replaced); refused when translation reports problems."""
    def run(tmp):
        argv = list(BASE)
        for flag, *values in pairs:
            if flag in argv:
                i = argv.index(flag)
                j = i + 1
                while j < len(argv) and not argv[j].startswith("--"):
                    j += 1
                del argv[i:j]
            argv += [flag, *values]
        result = translate(argv, world_size=4)
        if not result.ok:
            raise ConfigError(" | ".join(result.problems()))
        return "translated"
    return run


def yaml_file(text=None, raw=None, directory=False):
    def run(tmp):
        path = tmp / "config.yaml"
        if directory:
            path.mkdir()
        elif raw is not None:
            path.write_bytes(raw)
        else:
            path.write_text(text)
        load_config(str(path))
        return "loaded"
    return run


def tool(main_of, *argv):
    """A tool's main(argv): stderr and the exit code; a non-zero exit is a refusal (raised as SystemExit)."""
    def run(tmp):
        err = io.StringIO()
        args = [a.format(tmp=tmp) for a in argv]
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main_of()(args)
            except SystemExit as exc:
                code = exc.code
        text = err.getvalue() + ("" if isinstance(code, int) or code is None else str(code))
        assert "Traceback" not in text, text
        if code not in (0, None):
            raise SystemExit(text)
        return text
    return run


def _convert_args():
    from tools import convert_args
    return convert_args.main


def _preprocess():
    from tools import preprocess_data
    return preprocess_data.main


def _inspect():
    from tools import inspect_data
    return inspect_data.main


def _train_fsdp2():
    import train_fsdp2
    return train_fsdp2.main


def _pretrain():
    from megatron_compat.cli import main
    return main


def write(rel, content):
    def run(tmp):
        path = tmp / rel
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return run


def then(*steps):
    def run(tmp):
        out = None
        for step in steps:
            out = step(tmp)
        return out
    return run


# ---------------------------------------------------------------- data and model steps
def mg_datasets(tmp, max_steps=4, **data):
    """The engine's own data building (train.data.build_datasets) on a small corpus."""
    from fsdp2_core.testing.tiny import tiny_config
    from fsdp2_core.train.data import build_datasets
    prefix = data.pop("prefix", None) or write_corpus(str(tmp / "corpus_text_document"))
    cfg = tiny_config(tmp / "out", dataset=prefix, split="100,0,0", max_steps=max_steps, **data)
    return build_datasets(cfg, cfg.training.max_steps, 4)


def negative_length_in_idx(tmp):
    prefix = write_corpus(str(tmp / "corpus_text_document"))
    set_sequence_length(prefix, 3, -5)
    return mg_datasets(tmp, prefix=prefix)


def no_data_path(tmp):
    from fsdp2_core.testing.tiny import tiny_config
    from fsdp2_core.train.data import build_datasets
    cfg = tiny_config(tmp / "out", max_steps=4)  # mg data, no dataset, no mock_data
    return build_datasets(cfg, 4, 4)


def token_ids_beyond_vocab(tmp):
    from fsdp2_core.train.data import check_token_ids
    datasets = mg_datasets(tmp)  # ids up to 99
    check_token_ids([d for d in datasets if d is not None], 64)
    return "checked"


def token_ids_within_vocab(tmp):
    from fsdp2_core.train.data import check_token_ids
    datasets = mg_datasets(tmp)
    check_token_ids([d for d in datasets if d is not None], 100)
    return "checked: ids within 100"


def model_dir_shorter_than_cutoff(tmp):
    import torch
    from transformers import AutoConfig

    from fsdp2_core.models.build import build_model
    from fsdp2_core.testing.tiny import LLAMA
    arch = dict(LLAMA, max_position_embeddings=16)
    AutoConfig.for_model(arch.pop("model_type"), **arch).save_pretrained(tmp / "hf")
    cfg = build_config({"model_name_or_path": str(tmp / "hf"), "output_dir": str(tmp / "o"), "cutoff_len": 32,
                        "max_steps": 2})
    build_model(cfg, torch.device("cpu"), meta=True)
    return "built"


def flipped_byte_detected(tmp):
    from fsdp2_core.checkpoint import checksums
    from tests.faults.fault_helpers import flip_byte
    directory = tmp / "iter_0000002"
    directory.mkdir()
    (directory / "__0_0.distcp").write_bytes(os.urandom(1 << 20))
    checksums.record(str(directory))
    assert checksums.mismatches(str(directory)) == []
    flip_byte(str(directory / "__0_0.distcp"))
    problems = checksums.mismatches(str(directory))
    if problems:
        raise CheckpointError("; ".join(problems))
    return "undetected"


def tracker_negative(tmp):
    from fsdp2_core.checkpoint.layout import read_tracker
    (tmp / "latest_checkpointed_iteration.txt").write_text("-5")
    return f"tracker read as {read_tracker(str(tmp))}"


def garbage_info(tmp):
    from fsdp2_core.checkpoint.layout import read_info
    (tmp / "checkpoint_info.json").write_text("{garbage")
    return read_info(str(tmp))


def output_dir_is_a_file(tmp):
    from fsdp2_core.train.output_dir import check_output_dir
    (tmp / "save").write_text("a file")
    check_output_dir(str(tmp / "save"), rank=0)
    return "accepted"


def output_dir_below_a_file(tmp):
    from fsdp2_core.train.output_dir import check_output_dir
    (tmp / "save").write_text("a file")
    check_output_dir(str(tmp / "save" / "run1"), rank=0)
    return "accepted"


LLAMA_YAML = """model:
  architecture: {model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
                 num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 128, max_position_embeddings: 32}
training: {output_dir: /tmp/o, max_steps: 2}
"""
LAUNCH = "#!/bin/bash\ntorchrun --nproc-per-node 8 pretrain_gpt.py " + " ".join(BASE) + " {extra}\n"

CASES = [
    # ---- silently accepted nonsense: refused at translation, the flag named
    Case("num_layers_0", with_flags(("--num-layers", "0")), "refused", "--num-layers 0: "),
    Case("num_layers_huge", with_flags(("--num-layers", "99999999999999999999")), "refused", "beyond any model"),
    Case("pipeline_0", with_flags(("--pipeline-model-parallel-size", "0")), "refused",
         "--pipeline-model-parallel-size 0: must be >= 1"),
    Case("log_interval_0", with_flags(("--log-interval", "0")), "refused", "--log-interval 0: training.logging_steps"),
    # Megatron validates only when --eval-iters > 0 (ROCm's scripts pass -1 to mean "no validation")
    Case("eval_iters_negative", with_flags(("--eval-iters", "-1")), "handled", "translated"),
    Case("num_workers_negative", with_flags(("--num-workers", "-1")), "refused",
         "--num-workers -1: training.dataloader_num_workers"),
    Case("kv_channels_0", with_flags(("--kv-channels", "0")), "refused", "--kv-channels 0: "),
    Case("seq_above_max_positions_rope", with_flags(("--seq-length", "64")), "refused",
         "--max-position-embeddings 32: data.cutoff_len 64 is above"),
    Case("rotary_base_0", with_flags(("--rotary-base", "0")), "refused", "--rotary-base 0.0: "),
    Case("norm_epsilon_negative", with_flags(("--norm-epsilon", "-1")), "refused", "--norm-epsilon -1.0: "),
    Case("lr_inf", with_flags(("--lr", "inf")), "refused", "--lr inf: training.lr must be a finite number"),
    Case("data_path_empty", with_flags(("--data-path", "")), "refused", "--data-path has no value"),
    Case("data_path_without_value", with_flags(("--data-path",)), "refused", "--data-path"),
    Case("train_iters_0", with_flags(("--train-iters", "0")), "refused", "--train-iters 0: "),
    Case("global_batch_0", with_flags(("--global-batch-size", "0")), "refused", "--global-batch-size 0: "),
    Case("attention_dropout_above_1", with_flags(("--attention-dropout", "1.5")), "refused", "--attention-dropout 1.5"),
    Case("num_experts_0", with_flags(("--num-experts", "0")), "refused", "--num-experts 0: "),
    Case("swiglu_default_ffn_zero", with_flags(("--hidden-size", "16"), ("--num-attention-heads", "2")), "refused",
         "--hidden-size 16 with --swiglu: Megatron's default FFN width"),
    # ---- were raw exceptions: now refused at translation, the flag named
    Case("tp_0", with_flags(("--tensor-model-parallel-size", "0")), "refused", "--tensor-model-parallel-size 0: "),
    Case("cp_0", with_flags(("--context-parallel-size", "0")), "refused", "--context-parallel-size 0: "),
    Case("cp_0_with_ring_algo", with_flags(("--context-parallel-size", "0"), ("--context-parallel-algo",
                                                                              "megatron_cp_algo")),
         "refused", "--context-parallel-size 0: "),
    Case("micro_batch_0", with_flags(("--micro-batch-size", "0")), "refused", "--micro-batch-size 0: "),
    Case("vocab_size_0", with_flags(("--vocab-size", "0")), "refused", "--vocab-size 0: model.vocab_size"),
    Case("vocab_size_negative", with_flags(("--vocab-size", "-5")), "refused", "--vocab-size -5: "),
    Case("make_vocab_divisible_0", with_flags(("--make-vocab-size-divisible-by", "0")), "refused",
         "--make-vocab-size-divisible-by 0: "),
    Case("hidden_not_divisible_by_heads", with_flags(("--hidden-size", "66")), "refused",
         "hidden_size 66 is not divisible by num_attention_heads 4"),
    Case("heads_not_divisible_by_groups", with_flags(("--group-query-attention",), ("--num-query-groups", "3")),
         "refused", "--num-query-groups 3: "),
    Case("lr_nan", with_flags(("--lr", "nan")), "refused", "--lr nan: "),
    Case("adam_beta1_above_1", with_flags(("--adam-beta1", "1.5")), "refused", "--adam-beta1 1.5: "),
    Case("seed_negative", with_flags(("--seed", "-1")), "refused", "--seed -1: "),
    Case("seed_huge", with_flags(("--seed", "99999999999999")), "refused", "--seed 99999999999999: "),
    Case("recompute_block_pp_0", with_flags(("--recompute-granularity", "full"), ("--recompute-method", "block"),
                                            ("--pipeline-model-parallel-size", "0")),
         "refused", "--pipeline-model-parallel-size 0"),
    Case("fsdp2_names_global_batch_without_micro",
         lambda tmp: str(translate(["--model_name_or_path", "/m", "--output_dir", "/o", "--global_batch_size", "16",
                                    "--max_steps", "3"], world_size=2).config.training.gradient_accumulation_steps),
         "handled", "1"),  # 16 = 8 (reference micro batch) × dp 2 × 1
    # ---- the same checks seen through --print-config and convert_args
    Case("print_config_reports_flag", tool(_pretrain, *BASE, "--log-interval", "0", "--print-config"), "refused",
         "--log-interval 0: training.logging_steps"),
    Case("convert_args_reports_flag", then(write("run.sh", LAUNCH.format(extra="--num-workers -1")),
                                           tool(_convert_args, "{tmp}/run.sh")),
         "refused", "--num-workers -1: training.dataloader_num_workers"),
    # ---- YAML
    Case("yaml_duplicate_key", yaml_file("training:\n  lr: 1.0e-4\n  seed: 3\n  lr: 2.0e-4\n"), "refused",
         "key 'lr' is given twice (first on line 2)"),
    Case("yaml_duplicate_section", yaml_file("training:\n  lr: 1.0e-4\ntraining:\n  seed: 3\n"), "refused",
         "key 'training' is given twice"),
    Case("yaml_binary_file", yaml_file(raw=bytes(range(256)) * 4), "refused", "not a text file"),
    Case("yaml_nul_bytes", yaml_file(raw=b"\x00\x01model: x"), "refused", "not valid YAML"),
    Case("yaml_directory", yaml_file(directory=True), "refused", "is a directory"),
    Case("yaml_cutoff_above_max_positions", yaml_file(LLAMA_YAML + "data: {cutoff_len: 64}\n"), "refused",
         "data.cutoff_len 64 is above model.architecture.max_position_embeddings 32"),
    Case("yaml_heads_not_divisible_by_kv", yaml_file(LLAMA_YAML.replace("num_key_value_heads: 2",
                                                                        "num_key_value_heads: 3")),
         "refused", "num_attention_heads 4 is not divisible by num_key_value_heads 3"),
    Case("model_dir_shorter_than_cutoff", model_dir_shorter_than_cutoff, "refused",
         "config.json: max_position_embeddings 16"),
    Case("train_fsdp2_duplicate_key", then(write("c.yaml", "training:\n  lr: 1\n  lr: 2\n"),
                                           tool(_train_fsdp2, "{tmp}/c.yaml")), "refused", "given twice"),
    # ---- tools
    Case("inspect_data_num_negative", tool(_inspect, "{tmp}/c.yaml", "--num", "-3"), "refused",
         "--num: -3 is negative"),
    Case("preprocess_empty_input", then(write("empty.jsonl", ""),
                                        tool(_preprocess, "--input", "{tmp}/empty.jsonl", "--output-prefix",
                                             "{tmp}/out", "--tokenizer-type", "NullTokenizer", "--vocab-size",
                                             "100", "--workers", "1", "--no-progress-bar")),
         "refused", "no records"),
    Case("convert_args_binary_script", then(write("bin.sh", bytes(range(256))), tool(_convert_args, "{tmp}/bin.sh")),
         "refused", "is a binary file, not a shell script"),
    Case("convert_args_directory", tool(_convert_args, "{tmp}"), "refused", "is a directory"),
    Case("convert_args_missing_script", tool(_convert_args, "{tmp}/nope.sh"), "refused",
         "nope.sh: no such file (looked from"),
    Case("convert_args_crlf_continuation", then(write("crlf.sh", LAUNCH.format(extra="").replace(
                                                         " pretrain_gpt.py", " \\\r\n  pretrain_gpt.py").encode()),
                                               tool(_convert_args, "{tmp}/crlf.sh")),
         "refused", "the line ends in a backslash and a carriage return (Windows line endings)"),
    Case("convert_args_latin1_comment", then(write("l1.sh", ("# r\xe9glage\n" + LAUNCH.format(extra=""))
                                                 .encode("latin-1")),
                                             tool(_convert_args, "{tmp}/l1.sh", "-o", "{tmp}/l1.yaml")),
         "handled", "l1.sh:1: bytes that are not UTF-8 were replaced"),
    # ---- data
    Case("idx_negative_sequence_length", negative_length_in_idx, "refused", "sequence 3 has length -5"),
    Case("no_data_path_is_not_mock_data", no_data_path, "refused", "no training data"),
    Case("token_ids_beyond_vocab", token_ids_beyond_vocab, "refused",
         "corpus_text_document.bin holds token id 99, outside the model's vocabulary of 64"),
    Case("token_ids_within_vocab", token_ids_within_vocab, "handled", "within 100"),
    Case("index_arrays_too_large", lambda tmp: mg_datasets(tmp, max_steps=10 ** 13), "refused",
         "samples asked: train 40,000,000,000,000 = 10,000,000,000,000 iterations × global batch 4"),
    # ---- checkpoint files
    Case("flipped_byte_detected", flipped_byte_detected, "refused", "__0_0.distcp does not match its checksum"),
    Case("tracker_negative", tracker_negative, "handled", "tracker read as None"),
    Case("garbage_checkpoint_info", garbage_info, "refused", "unreadable"),
    Case("save_is_a_file", output_dir_is_a_file, "refused", "is a file, not a directory"),
    Case("save_below_a_file", output_dir_below_a_file, "refused", "cannot be created (ENOTDIR"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        text = case.run(tmp_path)
        outcome = "handled"
    except USER_ERRORS as exc:
        text, outcome = str(exc), "refused"
    except SystemExit as exc:
        text, outcome = str(exc.code), "refused"
    # anything else propagates: a raw exception from our code fails the case with its traceback
    assert outcome == case.outcome, f"{case.name}: expected {case.outcome}, got {outcome}: {text}"
    assert case.needle in str(text), f"{case.name}: {case.needle!r} not in {text}"


def test_cases_cover_the_report():
    """The cases of issue #20 this module owns (OTHER engineers' cases are tested in their modules)."""
    names = {c.name for c in CASES}
    assert len(names) == len(CASES)
    assert len(CASES) >= 50


# ---------------------------------------------------------------- sweeps: values nobody means
NASTY = ["0", "-1", "nan", "inf", "1e20", "99999999999999999999"]


def _numeric_mapped_flags():
    out = []
    for flag, spec in sorted(all_specs().items()):
        rule = rule_for(flag)
        if rule is not None and rule.status == "mapped" and spec.kind in ("int", "float"):
            out.append((flag, spec))
    return out


def test_every_numeric_flag_with_nonsense_gives_a_clean_answer():
    flags = _numeric_mapped_flags()
    assert len(flags) > 50
    for flag, spec in flags:
        for value in NASTY:
            values = [value] * (spec.nargs if isinstance(spec.nargs, int) else 1)
            for extra in ([], ["--num-experts", "4", "--qk-layernorm", "--group-query-attention",
                               "--num-query-groups", "2", "--recompute-granularity", "full",
                               "--recompute-method", "block"]):
                result = with_flags_result(extra + [flag] + values)
                assert result is not None  # translate returned: problems are listed, nothing raised


def with_flags_result(extra):
    return translate(list(BASE) + extra, world_size=4)


def test_every_numeric_field_with_nonsense_is_a_config_error_or_accepted():
    for name, (section, field, tp) in FIELD_INDEX.items():
        if tp not in (int, float) and str(tp) not in ("typing.Optional[int]", "typing.Optional[float]"):
            continue
        for value in (0, -1, float("nan"), float("inf"), 10 ** 20):
            try:
                cfg = build_config({"architecture": {"model_type": "llama"}, "output_dir": "/o", "max_steps": 1,
                                    name: value})
            except ConfigError:
                continue
            got = getattr(getattr(cfg, section), name)
            assert not (isinstance(got, float) and not math.isfinite(got)), (name, value)


def test_yaml_sweep_of_bad_documents(tmp_path):
    """Odd YAML shapes are ConfigErrors naming the file, never a raw exception."""
    docs = ["- a\n- b\n", "model: 3\n", "model: {unknown_key: 1}\n", "{a: 1}: 2\n", "training: {lr: [1, 2]}\n",
            "? [a, b]\n: 1\n", "training:\n  lr: &x 1\n  seed: *x\n  min_lr: *x\n", "just a string\n", ":\n"]
    for i, text in enumerate(docs):
        path = tmp_path / f"d{i}.yaml"
        path.write_text(text)
        try:
            load_config(str(path))
        except ConfigError:
            pass


def test_written_yaml_round_trip_still_loads(tmp_path):
    """The stricter loader still reads what dump_yaml writes, and anchors and merge keys."""
    from fsdp2_core.config import dump_yaml
    cfg = build_config({"architecture": {"model_type": "llama"}, "output_dir": "/o", "max_steps": 1})
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(str(path)).training.max_steps == 1
    path.write_text("base: &b {lr: 1.0e-4}\n")  # an unknown top-level key, but anchors parse
    with pytest.raises(ConfigError, match="unknown key 'base'"):
        load_config(str(path))
    doc = yaml.safe_load("training: &t {lr: 1.0e-4}\n")
    assert doc["training"]["lr"] == 1e-4


def test_empty_preprocess_input_leaves_no_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(SystemExit):
        tool(_preprocess, "--input", "{tmp}/empty.jsonl", "--output-prefix", "{tmp}/out", "--tokenizer-type",
             "NullTokenizer", "--vocab-size", "100", "--workers", "1", "--no-progress-bar")(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["empty.jsonl"]


def test_index_check_happens_before_allocation(tmp_path, monkeypatch):
    """The memory check refuses before numpy allocates (a MemoryError would be the raw failure)."""
    from fsdp2_core.data.megatron import gpt_indices
    monkeypatch.setattr(gpt_indices, "build_document_index",
                        lambda *a, **k: (_ for _ in ()).throw(AssertionError("allocated before the check")))
    with pytest.raises(ConfigError, match="index arrays need about"):
        mg_datasets(tmp_path, max_steps=10 ** 13)
    assert np.iinfo(np.int64).max > 4 * 10 ** 13
