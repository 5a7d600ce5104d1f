"""DeepSeek Sparse Attention from MindSpeed's flags: the GLM-MoE-DSA family, our forward equal to transformers' (both
DSA families), the sparse attention and the indexer's KL loss equal to megatron-core's (`unfused_dsa_fn`,
`compute_dsa_indexer_loss` with the sparse loss, MindSpeed's form), the indexer trained by that loss only, and the
refusals."""
import types
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsdp2_core.config import ConfigError
from fsdp2_core.models.build import build_model
from fsdp2_core.models.indexer_loss import (
    INDEXER_LOSS,
    attention_target,
    select_top_k,
    selected_mask,
    sparse_indexer_kl,
)
from fsdp2_core.testing.tiny import SyntheticDataset, tiny_config
from fsdp2_core.train.loss import lm_loss_sums
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, DSA, flag_config

CPU = torch.device("cpu")


def _megatron_dsa():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.transformer.experimental_attention_variant import dsa
    return dsa


def _causal(seq):
    return torch.ones(seq, seq, dtype=torch.bool).tril()


def _qkv_and_top(b=2, s=12, h=3, d=8, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, key, v = (torch.randn(b, h, s, d, generator=g) for _ in range(3))
    scores = torch.randn(b, s, s, generator=g)
    masked, top = select_top_k(scores, _causal(s).expand(b, s, s), k)
    return q, key, v, masked, top


def test_sparse_attention_equals_megatron_core():
    q, k, v, _, top = _qkv_and_top()
    b, h, s, d = q.shape
    mask = _causal(s) & selected_mask(top, s)[:, None]
    ours = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3)
    theirs = _megatron_dsa().unfused_dsa_fn(q.permute(2, 0, 1, 3), k.permute(2, 0, 1, 3), v.permute(2, 0, 1, 3),
                                            top, 0.3)                                     # [s, b, h·d]
    torch.testing.assert_close(ours.permute(2, 0, 1, 3).reshape(s, b, h * d), theirs, rtol=1e-5, atol=1e-6)


def test_indexer_loss_equals_megatron_cores_sparse_loss():
    q, k, _, masked, top = _qkv_and_top(seed=1)
    s = q.shape[2]
    mask = _causal(s) & selected_mask(top, s)[:, None]
    ours = sparse_indexer_kl(attention_target(q, k, 0.3, mask), masked, top)
    pg = types.SimpleNamespace(tp=types.SimpleNamespace(size=lambda: 1))
    theirs = _megatron_dsa().compute_dsa_indexer_loss(masked.clone(), top, q.permute(2, 0, 1, 3),
                                                      k.permute(2, 0, 1, 3), 0.3, 1.0, True, pg)
    assert ours > 0.01
    assert abs(float(ours) - float(theirs)) < 1e-6, (float(ours), float(theirs))


def test_flags_build_glm_moe_dsa():
    cfg = flag_config(DSA)
    arch = cfg.model.architecture
    assert arch["model_type"] == "glm_moe_dsa" and cfg.model.model_id == "deepseek_v32"
    assert (arch["index_n_heads"], arch["index_head_dim"], arch["index_topk"]) == (2, 16, 8)
    assert cfg.model.dsa_indexer_loss_coeff == 1.0 and "rope_interleave" not in arch
    defaults = flag_config(DSA.replace("--index-n-heads 2 --index-head-dim 16 --index-topk 8", "")).model
    assert (defaults.architecture["index_n_heads"], defaults.architecture["index_head_dim"],
            defaults.architecture["index_topk"]) == (64, 128, 2048)  # MindSpeed's defaults


@pytest.mark.parametrize("extra, words", [
    (DSA.replace("--index-head-dim 16", "--index-head-dim 24"), "power of two"),
    (DSA.replace("--q-lora-rank 16", ""), "--q-lora-rank"),
    (DSA.replace("--enable-dsa-indexer", ""), "without --enable-dsa-indexer"),
    (DSA + " --context-parallel-size 2", "context parallelism"),
    (DSA + " --index-topk-freq 4", "--index-topk-freq"),
])
def test_refusals_name_the_flag(extra, words):
    result = translate(BASE + extra.split(), world_size=2)
    assert not result.ok
    assert words in " ".join(str(p) for p in result.problems()), result.problems()


def _arch(model_type, top_k):
    return dict(model_type=model_type, num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                num_attention_heads=4, num_key_value_heads=4, q_lora_rank=16, kv_lora_rank=16, qk_nope_head_dim=8,
                qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=16,
                n_shared_experts=1, n_group=1, topk_group=1, first_k_dense_replace=1, index_n_heads=2,
                index_head_dim=16, index_topk=top_k, vocab_size=128, max_position_embeddings=64,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def _batch():
    ds = SyntheticDataset(4)
    return {k: torch.as_tensor(np.stack([ds[i][k] for i in range(2)])) for k in ds[0]}


@pytest.mark.parametrize("model_type", ["glm_moe_dsa", "deepseek_v32"])
def test_our_forward_equals_transformers_and_trains_the_indexer(model_type):
    b = _batch()
    plain = build_model(tiny_config("/tmp/unused", architecture=_arch(model_type, 4)), CPU, meta=False, seed=5)
    ours = build_model(tiny_config("/tmp/unused", architecture=_arch(model_type, 4), model_id="deepseek_v32",
                                   dsa_indexer_loss_coeff=0.5), CPU, meta=False, seed=5)
    with torch.no_grad():
        expected = plain(input_ids=b["tokens"]).logits
        dense = build_model(tiny_config("/tmp/unused", architecture=_arch(model_type, 64)), CPU, meta=False,
                            seed=5)(input_ids=b["tokens"]).logits
        got = ours(input_ids=b["tokens"], position_ids=b["position_ids"]).logits
    assert (expected - dense).abs().max() > 1e-3  # top 4 of 32 keys: the selection matters
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)

    s, n = lm_loss_sums(ours, b["tokens"], b["labels"], b["loss_mask"], b["position_ids"])
    logged = ours.last_router_losses[INDEXER_LOSS]
    assert logged > 0 and abs(float(ours.last_aux_loss.detach()) - 2 * logged) < 1e-6  # 2 layers, coeff included
    (s / n).backward()
    indexer = {k: p.grad for k, p in ours.named_parameters() if ".indexer." in k}
    assert indexer and all(g is None or not g.any() for g in indexer.values())  # the LM loss never reaches it
    ours.zero_grad()
    lm_loss_sums(ours, b["tokens"], b["labels"], b["loss_mask"], b["position_ids"])
    ours.last_aux_loss.backward()
    assert all(g is not None and g.any() for g in (p.grad for k, p in ours.named_parameters() if ".indexer." in k))
    assert all(p.grad is None or not p.grad.any() for k, p in ours.named_parameters() if ".indexer." not in k)


def test_context_parallelism_and_a_stray_coefficient_are_refused():
    with pytest.raises(ConfigError, match="model_id deepseek_v32"):
        tiny_config("/tmp/unused", architecture=_arch("glm_moe_dsa", 4), dsa_indexer_loss_coeff=1.0)
    with pytest.raises(ConfigError, match="context"):
        tiny_config("/tmp/unused", architecture=_arch("glm_moe_dsa", 4), model_id="deepseek_v32", cp_size=2)
