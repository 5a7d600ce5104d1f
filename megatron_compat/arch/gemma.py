"""Gemma from MindSpeed-LLM's flags (examples/mcore/gemma), flags <-> HF fields.

MindSpeed-LLM's Gemma is a rope model with RMSNorm and a gated GeLU MLP:
  --geglu               gated MLP with exact GeLU (its core_mlp_init: F.gelu on the first half, times the second):
                        hidden_act gelu_python, since transformers' Gemma config reads "gelu" as the tanh one
  --gelu-tanh           the same gate with the tanh approximation (gelu_pytorch_tanh, Gemma's own activation)
  --input-embeds-norm   the embeddings scaled by sqrt(hidden size), as transformers' Gemma always does
  --add-rmsnorm-offset  RMSNorm computing x · (1 + w), which is Gemma's norm; without it x · w is the same model
                        trained the same way (Adam sees the same gradient; norms take no weight decay)
  --kv-channels         head_dim (Gemma's heads are wider than hidden / heads)
Gemma has no linear biases and always scales its embeddings, so --disable-bias-linear and --input-embeds-norm are
required.

Gemma 2 (examples/mcore/gemma2, its gemma2_spec) adds, as MindSpeed computes them:
  --post-norm                    a norm on the attention output and on the MLP output before each residual add
                                 (post_attention_layernorm, post_feedforward_layernorm); required, Gemma 2 has them
  --query-pre-attn-scalar S      scores scaled by S^-0.5 instead of head_dim^-0.5 (unset: head_dim, written out since
                                 transformers' default is 256)
  --attn-logit-softcapping C     scaled scores → C · tanh(scores / C) before the mask (unset: none)
  --output-logit-softcapping C   logits → C · tanh(logits / C) (unset: none; the engine's loss applies it too)
  --interleave-sliding-window W  layers 1, 3, 5, ... (1-based, odd: MindSpeed's is_sliding) see the W latest positions,
                                 the token's own included: layer_types alternating from sliding, sliding_window W
"""
from typing import Any, Dict, List

from . import ArchitectureError

EXACT_GELU = "gelu_python"  # erf GeLU; transformers' Gemma config turns a plain "gelu" into the tanh approximation


GEMMA2_FLAGS = ("--post-norm", "--query-pre-attn-scalar", "--attn-logit-softcapping", "--output-logit-softcapping",
                "--interleave-sliding-window")


def gemma2_flags_given(g) -> List[str]:
    return [f for f in GEMMA2_FLAGS if g.get(f) not in (None, False)]


def wants_geglu(g) -> bool:
    return bool(g.get("--geglu") or g.get("--gelu-tanh"))


def gemma_family(a) -> str:
    """The Gemma family for a rope model with a gated GeLU MLP, or the flag that keeps it from being one."""
    if a["swiglu"]:
        raise ArchitectureError("--swiglu with --geglu / --gelu-tanh: both choose the gated MLP's activation; keep one")
    if not a["rms"]:
        raise ArchitectureError("a gated GeLU MLP (--geglu / --gelu-tanh) maps to Gemma, which needs "
                                "--normalization RMSNorm")
    if not a["embeds_norm"]:
        raise ArchitectureError("a gated GeLU MLP (--geglu / --gelu-tanh) maps to Gemma, which scales the embeddings "
                                "by sqrt(hidden size); add --input-embeds-norm")
    extras = [(a["routing"], "experts (--num-experts)"), (a["qk_norm"], "--qk-layernorm"),
              (a["mla"], "latent attention (--multi-latent-attention)"),
              (a["window"], "a sliding window (--sliding-window / --window-size)"), (a["qkv_bias"], "--add-qkv-bias")]
    given = [name for present, name in extras if present]
    if given:
        raise ArchitectureError(f"a gated GeLU MLP maps to the Gemma family, which has no {', '.join(given)}")
    gemma2 = a["gemma2"]
    if gemma2 and "--post-norm" not in gemma2:
        raise ArchitectureError(f"{', '.join(gemma2)}: Gemma 2's, whose layers always normalise the attention and MLP "
                                "outputs; add --post-norm")
    return "gemma2" if gemma2 else "gemma"


def gemma_fields(a) -> Dict[str, Any]:
    """What Gemma's config holds beyond the rope families' common fields."""
    return {"hidden_act": "gelu_pytorch_tanh" if a["gelu_tanh"] else EXACT_GELU, "attention_bias": False}


def _positive(g, flag):
    value = g.get(flag)
    if value is not None and not value > 0:
        raise ArchitectureError(f"{flag} {value}: expects a positive number")
    return value


def gemma2_fields(a, g) -> Dict[str, Any]:
    """Gemma 2's fields besides Gemma's: the scale, soft-capping and the interleaved windows MindSpeed computes."""
    window = _positive(g, "--interleave-sliding-window")
    if window is not None and g.get("--noop-layers"):
        raise ArchitectureError("--interleave-sliding-window with --noop-layers: MindSpeed alternates the windows by "
                                "layer number, noop layers included; drop one")
    cp = [f"{flag} {g[flag]}" for flag in ("--context-parallel-size", "--ds-sequence-parallel-size")
          if (g.get(flag) or 1) > 1]
    if cp and g.get("--attn-logit-softcapping") is not None:
        raise ArchitectureError(f"{cp[0]} with --attn-logit-softcapping: the engine's context-parallel attention "
                                "has no soft-capping; drop one")
    fields = gemma_fields(a)
    return {"hidden_activation": fields.pop("hidden_act"), **fields,
            "query_pre_attn_scalar": _positive(g, "--query-pre-attn-scalar") or a["head_dim"],
            "attn_logit_softcapping": _positive(g, "--attn-logit-softcapping"),
            "final_logit_softcapping": _positive(g, "--output-logit-softcapping"),
            "sliding_window": window,
            "layer_types": ["sliding_attention" if window and i % 2 == 0 else "full_attention"
                            for i in range(a["layers"])]}


def gemma2_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of gemma2_fields (beside gemma_flags)."""
    window = arch.get("sliding_window")
    types = arch.get("layer_types") or []
    want = ["sliding_attention" if window and i % 2 == 0 else "full_attention" for i in range(len(types))]
    if types != want:
        raise ArchitectureError("gemma2 layer_types other than alternating from a sliding layer: MindSpeed's "
                                "--interleave-sliding-window slides the odd (1-based) layers only")
    out = ["--post-norm", "--query-pre-attn-scalar", str(arch["query_pre_attn_scalar"])]
    for key, flag in (("attn_logit_softcapping", "--attn-logit-softcapping"),
                      ("final_logit_softcapping", "--output-logit-softcapping"),
                      ("sliding_window", "--interleave-sliding-window")):
        if arch.get(key) is not None:
            out += [flag, str(arch[key])]
    return out


def gemma_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of gemma_fields (the caller writes the rope family's common flags, minus --swiglu)."""
    act = arch.get("hidden_activation" if arch["model_type"] == "gemma2" else "hidden_act", "gelu_pytorch_tanh")
    if act not in (EXACT_GELU, "gelu_pytorch_tanh"):
        raise ArchitectureError(f"gemma with hidden_act {act}: MindSpeed-LLM's gated GeLU is exact (--geglu) or "
                                "tanh-approximate (--gelu-tanh) only")
    if arch.get("attention_bias"):
        raise ArchitectureError("gemma with attention_bias: no flag gives Gemma's attention biases")
    return ["--gelu-tanh" if act == "gelu_pytorch_tanh" else "--geglu", "--input-embeds-norm",
            "--add-rmsnorm-offset"] + (gemma2_flags(arch) if arch["model_type"] == "gemma2" else [])
