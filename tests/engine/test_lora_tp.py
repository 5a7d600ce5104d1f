"""LoRA under tensor parallelism (fsdp2_core/parallel/lora_tp.py): adapters on column-parallel projections keep
lora_A whole and split lora_B; on row-parallel ones split lora_A and keep lora_B whole. TP 2 on 2 gloo ranks trains
like one process (fp32 losses and gradient norms within 1e-4) and exports the same adapter and merged model."""
import os

import numpy as np
import pytest
import torch

from fsdp2_core.testing.spawn import spawn_runs
from fsdp2_core.testing.tiny import datasets, tiny_config

STEPS = 4
LORA = {"lora_r": 4, "lora_alpha": 8.0,
        "lora_target_modules": ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"], "lr": 2e-2, "min_lr": 2e-3,
        "max_steps": STEPS, "max_grad_norm": 0.05, "save_hf_weights": True,
        "lora_merge_on_export": True}


def _lora_model(architecture, targets):
    from transformers import AutoConfig, AutoModelForCausalLM

    from fsdp2_core.models.lora import apply_lora
    cfg = tiny_config("/tmp/unused", architecture=architecture, lora_r=2, lora_target_modules=targets)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**architecture))
    return apply_lora(model, cfg)


def test_the_plan_splits_adapters_with_their_base_and_refuses_what_it_cannot_split():
    from fsdp2_core.config import ConfigError
    from fsdp2_core.models.lora import check_lora
    from fsdp2_core.parallel.lora_tp import LoraColwise, LoraRowwise
    from fsdp2_core.parallel.tensor_parallel import tensor_parallel_plan
    from fsdp2_core.testing.tiny import LLAMA
    cfg = tiny_config("/tmp/unused")
    plan = dict(tensor_parallel_plan(_lora_model(LLAMA, ["linear_qkv", "linear_proj"]), None, cfg.parallel.tp_colwise,
                                     cfg.parallel.tp_rowwise, True))
    assert isinstance(plan["model.layers.0.self_attn.q_proj"], LoraColwise)
    assert isinstance(plan["model.layers.1.self_attn.o_proj"], LoraRowwise)
    gpt2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 1, "n_head": 2, "vocab_size": 64, "n_positions": 32}
    with pytest.raises(ConfigError, match="transformer.h.0.attn.c_attn wraps a Conv1D with fused q/k/v"):
        tensor_parallel_plan(_lora_model(gpt2, ["c_attn"]), None, cfg.parallel.tp_colwise, cfg.parallel.tp_rowwise,
                             True)
    with pytest.raises(ConfigError, match="lora_dropout 0.1 with tensor parallelism"):
        check_lora(tiny_config("/tmp/unused", lora_r=2, tp_size=2, lora_dropout=0.1, lora_target_modules=["q_proj"]))


def _run(run):
    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.train import run_training
    out_dir, over = run
    cfg = tiny_config(out_dir, **dict(LORA, **over))
    summary = run_training(cfg, datasets=datasets(), checkpoint=Checkpointer(cfg), print_fn=lambda s: None)
    return summary


def _tensors(path):
    from safetensors.torch import load_file
    return load_file(os.path.join(path, "adapter_model.safetensors")) if path.endswith("hf_adapter") else \
        load_file(os.path.join(path, "model.safetensors"))


@pytest.mark.dist
@pytest.mark.slow
def test_lora_tp2_trains_and_exports_like_one_process(tmp_path):
    one = str(tmp_path / "one")
    single = spawn_runs(1, _run, [(one, {})], timeout=300)[0][0]
    layouts = [{"tp_size": 2}, {"tp_size": 2, "sequence_parallel": False, "recompute": True}]
    dirs = [str(tmp_path / f"tp{i}") for i in range(len(layouts))]
    results = spawn_runs(2, _run, list(zip(dirs, layouts)), timeout=600)[0]
    assert max(single["grad_norms"]) > LORA["max_grad_norm"]  # clipping is exercised
    adapter, merged = _tensors(os.path.join(one, "hf_adapter")), _tensors(os.path.join(one, "hf_model"))
    b_keys = [k for k in adapter if ".lora_B." in k]
    assert len(b_keys) == 2 * 7 and all(adapter[k].abs().max() > 0 for k in b_keys)  # every adapter trained
    for out_dir, got in zip(dirs, results):
        assert got["gradient_accumulation_steps"] == 4  # tp 2 on 2 ranks: one data-parallel rank
        np.testing.assert_allclose(got["losses"], single["losses"], rtol=1e-4)
        np.testing.assert_allclose(got["grad_norms"], single["grad_norms"], rtol=1e-4)
        got_adapter = _tensors(os.path.join(out_dir, "hf_adapter"))
        assert set(got_adapter) == set(adapter)
        for k, v in adapter.items():
            # atol: Adam turns float noise on near-zero gradients into steps of up to lr
            torch.testing.assert_close(got_adapter[k], v, rtol=1e-4, atol=1e-5)
        got_merged = _tensors(os.path.join(out_dir, "hf_model"))
        assert set(got_merged) == set(merged)
        for k, v in merged.items():
            torch.testing.assert_close(got_merged[k], v, rtol=1e-4, atol=1e-5)
