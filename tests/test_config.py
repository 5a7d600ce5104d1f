"""The canonical config: every field of the reference table, its rules, and the YAML layout."""
import dataclasses
import os
import re

import pytest
import yaml

from fsdp2_core.config import (
    SECTIONS,
    ConfigError,
    TrainConfig,
    build_config,
    dump_yaml,
    load_config,
    read_yaml_values,
)
from fsdp2_core.config.schema import FIELD_INDEX

HERE = os.path.dirname(__file__)
REFERENCE = os.path.join(HERE, "..", "docs", "reference", "fsdp2_parameters.md")
ESSENTIALS = {"model_name_or_path": "/models/m", "output_dir": "/tmp/out"}


def _reference_rows():
    """(name, type, default) of every field table row in fsdp2_parameters.md (before the Megatron table)."""
    text = open(REFERENCE, encoding="utf-8").read().split("# megatron参数对照")[0]
    rows = re.findall(r"<tr>\s*<td>([a-z0-9_]+)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", text, flags=re.S)
    return [(n, t.replace("&quot;", '"'), d.replace("&quot;", '"')) for n, t, d in rows]


def test_every_reference_field_exists_with_its_default():
    defaults = TrainConfig()
    rows = _reference_rows()
    assert len(rows) > 100
    for name, type_text, default_text in rows:
        assert name in FIELD_INDEX, f"{name} missing from the canonical config"
        section = FIELD_INDEX[name][0]
        value = getattr(getattr(defaults, section), name)
        if name == "fsdp_size":
            assert value is None  # documented decision: unset means shard over every data-parallel rank
            continue
        if default_text.startswith("无"):
            assert value is None  # required fields: checked by validate()
            continue
        expected = _parse_default(default_text)
        if name == "fsdp_modules":
            expected = ["model.layers.{*}", "model.embed_tokens", "lm_head"]  # the table writes {} for {*}
        assert value == expected, f"{name}: default {value!r}, reference says {default_text!r}"


def _parse_default(text):
    text = text.strip()
    if text in ("None",):
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text) if re.fullmatch(r"[0-9.]+e-?[0-9]+", text) else yaml.safe_load(text.replace("'", '"'))
    except yaml.YAMLError:
        return text


def test_literal_choices_are_checked():
    with pytest.raises(ConfigError, match="param_dtype.*one of 'bf16', 'fp16', 'fp32'"):
        build_config({**ESSENTIALS, "param_dtype": "bf32"})
    with pytest.raises(ConfigError, match="mix_strategy"):
        build_config({**ESSENTIALS, "mix_strategy": "shuffle"})


def test_required_model_or_architecture_and_output_dir():
    with pytest.raises(ConfigError) as err:
        build_config({})
    assert "model_name_or_path" in str(err.value) and "output_dir" in str(err.value)
    cfg = build_config({"architecture": {"model_type": "llama"}, "output_dir": "/o"})
    assert cfg.model.model_name_or_path is None


@pytest.mark.parametrize("values,both", [
    ({"eval_dataset": "x", "val_size": 0.1, "dataset": "y"}, ("eval_dataset", "val_size")),
    ({"train_on_prompt": True, "mask_history": True}, ("train_on_prompt", "mask_history")),
    ({"streaming": True, "max_samples": 10}, ("streaming", "max_samples")),
    ({"streaming": True, "val_size": 0.5, "dataset": "y"}, ("streaming", "integer val_size")),
])
def test_exclusive_rules_name_both_sides(values, both):
    with pytest.raises(ConfigError) as err:
        build_config({**ESSENTIALS, **values})
    for side in both:
        assert side in str(err.value)


@pytest.mark.parametrize("batch", [{}, {"rampup_batch_size": [2, 2, 8]}])
def test_a_global_batch_of_zero_is_named_not_divided_by(batch):
    """A batch computed from a scheduler's count that read as 0 once crashed validation with ZeroDivisionError."""
    with pytest.raises(ConfigError, match="global_batch_size"):
        build_config({**ESSENTIALS, "global_batch_size": 0, "train_samples": 100, **batch})


