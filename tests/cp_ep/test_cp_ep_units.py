"""In-process checks of the pieces: our forwards against transformers', the attention core, the
auxiliary loss, Gated DeltaNet options and the errors users meet."""
import math

import numpy as np
import pytest
import torch

from fsdp2_core.config import ConfigError
from fsdp2_core.models.build import build_model
from fsdp2_core.models.registry import FAMILIES
from fsdp2_core.testing.tiny import SyntheticDataset, tiny_config
from fsdp2_core.train.loss import lm_loss_sums
from tests.cp_ep.cp_ep_helpers import (
    GPT_OSS,
    QWEN3,
    QWEN3_MOE,
    PackedDataset,
    mixtral_from_megatron_flags,
)

CPU = torch.device("cpu")


def build(arch, **over):
    return build_model(tiny_config("/tmp/unused", architecture=arch, **over), CPU, meta=False, seed=7)


def batch(packed):
    ds = (PackedDataset if packed else SyntheticDataset)(4)
    return {k: torch.as_tensor(np.stack([ds[i][k] for i in range(2)])) for k in ds[0]}


def loss_and_grads(model, b):
    s, n = lm_loss_sums(model, b["tokens"], b["labels"], b["loss_mask"], b["position_ids"])
    loss = s / n + (model.last_aux_loss if model.last_aux_loss is not None else 0.0)
    loss.backward()
    return float(loss.detach()), {k: p.grad.clone() for k, p in model.named_parameters()}


def assert_same(a, b, rtol=1e-5):
    assert math.isclose(a[0], b[0], rel_tol=rtol)
    for k in a[1]:
        torch.testing.assert_close(a[1][k], b[1][k], rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("arch,model_id,packed", [
    (QWEN3, "qwen3", True),                                                  # documents of packed samples kept apart
    (dict(QWEN3_MOE, output_router_logits=False), "qwen3_moe", True),
    # transformers' gpt-oss mask ignores packing
    (dict(GPT_OSS, output_router_logits=False), "gpt_oss", False),
    ("mixtral", "qwen3_moe", False),
])
@pytest.mark.parametrize("dispatcher", ["eager", "fused"])
def test_our_forward_equals_transformers(arch, model_id, packed, dispatcher):
    arch = mixtral_from_megatron_flags() if arch == "mixtral" else arch
    b = batch(packed)
    plain = loss_and_grads(build(arch), b)
    ours_model = build(arch, model_id=model_id, ep_dispatcher=dispatcher)
    assert ours_model.config._attn_implementation == "fsdp2_ulysses"
    assert_same(plain, loss_and_grads(ours_model, b))


def test_router_aux_loss_is_megatrons_per_layer_sum():
    model = build(QWEN3_MOE, model_id="qwen3_moe")
    b = batch(False)
    model.model(input_ids=b["tokens"], use_cache=False)
    routes = [blk._fsdp2_route for blk in model._fsdp2_moe_blocks]
    assert len(routes) == 2
    from fsdp2_core.models.router_losses import RouterLossCoeffs, router_losses
    got = float(router_losses(model._fsdp2_moe_blocks, RouterLossCoeffs(aux=0.01)).total.detach())
    want = 0.0
    for logits, idx, _ in routes:  # Megatron: coeff · E / (T² k) · Σ_e Σ_t p_te · count_e
        t, e = logits.shape
        probs = torch.softmax(logits.detach().double(), -1)
        counts = torch.bincount(idx.reshape(-1), minlength=e).double()
        want += 0.01 * e / (t * t * idx.shape[1]) * float((probs.sum(0) * counts).sum())
    assert math.isclose(got, want, rel_tol=1e-6)
    lm_loss_sums(model, b["tokens"], b["labels"], b["loss_mask"])
    assert math.isclose(float(model.last_aux_loss), got, rel_tol=1e-6)  # what the loss leaves for the step


def test_registry_rows():
    assert set(FAMILIES) == {"qwen3", "qwen3_moe", "gpt_oss", "deepseek_v3", "deepseek_v2", "minimax_m2", "qwen2_moe",
                             "deepseek_v32"}
    assert (FAMILIES["deepseek_v2"].score_function, FAMILIES["minimax_m2"].score_function) == ("softmax", "sigmoid")
    assert "mixtral" in FAMILIES["qwen3_moe"].model_types and not FAMILIES["qwen3"].experts


def test_errors_say_what_to_change():
    with pytest.raises(ConfigError, match="serves model_type qwen3_moe / mixtral, but this model is qwen3"):
        build(QWEN3, model_id="qwen3_moe")
    with pytest.raises(ConfigError, match="need our MoE dispatch: set model_id"):
        build(QWEN3_MOE, ep_size=2)
    with pytest.raises(ConfigError, match="mc2 is Ascend's fused communication"):
        build(QWEN3_MOE, model_id="qwen3_moe", ep_dispatcher="mc2")
    with pytest.raises(ConfigError, match="use_triton_gdn applies to Gated DeltaNet"):
        build(QWEN3, use_triton_gdn=True)
    from fsdp2_core.models.attention import SequenceSplit, split_inputs
    from fsdp2_core.parallel.context_parallel import check_heads
    model = build(QWEN3)
    with pytest.raises(ConfigError, match="do not divide by 3"):
        check_heads(model.config, 3)
    check_heads(model.config, 4)  # 2 KV heads for 4 ranks: replicated, allowed
    with pytest.raises(ConfigError, match="not divisible by cp_size 3"):
        split_inputs(SequenceSplit(None, 0, 3), *(torch.zeros(1, 32, dtype=torch.long),) * 3)


def test_kv_heads_replicated_for_cp_keep_their_query_heads():
    from fsdp2_core.models.attention import core_attention
    from fsdp2_core.parallel.context_parallel import _replicate_kv
    q, k, v = torch.randn(1, 8, 6, 4), torch.randn(1, 2, 6, 4), torch.randn(1, 2, 6, 4)
    full = core_attention(q, k, v, 0.5)
    k4, v4 = _replicate_kv(k, 4), _replicate_kv(v, 4)  # 2 -> 4 KV heads; rank r gets q heads 2r..2r+1, kv head r
    parts = [core_attention(q[:, 2 * r:2 * r + 2], k4[:, r:r + 1], v4[:, r:r + 1], 0.5) for r in range(4)]
    torch.testing.assert_close(torch.cat(parts, 1), full)


GDN = {"model_type": "qwen3_next", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 128,
       "linear_num_value_heads": 4, "linear_num_key_heads": 2, "linear_key_head_dim": 8, "linear_value_head_dim": 8,
       "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "shared_expert_intermediate_size": 16,
       "layer_types": ["linear_attention", "full_attention"], "max_position_embeddings": 64}


def test_gated_deltanet_chunk_size_changes_nothing_but_speed():
    from fsdp2_core.models.families.qwen3_next import (
        family_available,
        triton_gdn_available,
    )
    if not family_available():
        with pytest.raises(ConfigError, match="needs transformers.models.qwen3_next"):
            build(GDN)
        return
    b = batch(False)
    a = loss_and_grads(build(GDN, gdn_chunk_size=8), b)
    c = loss_and_grads(build(GDN, gdn_chunk_size=16), b)
    assert_same(a, c, rtol=1e-4)
    if not triton_gdn_available():
        with pytest.raises(ConfigError, match="use_triton_gdn needs Triton and the flash-linear-attention"):
            build(GDN, use_triton_gdn=True)
    from fsdp2_core.parallel.context_parallel import check_attention_only
    with pytest.raises(ConfigError, match="linear_attention layers"):
        check_attention_only(build(GDN).config)
