"""MiniMax-M2 from Megatron flags -> transformers' minimax_m2.

Megatron-based MiniMax-M2 recipes give a sigmoid router with an expert bias (--moe-router-score-function sigmoid
--moe-router-enable-expert-bias), experts in every layer, --qk-layernorm, --rotary-percent 0.5, and a layer spec
(--spec ... minimax_m2 ...) whose q/k norms span all heads of a layer, as MiniMax-M2's do (one RMSNorm over
heads × head_dim). Without such a spec --qk-layernorm normalises each head, which is the GLM-4.5 family. The spec
is recognised by the name minimax in its words; its module itself is not read.
"""
from typing import Any, Dict

from . import ArchitectureError
from .moe import Routing


def wants_minimax(g) -> bool:
    words = g.get("--spec") or []
    return any("minimax" in str(w).lower() for w in (words if isinstance(words, (list, tuple)) else [words]))


def check_minimax(a: Dict[str, Any], r: Routing) -> None:
    """What transformers' MiniMax-M2 fixes: Megatron's renormalised sigmoid router (top k > 1), experts in every
    layer, no shared experts, groups or scaling, q/k norms, no linear biases."""
    if r is None:
        raise ArchitectureError("--spec naming MiniMax-M2 without --num-experts: MiniMax-M2 is a mixture of experts")
    named = [name for name, on in (
        ("a softmax router (add --moe-router-score-function sigmoid)", r.score != "sigmoid"),
        ("--moe-router-topk 1 (MiniMax-M2 renormalises the top k, Megatron's sigmoid router only for k > 1)",
         r.topk == 1),
        ("expert groups", r.groups > 1), ("--moe-router-topk-scaling-factor", r.scaling != 1.0),
        ("shared experts", r.shared_ffn), ("dense layers (--moe-layer-freq / --first-k-dense-replace)",
                                           r.dense_layers),
        ("no --qk-layernorm (MiniMax-M2 always normalises q and k)", not a["qk_norm"]),
        ("linear biases (add --disable-bias-linear)", a["bias"] or a["qkv_bias"]),
        ("--multi-latent-attention", a["mla"]), ("a sliding window", a["window"])) if on]
    if named:
        raise ArchitectureError(f"--spec naming MiniMax-M2 with {'; '.join(named)}: transformers' MiniMax-M2 routes "
                                "every layer's tokens with a renormalised sigmoid router and an expert bias, without "
                                "shared experts, and normalises q and k over all heads")