def test_streaming_accepts_integer_val_size():
    cfg = build_config({**ESSENTIALS, "streaming": True, "val_size": 100, "dataset": "y"})
    assert cfg.data.val_size == 100


def test_neat_packing_turns_packing_on():
    assert build_config({**ESSENTIALS, "neat_packing": True}).data.packing is True


def test_fsdp_modules_must_not_be_empty_and_profile_start_non_negative():
    with pytest.raises(ConfigError, match="fsdp_modules must not be empty"):
        build_config({**ESSENTIALS, "fsdp_modules": []})
    with pytest.raises(ConfigError, match="profile_step_start must be >= 0"):
        build_config({**ESSENTIALS, "profile_step_start": -1})


def test_wrong_type_names_field_and_type():
    with pytest.raises(ConfigError, match="lr: got 'abc', expected a number"):
        build_config({**ESSENTIALS, "lr": "abc"})


def test_mindspeed_yaml_as_is():
    cfg = load_config(os.path.join(HERE, "configs", "mindspeed_qwen3_moe_pretrain.yaml"))
    assert cfg.model.model_id == "qwen3_moe"
    assert cfg.model.tokenizer_name_or_path is None      # the word None
    assert cfg.training.lr == 1e-5                         # "1e-05" is a string to YAML 1.1
    assert cfg.optimization.use_flash_attn is True         # fused switches under `training`
    assert cfg.training.chunk_loss_size == 256             # training field under `optimization`
    assert cfg.parallel.ep_size == 4 and cfg.parallel.fsdp_size == 16
    assert cfg.profiling.profile_ranks == [0, 1]
    assert cfg.data.dataset == {"file_name": "./corpus.parquet"}
    sft = load_config(os.path.join(HERE, "configs", "mindspeed_qwen3_sft.yaml"))
    assert sft.data.dataset == "alpaca_full, sharegpt_zh" and sft.training.stage == "sft"


def test_flat_fields_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model_name_or_path: /m\noutput_dir: /o\nlr: 0.1\ntraining:\n  max_steps: 5\n")
    cfg = load_config(str(path), ["--training.lr", "1e-4", "--tp_size", "2", "--cp-size=2", "--recompute",
                                  "--fsdp_modules", "model.layers.{*}", "lm_head"])
    assert cfg.training.lr == 1e-4 and cfg.parallel.tp_size == 2 and cfg.parallel.cp_size == 2
    assert cfg.parallel.recompute is True and cfg.parallel.fsdp_modules == ["model.layers.{*}", "lm_head"]
    assert cfg.training.max_steps == 5


def test_unknown_key_names_section_and_closest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rat: 1\n  per_device_batch_size: 2\n")
    with pytest.raises(ConfigError) as err:
        read_yaml_values(str(path))
    assert "section 'training'" in str(err.value) and "learning_rat" in str(err.value)
    path.write_text("parallel:\n  tp_sise: 2\n")
    with pytest.raises(ConfigError, match="did you mean tp_size"):
        read_yaml_values(str(path))
    with pytest.raises(ConfigError, match="unknown section 'trainig'"):
        load_config(None, ["--trainig.lr", "1"])
    with pytest.raises(ConfigError, match="did you mean --max_steps"):
        load_config(None, ["--max_step", "1"])


def test_yaml_round_trip(tmp_path):
    cfg = load_config(os.path.join(HERE, "configs", "mindspeed_qwen3_moe_pretrain.yaml"))
    for only_changed in (False, True):
        path = tmp_path / f"out{only_changed}.yaml"
        path.write_text(dump_yaml(cfg, only_changed=only_changed))
        assert load_config(str(path)) == cfg
    written = yaml.safe_load(dump_yaml(cfg))
    assert list(written) == list(SECTIONS)  # home sections, in order


def test_every_field_has_help():
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("help", "")) > 10, f"{section}.{f.name} has no help text"
