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


# GLM-4.5's shape (MindSpeed-LLM's LoRA example, tp 4): engine MoE with a shared expert, q/k norms, qkv bias
GLM45 = {"architecture": {
    "model_type": "glm4_moe", "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 64,
    "tie_word_embeddings": False, "attention_bias": True, "use_qk_norm": True,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
    "num_experts_per_tok": 2, "n_routed_experts": 4, "moe_intermediate_size": 32, "n_shared_experts": 1,
    "routed_scaling_factor": 1.0, "n_group": 1, "topk_group": 1, "norm_topk_prob": True, "first_k_dense_replace": 1,
    "num_nextn_predict_layers": 0, "vocab_size": 128}, "model_id": "deepseek_v3", "moe_router_bias_update_rate": 1e-3}


@pytest.mark.dist
@pytest.mark.slow
def test_lora_tp2_trains_and_exports_like_one_process(tmp_path):
    single = spawn_runs(1, _run, [(str(tmp_path / "one"), {}), (str(tmp_path / "glm_one"), GLM45)], timeout=300)[0]
    layouts = [({"tp_size": 2}, 0), ({"tp_size": 2, "sequence_parallel": False, "recompute": True}, 0),
               (dict(GLM45, tp_size=2), 1)]
    dirs = [str(tmp_path / f"tp{i}") for i in range(len(layouts))]
    results = spawn_runs(2, _run, [(d, over) for d, (over, _) in zip(dirs, layouts)], timeout=600)[0]
    refs = [str(tmp_path / "one"), str(tmp_path / "glm_one")]
    assert max(single[0]["grad_norms"]) > LORA["max_grad_norm"]  # clipping is exercised
    adapter = _tensors(os.path.join(refs[0], "hf_adapter"))
    b_keys = [k for k in adapter if ".lora_B." in k]
    assert len(b_keys) == 2 * 7 and all(adapter[k].abs().max() > 0 for k in b_keys)  # every adapter trained
    for out_dir, (_, ref), got in zip(dirs, layouts, results):
        assert got["gradient_accumulation_steps"] == 4  # tp 2 on 2 ranks: one data-parallel rank
        np.testing.assert_allclose(got["losses"], single[ref]["losses"], rtol=1e-4)
        np.testing.assert_allclose(got["grad_norms"], single[ref]["grad_norms"], rtol=1e-4)
        for part in ("hf_adapter", "hf_model"):
            want, have = _tensors(os.path.join(refs[ref], part)), _tensors(os.path.join(out_dir, part))
            assert set(have) == set(want)
            for k, v in want.items():
                # atol 1e-4 (lr / 200): Adam turns float noise on near-zero gradients into steps of a part of lr;
                # a wrong split moves elements by about lr, and a gradient off in scale fails the norms above
                torch.testing.assert_close(have[k], v, rtol=1e-4, atol=1e-4)
