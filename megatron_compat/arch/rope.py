"""RoPE scaling flags -> Hugging Face `rope_parameters`, and back.

  Megatron  --use-rope-scaling [--rope-scaling-factor F]    Llama-3.1 scaling with Megatron's fixed low 1, high 4
                                                           and original context 8192 (rope_utils._apply_scaling)
            MLA: --rope-type yarn (its default) with --rotary-scaling-factor, --mscale, --mscale-all-dim
  MindSpeed --rope-scaling-type llama3 --rope-scaling-factor --low-freq-factor --high-freq-factor
                --original-max-position-embeddings (or --rope-scaling-original-max-position-embeddings)
            --rope-scaling-type yarn --rope-scaling-factor --rope-scaling-original-max-position-embeddings
                --rope-scaling-beta-fast/--beta-fast --rope-scaling-beta-slow/--beta-slow
                --rope-scaling-mscale --rope-scaling-mscale-all-dim
            --rope-scaling-type longrope --long-factor L1,L2,.. --short-factor S1,S2,..
                --rope-scaling-original-max-position-embeddings [--long-mscale --short-mscale] (Phi-3.5, MiniCPM3)
  Megatron  --rotary-seq-len-interpolation-factor F          linear position interpolation (rope_type linear)

LongRoPE as MindSpeed computes it (rotary_pos_embedding.py): inverse frequencies 1 / (factor_i · base^(2i/d)), with
the long factors when --seq-length exceeds the original context and the short ones otherwise (--longrope-freqs-type
mul and outer compute the same), cos and sin scaled by --long-mscale / --short-mscale when given, else by
sqrt(1 + ln(max positions / original) / ln(original)) beyond the original context. transformers' longrope computes
the same, choosing the factors by each batch's longest position: the same choice for whole sequences, so runs
where a sequence may end before the original context while --seq-length exceeds it (position ids reset per
document, context parallelism) are refused.

YaRN's attention factor (the scale of cos/sin) is written explicitly as Megatron computes it
(yarn_rotary_pos_embedding._yarn_get_concentration_factor: mscale(f, mscale) / mscale(f, mscale_all_dim)), because
transformers infers a different one when mscale_all_dim is 0. MLA's softmax scale (mscale(f, mscale_all_dim)²) is
transformers' DeepSeek-V3 rule already.
"""
import math
from typing import Any, Dict, List, Optional

from . import ArchitectureError

MEGATRON_LLAMA3 = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
MLA_YARN_ORIGINAL = 4096  # MLATransformerConfig.original_max_position_embeddings (no Megatron flag sets it)


def yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _positions(value) -> int:
    if not math.isfinite(value) or value < 1 or value != int(value):
        raise ArchitectureError(f"--original-max-position-embeddings {value}: the pretrained context length must be a "
                                "positive whole number of positions")
    return int(value)


def _first(g, *flags, default=None):
    for flag in flags:
        if g.get(flag) is not None:
            return g[flag]
    return default


def _yarn(g, factor, original, mscale, mscale_all_dim) -> Dict[str, Any]:
    return {"rope_type": "yarn", "factor": float(factor), "original_max_position_embeddings": _positions(original),
            "beta_fast": float(_first(g, "--rope-scaling-beta-fast", "--beta-fast", default=32)),
            "beta_slow": float(_first(g, "--rope-scaling-beta-slow", "--beta-slow", default=1)),
            "mscale": float(mscale), "mscale_all_dim": float(mscale_all_dim),
            "attention_factor": yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)}


def rope_scaling(g, mla: bool) -> Optional[Dict[str, Any]]:
    """The scaling keys of rope_parameters the flags ask for (rope_type and its factors), or None."""
    params = _rope_scaling(g, mla)
    return _checked(params) if params else None


