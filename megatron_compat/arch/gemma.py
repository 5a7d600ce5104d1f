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
required. Gemma 2's flags (--post-norm, soft-capping, --query-pre-attn-scalar, --interleave-sliding-window) have no
translation here yet and are refused by their own rows.
"""
from typing import Any, Dict, List

from . import ArchitectureError

EXACT_GELU = "gelu_python"  # erf GeLU; transformers' Gemma config turns a plain "gelu" into the tanh approximation


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
    return "gemma"


def gemma_fields(a) -> Dict[str, Any]:
    """What Gemma's config holds beyond the rope families' common fields."""
    return {"hidden_act": "gelu_pytorch_tanh" if a["gelu_tanh"] else EXACT_GELU, "attention_bias": False}


def gemma_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of gemma_fields (the caller writes the rope family's common flags, minus --swiglu)."""
    act = arch.get("hidden_act", "gelu_pytorch_tanh")
    if act not in (EXACT_GELU, "gelu_pytorch_tanh"):
        raise ArchitectureError(f"gemma with hidden_act {act}: MindSpeed-LLM's gated GeLU is exact (--geglu) or "
                                "tanh-approximate (--gelu-tanh) only")
    if arch.get("attention_bias"):
        raise ArchitectureError("gemma with attention_bias: no flag gives Gemma's attention biases")
    return ["--gelu-tanh" if act == "gelu_pytorch_tanh" else "--geglu", "--input-embeds-norm",
            "--add-rmsnorm-offset"]
