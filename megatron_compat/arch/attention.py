"""Attention variants: Multi-Latent Attention (DeepSeek-V3) and sliding windows (Mistral), flags <-> HF fields.

MLA (--multi-latent-attention; MindSpeed --multi-head-latent-attention) -> transformers' DeepSeek-V3 attention:
  --q-lora-rank                      q_lora_rank (unset: a full-rank q_proj)
  --kv-lora-rank                     kv_lora_rank
  --qk-head-dim (--qk-nope-head-dim)  qk_nope_head_dim: the head dimension without rotary position
  --qk-pos-emb-head-dim (--qk-rope-head-dim)  qk_rope_head_dim: the rotary part, shared by all key heads
  --v-head-dim                       v_head_dim
Megatron rotates MLA's rotary part as interleaved pairs (rope_utils: x[0::2], x[1::2]), transformers' rope_interleave.
Its latent norms are --qk-layernorm's q_layernorm / kv_layernorm; transformers always has them (q_a_layernorm,
kv_a_layernorm), so MLA needs --qk-layernorm.

Sliding windows: MindSpeed --sliding-window W lets a token see the W latest positions, itself included, which is
Mistral's sliding_window W; Megatron --window-size L,0 (flash attention's left and right extents) sees L + 1.
"""
from typing import Any, Dict, List, Optional

from . import ArchitectureError

MLA_KEY_FLAGS = {"q_lora_rank": "--q-lora-rank", "kv_lora_rank": "--kv-lora-rank", "qk_nope_head_dim": "--qk-head-dim",
                 "qk_rope_head_dim": "--qk-pos-emb-head-dim", "v_head_dim": "--v-head-dim"}
MLA_DEFAULTS = {"--kv-lora-rank": 32, "--qk-head-dim": 128, "--qk-pos-emb-head-dim": 64, "--v-head-dim": 128}


def wants_mla(g) -> bool:
    return bool(g.get("--multi-latent-attention") or g.get("--multi-head-latent-attention"))


def _first(g, *flags):
    for flag in flags:
        if g.get(flag) is not None:
            return g[flag]
    return MLA_DEFAULTS.get(flags[0])


def mla_fields(g) -> Dict[str, Any]:
    if not g.get("--qk-layernorm"):
        raise ArchitectureError("--multi-latent-attention without --qk-layernorm: the Hugging Face DeepSeek-V3 "
                                "attention always normalises the q and kv latents (q_a_layernorm, kv_a_layernorm), "
                                "which --qk-layernorm turns on in Megatron's MLA; add --qk-layernorm")
    if g.get("--group-query-attention"):
        raise ArchitectureError("--multi-latent-attention with --group-query-attention: MLA shares one compressed "
                                "key/value latent across heads instead; drop --group-query-attention")
    fields = {"q_lora_rank": g.get("--q-lora-rank"), "kv_lora_rank": _first(g, "--kv-lora-rank"),
              "qk_nope_head_dim": _first(g, "--qk-head-dim", "--qk-nope-head-dim"),
              "qk_rope_head_dim": _first(g, "--qk-pos-emb-head-dim", "--qk-rope-head-dim"),
              "v_head_dim": _first(g, "--v-head-dim")}
    for key, flag in MLA_KEY_FLAGS.items():
        if fields[key] is not None and fields[key] < 1:
            raise ArchitectureError(f"{flag} {fields[key]}: MLA's {key} must be a positive integer"
                                    + (" (leave --q-lora-rank out for a full-rank q projection)"
                                       if key == "q_lora_rank" else ""))
    return {**fields, "rope_interleave": True}


def mla_flags(arch: Dict[str, Any]) -> List[str]:
    out = ["--multi-latent-attention", "--kv-lora-rank", str(arch["kv_lora_rank"]),
           "--qk-head-dim", str(arch["qk_nope_head_dim"]), "--qk-pos-emb-head-dim", str(arch["qk_rope_head_dim"]),
           "--v-head-dim", str(arch["v_head_dim"]), "--qk-layernorm"]
    if arch.get("q_lora_rank") is not None:
        out += ["--q-lora-rank", str(arch["q_lora_rank"])]
    return out


def sliding_window(g) -> Optional[int]:
    """The Hugging Face sliding_window the flags ask for, or None for full attention."""
    if g.get("--sliding-window") is not None and g.get("--window-size") is not None:
        raise ArchitectureError("--sliding-window and --window-size both set the attention window; keep one")
    if g.get("--sliding-window") is not None:
        if g["--sliding-window"] < 1:
            raise ArchitectureError(f"--sliding-window {g['--sliding-window']}: a window holds at least one position "
                                    "(the token itself); drop the flag for full attention")
        return int(g["--sliding-window"])
    text = g.get("--window-size")
    if text is None:
        return None
    parts = [p for p in str(text).strip("()[] ").replace(" ", "").split(",") if p]
    try:
        left, right = (int(p) for p in parts)
    except ValueError:
        raise ArchitectureError(f"--window-size {text}: expects two integers LEFT,RIGHT such as 4095,0") from None
    if left < 0:
        return None  # flash attention's (-1, -1): no window
    if right != 0:
        raise ArchitectureError(f"--window-size {text}: a causal model sees no positions ahead; the right extent "
                                "must be 0")
    return left + 1


def sliding_window_flags(window: Optional[int]) -> List[str]:
    return [] if window is None else ["--sliding-window", str(window)]