# Which flag set each key (MindSpeed's spelling; Megatron's MLA flags in brackets), for the checks' messages.
_KEY_FLAGS = {"factor": "--rope-scaling-factor (MLA: --rotary-scaling-factor)",
              "original_max_position_embeddings": "--original-max-position-embeddings / "
                                                  "--rope-scaling-original-max-position-embeddings",
              "low_freq_factor": "--low-freq-factor", "high_freq_factor": "--high-freq-factor",
              "beta_fast": "--rope-scaling-beta-fast", "beta_slow": "--rope-scaling-beta-slow",
              "mscale": "--rope-scaling-mscale (MLA: --mscale)",
              "mscale_all_dim": "--rope-scaling-mscale-all-dim (MLA: --mscale-all-dim)"}
_POSITIVE = ("factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor")


def _checked(params: Dict[str, Any]) -> Dict[str, Any]:
    """Nonsense factors refused naming the flag: finite numbers, positive sizes and factors, a whole context length,
    the high frequency factor above the low one (the smooth interpolation divides by their difference)."""
    for key, flag in _KEY_FLAGS.items():
        value = params.get(key)
        if value is None or key == "attention_factor":
            continue
        if not math.isfinite(value) or (key in _POSITIVE and value <= 0):
            kind = "a positive number" if key in _POSITIVE else "a finite number"
            raise ArchitectureError(f"{flag} {value}: RoPE scaling's {key} must be {kind}")
    if params.get("high_freq_factor", 1.0) <= params.get("low_freq_factor", 0.0):
        raise ArchitectureError(f"--high-freq-factor {params['high_freq_factor']} must be above --low-freq-factor "
                                f"{params['low_freq_factor']} (Llama-3.1: 4 and 1)")
    return params


def _linear_interpolation(g) -> Optional[Dict[str, Any]]:
    """--rotary-seq-len-interpolation-factor F: Megatron divides the positions by F, which is transformers' linear
    rope_type (its inverse frequencies divided by F); F = 1 is no interpolation."""
    factor = g["--rotary-seq-len-interpolation-factor"]
    others = [f for f in ("--rope-scaling-type", "--use-rope-scaling") if g.get(f)]
    if others:
        raise ArchitectureError(f"--rotary-seq-len-interpolation-factor with {others[0]}: both scale the rotary "
                                "positions; keep one")
    if factor < 1:
        raise ArchitectureError(f"--rotary-seq-len-interpolation-factor {factor}: positions are divided by it; give "
                                "1 (none) or more")
    return None if factor == 1 else {"rope_type": "linear", "factor": float(factor)}


def _fork_llama3(g, kind: Optional[str]) -> str:
    """--rope-factor F --rope-low-freq-factor L --rope-high-freq-factor H --rope-original-max-positional-embeddings
    N: a Megatron-LM fork's Llama-3.1 scaling (okoge-kaz's; rotary_pos_embedding applies Llama-3's formula). Without
    the low-frequency factor, --rope-factor is MindSpeed's DeepSeek-V4 compressed-attention setting."""
    if g.get("--low-freq-factor") is None:
        raise ArchitectureError("--rope-factor without --rope-low-freq-factor: MindSpeed's DeepSeek-V4 compressed "
                                "attention setting, and DeepSeek-V4 is not among the supported families (with "
                                "--rope-low-freq-factor, --rope-high-freq-factor and "
                                "--rope-original-max-positional-embeddings it is Llama-3.1's rope scaling)")
    if kind not in (None, "llama3") or g.get("--rope-scaling-factor") is not None:
        raise ArchitectureError("--rope-factor with --rope-scaling-type / --rope-scaling-factor: two spellings of the "
                                "rope scaling; keep one")
    return "llama3"


