"""posttrain_gpt.py's front end: the public fine-tuning argv, stages, instruction flags, LoRA flags, convert_args."""
import contextlib
import io
import os

import pytest
import yaml

from megatron_compat.cli import main
from megatron_compat.translate import translate
from tests.posttrain.posttrain_helpers import (
    FULL_EXAMPLE,
    LORA_EXAMPLE,
    real_argvs,
    world_of,
)

REAL = real_argvs()


def run(argv, world=8, monkeypatch=None):
    os.environ["WORLD_SIZE"] = str(world)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv) + ["--print-config"], entry="posttrain_gpt.py")
    finally:
        os.environ.pop("WORLD_SIZE", None)
    return code, out.getvalue(), err.getvalue()


def test_public_posttrain_argvs_are_present():
    assert len(REAL) >= 3 and FULL_EXAMPLE in REAL and LORA_EXAMPLE in REAL


@pytest.mark.parametrize("name", sorted(REAL))
def test_print_config_on_public_posttrain_argv(name):
    entry = REAL[name]
    code, out, err = run(entry["args"], world_of(entry["launcher"]))
    assert "dialect: megatron" in err
    if code == 0:
        cfg = yaml.safe_load(out)
        assert cfg["training"]["stage"] == "sft" and cfg["data"]["is_instruction_dataset"] is True
        assert cfg["data"]["template"] == "qwen3" and cfg["training"]["output_dir"] == "/ckpt/save"
    else:
        assert code == 2 and "refusing to start" in err
        reasons = err.split("refusing to start:")[1]
        assert "--" in reasons or "batch" in reasons  # a flag named, or the batch arithmetic explained
    if "--stage" in entry["args"] and entry["args"][entry["args"].index("--stage") + 1] == "dpo":
        assert code == 2 and "--stage is not supported: stage dpo" in err


def test_full_finetuning_example_gives_a_config():
    code, out, err = run(REAL[FULL_EXAMPLE]["args"], world_of(REAL[FULL_EXAMPLE]["launcher"]))
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["data"]["data_manager_type"] == "mg" and cfg["data"]["dataset"] == "/data/corpus_text_document"
    assert cfg["data"]["enable_thinking"] is True and cfg["training"]["finetune"] is True
    assert cfg["model"]["model_name_or_path"] == "/ckpt/load" and cfg["model"]["lora_r"] == 0
    assert "--no-pad-to-seq-lengths" in err and "absorbed" in err.split("--no-pad-to-seq-lengths")[1][:80]


def test_lora_example_maps_its_flags():
    # the public LoRA script's batch: 16 = micro 4 × dp 4 on 8 ranks with pp 2
    code, out, err = run(REAL[LORA_EXAMPLE]["args"], world=4)
    assert code == 0, err
    m = yaml.safe_load(out)["model"]
    assert (m["lora_r"], m["lora_alpha"], m["lora_dropout"]) == (16, 32.0, 0.0)
    assert m["lora_target_modules"] == ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]
    assert "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in err
    # on its own 8 ranks, folding the pipeline into dp 8 would leave 16 short of micro 4 × 8: its 2 pipeline ranks
    # share samples as context-parallel ranks instead, and dp 4, micro batch 4 and accumulation 1 are Megatron's
    code, out, err = run(REAL[LORA_EXAMPLE]["args"], world=8)
    assert code == 0, err
    cfg = yaml.safe_load(out)
    t = cfg["training"]
    assert (t["global_batch_size"], t["per_device_train_batch_size"], t["gradient_accumulation_steps"]) == (16, 4, 1)
    assert cfg["parallel"]["cp_size"] == 2 and "share samples as context parallelism (cp 1 → 2)" in err


BASE = ["--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4", "--seq-length", "64",
        "--max-position-embeddings", "64", "--micro-batch-size", "1", "--global-batch-size", "4", "--train-iters", "5",
        "--lr", "1e-4", "--position-embedding-type", "rope", "--normalization", "RMSNorm", "--swiglu",
        "--vocab-size", "128", "--save", "/tmp/out", "--data-path", "/data/sft"]


