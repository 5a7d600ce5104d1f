"""MiniCPM's scaling from MindSpeed-LLM's flags (examples/mcore/minicpm), flags <-> HF fields.

MindSpeed-LLM's MiniCPM is a Llama-layout model (rope, RMSNorm, SwiGLU) with three scales (its gpt_model.py and
transformer_layer.py):
  --scale-emb S        the word embeddings times S                          -> embedding_multiplier S
  --scale-depth D      each attention and MLP output times D / sqrt(L) before its residual add, L = --num-layers
                                                                            -> residual_multiplier D / sqrt(L)
  --dim-model-base B   the final hidden states divided by hidden / B before the output layer
                                                                            -> logits_scaling hidden / B
transformers' Granite computes exactly these (its attention_multiplier set to Megatron's head_dim^-0.5), so the
flags build the granite family. A flag left out scales nothing (1.0). MiniCPM3 adds latent attention, which
Granite has not: refused with the rest of the combinations Granite cannot hold.
"""
import math
from typing import Any, Dict, List, Optional

from . import ArchitectureError

MINICPM_FLAGS = ("--scale-emb", "--scale-depth", "--dim-model-base")
FAMILY = "granite"


def minicpm_scales(g) -> Optional[Dict[str, float]]:
    """The MiniCPM scales the flags give ({flag: value}), or None when none is given."""
    given = {flag: float(g[flag]) for flag in MINICPM_FLAGS if g.get(flag) is not None}
    for flag, value in given.items():
        if not value > 0:
            raise ArchitectureError(f"{flag} {value:g}: MiniCPM's scales are positive numbers")
    return given or None


def check_minicpm_family(scales: Dict[str, float], family: str) -> None:
    """Only the plain Llama layout has a family with MiniCPM's scales here."""
    if family != "llama":
        raise ArchitectureError(
            f"{', '.join(scales)} (MiniCPM's scaling) with flags that describe the {family} family: only the "
            "Llama layout (no experts, latent attention, q/k norms, q/k/v-only biases or sliding window) has a "
            "family with these scales here (granite); MiniCPM3's latent attention is not one")


def granite_fields(scales: Dict[str, float], num_layers: int, hidden: int, head_dim: int) -> Dict[str, Any]:
    """Granite's multipliers for the flags' scales; `num_layers` is --num-layers as given (MindSpeed's args)."""
    return {
        "embedding_multiplier": scales.get("--scale-emb", 1.0),
        "residual_multiplier": scales.get("--scale-depth", math.sqrt(num_layers)) / math.sqrt(num_layers),
        "logits_scaling": hidden / scales["--dim-model-base"] if "--dim-model-base" in scales else 1.0,
        "attention_multiplier": head_dim ** -0.5,
    }


def minicpm_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of granite_fields; a Granite whose attention is not scaled by head_dim^-0.5 has no Megatron flags."""
    head_dim = arch.get("head_dim") or arch["hidden_size"] // arch["num_attention_heads"]
    if not math.isclose(arch.get("attention_multiplier", 1.0), head_dim ** -0.5, rel_tol=1e-6):
        raise ArchitectureError(f"granite with attention_multiplier {arch.get('attention_multiplier')}: Megatron "
                                f"scales attention scores by head_dim^-0.5 ({head_dim ** -0.5:g}) and has no flag "
                                "for another scale")
    out = []
    if arch.get("embedding_multiplier", 1.0) != 1.0:
        out += ["--scale-emb", f"{arch['embedding_multiplier']:.12g}"]
    if arch.get("residual_multiplier", 1.0) != 1.0:
        depth = arch["residual_multiplier"] * math.sqrt(arch["num_hidden_layers"])
        out += ["--scale-depth", f"{depth:.12g}"]  # the flag's value again, not its rounding error
    if arch.get("logits_scaling", 1.0) != 1.0:
        out += ["--dim-model-base", f"{arch['hidden_size'] / arch['logits_scaling']:.12g}"]
    return out