def _rope_scaling(g, mla: bool) -> Optional[Dict[str, Any]]:
    if g.get("--rotary-seq-len-interpolation-factor") is not None:
        return _linear_interpolation(g)
    kind = g.get("--rope-scaling-type")
    if kind is None and g.get("--use-rope-scaling"):
        kind = "megatron_llama3"
    if g.get("--rope-factor") is not None:
        kind = _fork_llama3(g, kind)
    if kind is None and mla and g.get("--rope-type", "yarn") == "yarn":
        factor = g.get("--rotary-scaling-factor", 1.0)
        if factor > 1:
            original = _first(g, "--rope-scaling-original-max-position-embeddings", default=MLA_YARN_ORIGINAL)
            return _yarn(g, factor, original, g.get("--mscale", 1.0), g.get("--mscale-all-dim", 0.0))
        return None
    if kind is None:
        return None
    factor = g.get("--rope-scaling-factor", g.get("--rope-factor", 8.0))
    if kind == "megatron_llama3":
        return {"rope_type": "llama3", "factor": float(factor), **MEGATRON_LLAMA3}
    if kind == "llama3":
        missing = [f for f in ("--low-freq-factor", "--high-freq-factor") if g.get(f) is None]
        original = _first(g, "--original-max-position-embeddings", "--rope-scaling-original-max-position-embeddings")
        if original is None:
            missing.append("--original-max-position-embeddings")
        if missing:
            raise ArchitectureError(f"--rope-scaling-type llama3 needs {', '.join(missing)} as well (Llama-3.1 uses "
                                    "--low-freq-factor 1 --high-freq-factor 4 --original-max-position-embeddings 8192)")
        return {"rope_type": "llama3", "factor": float(factor), "low_freq_factor": float(g["--low-freq-factor"]),
                "high_freq_factor": float(g["--high-freq-factor"]),
                "original_max_position_embeddings": _positions(original)}
    if kind == "yarn":
        original = _first(g, "--rope-scaling-original-max-position-embeddings", "--original-max-position-embeddings")
        if original is None:
            raise ArchitectureError("--rope-scaling-type yarn needs --rope-scaling-original-max-position-embeddings "
                                    "(the context length the model was pretrained with)")
        return _yarn(g, factor, original, g.get("--rope-scaling-mscale", 1.0),
                     g.get("--rope-scaling-mscale-all-dim", 0.0))
    if kind == "longrope":
        return _longrope(g, mla)
    raise ArchitectureError(f"--rope-scaling-type {kind}: only llama3, yarn and longrope scaling map to a Hugging "
                            "Face rope_type here (plm has no equivalent among the supported families)")


def _factor_list(g, flag: str, dim: Optional[int]) -> List[float]:
    """--long-factor / --short-factor: MindSpeed's comma-separated factors, one per rotary frequency."""
    raw = g.get(flag)
    if raw is None:
        raise ArchitectureError(f"--rope-scaling-type longrope needs {flag} (comma-separated factors, one per rotary "
                                "frequency), as MindSpeed requires")
    try:
        values = [float(x) for x in str(raw).split(",")]
    except ValueError:
        raise ArchitectureError(f"{flag} {raw}: expects comma-separated numbers") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ArchitectureError(f"{flag} {raw}: LongRoPE's factors divide the frequencies; give positive numbers")
    if dim is not None and len(values) != dim // 2:
        raise ArchitectureError(f"{flag} has {len(values)} factors; the rotary part of each head ({dim} dimensions) "
                                f"has {dim // 2} frequencies, one factor each")
    return values