def test_stages():
    result = translate(BASE + ["--stage", "dpo", "--is-instruction-dataset"], world_size=4, entry="posttrain_gpt.py")
    assert not result.ok and any("stage dpo" in p and "--stage sft" in p for p in result.problems())
    result = translate(BASE + ["--is-instruction-dataset"], world_size=4, entry="posttrain_gpt.py")
    assert any("posttrain_gpt.py needs --stage" in p for p in result.problems())
    result = translate(BASE + ["--stage", "sft", "--is-instruction-dataset", "--variable-seq-lengths", "--pack",
                               "--reset-position-ids", "--no-pad-to-seq-lengths", "--finetune", "--load", "/hf"],
                       world_size=4, entry="posttrain_gpt.py")
    assert result.ok, result.problems()
    c = result.config
    assert c.training.stage == "sft" and c.data.is_instruction_dataset and c.data.packing and c.data.reset_position_ids
    assert c.training.finetune and c.model.model_name_or_path == "/hf"


def test_prompt_type_and_thinking():
    result = translate(BASE + ["--stage", "sft", "--is-instruction-dataset", "--prompt-type", "chatglm3",
                               "--enable-thinking", "false"], world_size=4, entry="posttrain_gpt.py")
    assert result.ok and result.config.data.template == "chatglm3" and result.config.data.enable_thinking is False
    assert any("chatglm3" in n and "qwen3" in n for n in result.notes)  # preprocessed data needs no template
    result = translate(BASE + ["--stage", "sft", "--enable-thinking", "maybe"], world_size=4, entry="posttrain_gpt.py")
    assert any("--enable-thinking maybe" in p for p in result.problems())


def test_lora_flags():
    sft = BASE + ["--stage", "sft", "--is-instruction-dataset"]
    result = translate(sft + ["--lora-r", "8"], world_size=4, entry="posttrain_gpt.py")
    assert result.ok and result.config.model.lora_r == 0  # no target modules: MindSpeed trains every parameter
    result = translate(sft + ["--lora-target-modules", "linear_qkv", "q_proj", "--lora-r", "4", "--lora-alpha", "8",
                              "--lora-dropout", "0.1"], world_size=4, entry="posttrain_gpt.py")
    m = result.config.model
    assert (m.lora_r, m.lora_alpha, m.lora_dropout, m.lora_target_modules) == (4, 8.0, 0.1, ["linear_qkv", "q_proj"])
    result = translate(sft + ["--lora-target-modules", "linear_qkv", "--tensor-model-parallel-size", "2"],
                       world_size=4, entry="posttrain_gpt.py")
    assert result.ok and result.config.parallel.tp_size == 2  # adapters split with their base linears
    result = translate(sft + ["--lora-target-modules", "linear_qkv", "--tensor-model-parallel-size", "2",
                              "--lora-dropout", "0.1"], world_size=4, entry="posttrain_gpt.py")
    assert any("--lora-dropout 0.1 with --tensor-model-parallel-size 2" in p for p in result.problems())
    result = translate(sft + ["--lora-target-modules", "linear_kv_down_proj"], world_size=4, entry="posttrain_gpt.py")
    assert any("linear_kv_down_proj" in p for p in result.problems())
    result = translate(sft + ["--lora-target-modules", "linear_qkv", "--lora-load", "/x"], world_size=4,
                       entry="posttrain_gpt.py")
    assert any(p.startswith("--lora-load is not supported") for p in result.problems())


def test_hf_target_modules():
    from fsdp2_core.config import ConfigError
    from fsdp2_core.models.lora import hf_target_modules
    assert hf_target_modules(["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]) == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert hf_target_modules(["q_proj", "linear_qkv"]) == ["q_proj", "k_proj", "v_proj"]
    with pytest.raises(ConfigError):
        hf_target_modules(["linear_q_down_proj"])


def test_convert_args_on_a_posttrain_script(tmp_path):
    from fsdp2_core.config import load_config
    from tools import convert_args
    script = tmp_path / "tune.sh"
    script.write_text("#!/bin/bash\ntorchrun --nproc_per_node 4 posttrain_gpt.py " + " ".join(
        BASE + ["--stage", "sft", "--is-instruction-dataset", "--prompt-type", "qwen3", "--variable-seq-lengths",
                "--lora-target-modules", "linear_qkv", "linear_fc2", "--lora-r", "8"]) + "\n")
    out_yaml = tmp_path / "tune.yaml"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = convert_args.main([str(script), "-o", str(out_yaml), "--script-out", str(tmp_path / "new.sh")])
    assert code == 0
    cfg = load_config(str(out_yaml))
    assert cfg.data.is_instruction_dataset and cfg.training.stage == "sft" and cfg.model.lora_r == 8
    assert cfg.model.lora_target_modules == ["linear_qkv", "linear_fc2"]
