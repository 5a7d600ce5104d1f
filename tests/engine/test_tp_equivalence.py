"""Tensor parallelism (sequence parallel and the vocabulary-parallel loss on by default) trains like one
process: per-iteration losses and gradient norms within 1e-4 (fp32) for Llama-, Qwen3- and MoE-shaped
models (shared experts included), GPT-2 and gpt-oss, with and without recompute and the chunked loss
(and compiled blocks), at TP 2 and TP 2 × FSDP 2. Clipping is active in every run (max_grad_norm below
the norms)."""
import numpy as np
import pytest

from fsdp2_core.testing.tiny import LLAMA
from tests.cp_ep.cp_ep_helpers import GPT_OSS, QWEN3, QWEN3_MOE
from tests.engine.helpers import spawn_layouts

pytestmark = [pytest.mark.dist, pytest.mark.slow]
RTOL = 1e-4
STEPS = 6
BASE = {"max_grad_norm": 0.5, "max_steps": STEPS}
MODELS = {
    "llama": dict(BASE, architecture=LLAMA),
    "qwen3": dict(BASE, architecture=QWEN3, model_id="qwen3"),
    "moe": dict(BASE, architecture=QWEN3_MOE, model_id="qwen3_moe"),
    "gpt2": dict(BASE, architecture={"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 128,
                                     "n_positions": 64, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
                 fsdp_modules=["transformer.h.{*}"], recompute_modules=["transformer.h.{*}"]),
    "gpt_oss": dict(BASE, architecture=GPT_OSS, model_id="gpt_oss", z_loss_coeff=1e-2),  # with the z-loss too
    "shared_experts": dict(BASE, architecture={  # Qwen2-MoE (plain transformers forward): shared expert split
        "model_type": "qwen2_moe", "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
        "shared_expert_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2, "vocab_size": 128,
        "max_position_embeddings": 64, "tie_word_embeddings": False}),
}
RECOMPUTE_CHUNKED = {"recompute": True, "chunk_loss_size": 8}


def run(model: str, **over):
    return dict(MODELS[model], **over), False


def close(a, b, rtol=RTOL):
    assert len(a["losses"]) == len(b["losses"]) == STEPS
    np.testing.assert_allclose(np.asarray(a["losses"]), np.asarray(b["losses"]), rtol=rtol)
    np.testing.assert_allclose(np.asarray(a["grad_norms"]), np.asarray(b["grad_norms"]), rtol=rtol)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    names = list(MODELS)
    runs = spawn_layouts(1, tmp_path_factory.mktemp("one"), [run(name) for name in names])
    return dict(zip(names, runs))


def test_references_train_and_clip(single):
    for name, r in single.items():
        assert np.all(np.isfinite(r["losses"])) and max(r["grad_norms"]) > 0.5, name


def test_tp2_equals_one_process(single, tmp_path):
    # Each model runs plain in one of the two layouts and with recompute and the chunked loss in the other.
    layouts = [("llama", dict(RECOMPUTE_CHUNKED, compile_blocks=True)), ("llama", {"sequence_parallel": False}),
               ("qwen3", RECOMPUTE_CHUNKED), ("moe", {}), ("gpt2", RECOMPUTE_CHUNKED),
               ("gpt_oss", {"chunk_loss_size": 8}), ("shared_experts", {})]
    results = spawn_layouts(2, tmp_path, [run(name, tp_size=2, **over) for name, over in layouts])
    for (name, over), got in zip(layouts, results):
        assert got["gradient_accumulation_steps"] == 4  # tp 2 on 2 ranks: one data-parallel rank
        close(single[name], got)


def test_tp2_x_fsdp2_equals_one_process(single, tmp_path):
    layouts = [("llama", RECOMPUTE_CHUNKED), ("qwen3", {}), ("moe", RECOMPUTE_CHUNKED)]  # llama plain: test_equivalence
    results = spawn_layouts(4, tmp_path, [run(name, tp_size=2, **over) for name, over in layouts], timeout=900)
    for (name, over), got in zip(layouts, results):
        assert got["gradient_accumulation_steps"] == 2  # 2 data-parallel ranks sharded by FSDP
        close(single[name], got)