def _rotary_dim(g, mla: bool) -> Optional[int]:
    if mla:
        return g.get("--qk-pos-emb-head-dim", g.get("--qk-rope-head-dim"))
    heads, hidden = g.get("--num-attention-heads"), g.get("--hidden-size")
    head_dim = g.get("--kv-channels") or (hidden // heads if heads and hidden and hidden % heads == 0 else None)
    return int(head_dim * g.get("--rotary-percent", 1.0)) if head_dim else None


def _longrope(g, mla: bool) -> Dict[str, Any]:
    original = g.get("--rope-scaling-original-max-position-embeddings")
    if original is None:
        raise ArchitectureError("--rope-scaling-type longrope needs --rope-scaling-original-max-position-embeddings "
                                "(the context length the model was pretrained with), as MindSpeed requires")
    original = _positions(original)
    dim = _rotary_dim(g, mla)
    params = {"rope_type": "longrope", "long_factor": _factor_list(g, "--long-factor", dim),
              "short_factor": _factor_list(g, "--short-factor", dim), "original_max_position_embeddings": original}
    seq_length = g.get("--seq-length") or g.get("--max-position-embeddings") or original
    long_mscale, short_mscale = g.get("--long-mscale"), g.get("--short-mscale")
    if bool(long_mscale) != bool(short_mscale):
        raise ArchitectureError("--long-mscale and --short-mscale go together (MindSpeed refuses one alone)")
    if long_mscale:
        params["attention_factor"] = float(long_mscale if seq_length > original else short_mscale)
    else:  # MindSpeed's default, from the largest position the model is built for
        scale = g.get("--max-position-embeddings", seq_length) / original
        params["attention_factor"] = 1.0 if scale <= 1 else math.sqrt(1 + math.log(scale) / math.log(original))
    if seq_length > original:
        splits = [f for f in ("--reset-position-ids", "--reset-attention-mask") if g.get(f)]
        if g.get("--context-parallel-size", 1) > 1:
            splits.append(f"--context-parallel-size {g['--context-parallel-size']}")
        if splits:
            raise ArchitectureError(f"--rope-scaling-type longrope with --seq-length {seq_length} beyond the original "
                                    f"{original} positions and {', '.join(splits)}: MindSpeed uses the long factors "
                                    "for every sequence, transformers only for a batch whose positions go beyond "
                                    f"{original}, which a reset or a context-parallel slice may not; drop "
                                    f"{splits[0].split()[0]}")
    return params


def rope_scaling_flags(rope: Dict[str, Any], mla: bool) -> List[str]:
    """Inverse of rope_scaling, in Megatron's or MindSpeed's spelling as the parameters allow."""
    kind = rope.get("rope_type", "default")
    if kind == "linear" and float(rope["factor"]).is_integer():
        return ["--rotary-seq-len-interpolation-factor", str(int(rope["factor"]))]
    if kind == "llama3":
        if all(rope.get(k) == v for k, v in MEGATRON_LLAMA3.items()):
            return ["--use-rope-scaling", "--rope-scaling-factor", str(rope["factor"])]
        return ["--rope-scaling-type", "llama3", "--rope-scaling-factor", str(rope["factor"]),
                "--low-freq-factor", str(rope["low_freq_factor"]), "--high-freq-factor", str(rope["high_freq_factor"]),
                "--original-max-position-embeddings", str(rope["original_max_position_embeddings"])]
    if kind == "longrope":
        return _longrope_flags(rope)
    if kind != "yarn":
        return []
    if mla and rope["original_max_position_embeddings"] == MLA_YARN_ORIGINAL and rope["beta_fast"] == 32 \
            and rope["beta_slow"] == 1:
        return ["--rotary-scaling-factor", str(rope["factor"]), "--mscale", str(rope["mscale"]),
                "--mscale-all-dim", str(rope["mscale_all_dim"])]
    return ["--rope-scaling-type", "yarn", "--rope-scaling-factor", str(rope["factor"]),
            "--rope-scaling-original-max-position-embeddings", str(rope["original_max_position_embeddings"]),
            "--rope-scaling-beta-fast", str(int(rope["beta_fast"])),
            "--rope-scaling-beta-slow", str(int(rope["beta_slow"])),
            "--rope-scaling-mscale", str(rope["mscale"]), "--rope-scaling-mscale-all-dim", str(rope["mscale_all_dim"])]


def _longrope_flags(rope: Dict[str, Any]) -> List[str]:
    """Inverse of _longrope: the attention factor as one mscale for short and long sequences alike."""
    factors = lambda key: ",".join(f"{v:.12g}" for v in rope[key])  # noqa: E731
    out = ["--rope-scaling-type", "longrope", "--long-factor", factors("long_factor"),
           "--short-factor", factors("short_factor"),
           "--rope-scaling-original-max-position-embeddings", str(rope["original_max_position_embeddings"])]
    if rope.get("attention_factor") is not None:
        out += ["--long-mscale", repr(float(rope["attention_factor"])),
                "--short-mscale", repr(float(rope["attention_factor"]))]
    return out
