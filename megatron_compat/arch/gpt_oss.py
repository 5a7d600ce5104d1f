"""gpt-oss from Megatron-LM's flags -> transformers' gpt_oss family, and back.

megatron-core 0.16 (TransformerConfig, mlp.py / moe/experts.py, dot_product_attention.py) builds gpt-oss from:
  --quick-geglu                      gated experts with quick-GeLU: x·sigmoid(1.702·x) of the gate half
  --glu-linear-offset 1.0            times (the linear half + 1)                       transformers: always (up + 1)
  --activation-func-clamp-value C    the gate clamped above at C, the linear half to ±C             swiglu_limit C
  --softmax-type learnable           a learnable per-head offset in the attention softmax's denominator   sinks
  --window-size L,0                  flash attention's left extent L: L + 1 positions seen  sliding_window L + 1
  --window-attn-skip-freq N | [..]   which layers keep the window (layer n, 1-based, unless n % N == 0; a list
                                     marks them with 1)                                           layer_types
and Megatron's linear biases (on unless --disable-bias-linear) on q/k/v/o, the router and the experts, as
gpt-oss has them. The router is megatron-core's default softmax over the top-k logits (bias included). The
Megatron-LM development branch's --enable-gpt-oss, which sets YaRN parameters behind the flags, stays refused.
"""
import ast
from typing import Any, Dict, List, Optional

from . import ArchitectureError
from .moe import Routing, eval_layer_list

GPT_OSS_FLAGS = ("--quick-geglu", "--glu-linear-offset", "--activation-func-clamp-value", "--softmax-type",
                 "--window-attn-skip-freq")


def wants_gpt_oss(g) -> bool:
    return bool(g.get("--quick-geglu"))


def check_not_gpt_oss(g) -> None:
    """gpt-oss's flags without --quick-geglu: no other family has sinks, clamps or per-layer windows."""
    given = [f for f in GPT_OSS_FLAGS[1:] if g.get(f) not in (None, 0.0, "vanilla")]
    if given:
        raise ArchitectureError(f"{', '.join(given)} without --quick-geglu: only the gpt-oss family has attention "
                                "sinks, a clamped offset GLU and per-layer sliding windows; add the gpt-oss flags "
                                "(--quick-geglu --glu-linear-offset 1.0 --activation-func-clamp-value 7.0 "
                                "--softmax-type learnable) or drop these")


def gpt_oss_fields(g, layers: int, window: Optional[int]) -> Dict[str, Any]:
    """The gpt_oss config fields the gpt-oss flags set (the rest are the rope families')."""
    offset = g.get("--glu-linear-offset", 0.0)
    if offset != 1.0:
        raise ArchitectureError(f"--quick-geglu with --glu-linear-offset {offset}: transformers' gpt-oss multiplies "
                                "by (linear half + 1); give --glu-linear-offset 1.0")
    clamp = g.get("--activation-func-clamp-value")
    if clamp is None or not clamp > 0:
        raise ArchitectureError(f"--quick-geglu with --activation-func-clamp-value {clamp}: transformers' gpt-oss "
                                "clamps its GLU at swiglu_limit; give the clamp (gpt-oss: 7.0)")
    softmax = g.get("--softmax-type", "vanilla")
    if softmax != "learnable":
        raise ArchitectureError(f"--quick-geglu with --softmax-type {softmax}: transformers' gpt-oss attention has "
                                "learnable sinks (Megatron's learnable softmax offset); give --softmax-type learnable")
    types = layer_types(g.get("--window-attn-skip-freq"), layers, window)
    return {"swiglu_limit": float(clamp), "layer_types": types,
            "sliding_window": window if "sliding_attention" in types else None}


def layer_types(skip, layers: int, window: Optional[int]) -> List[str]:
    """Megatron's is_layer_window_attention per layer: every layer windowed unless --window-attn-skip-freq says."""
    if window is None:
        return ["full_attention"] * layers
    if skip is None:
        windowed = [True] * layers
    else:
        text = str(skip).strip()
        try:
            if "[" in text:
                windowed = [bool(v) for v in eval_layer_list(ast.parse(text, mode="eval").body)]
            else:
                freq = int(text)
                windowed = [(n + 1) % freq != 0 for n in range(layers)] if freq > 0 else None
        except (SyntaxError, ValueError):
            windowed = None
        if windowed is None or len(windowed) != layers:
            raise ArchitectureError(f"--window-attn-skip-freq {skip}: expects a positive integer N (every N-th layer "
                                    f"full attention) or a list of 0/1, one per layer ({layers} layers)")
    return ["sliding_attention" if w else "full_attention" for w in windowed]


def check_gpt_oss(a, r: Optional[Routing]) -> None:
    """What transformers' gpt-oss fixes: experts in every layer under a softmax-after-top-k router, biases, no
    q/k norms, no latent attention."""
    if r is None:
        raise ArchitectureError("--quick-geglu without --num-experts: transformers' gpt-oss is a mixture of experts; "
                                "a dense quick-GeGLU model has no Hugging Face family here")
    if not a["rms"]:
        raise ArchitectureError("--quick-geglu with LayerNorm: gpt-oss normalises with RMSNorm; add "
                                "--normalization RMSNorm")
    if not a["bias"]:
        raise ArchitectureError("--quick-geglu with --disable-bias-linear: gpt-oss's attention, router and experts "
                                "have biases (Megatron's default --add-bias-linear); drop --disable-bias-linear")
    named = [name for name, on in (
        ("--qk-layernorm", a["qk_norm"]), ("--multi-latent-attention", a["mla"]), ("--swiglu", a["swiglu"]),
        ("a sigmoid router", r.score != "softmax"), ("softmax before top-k (--moe-router-pre-softmax)", not r.renorm),
        ("expert groups", r.groups > 1), ("--moe-router-topk-scaling-factor", r.scaling != 1.0),
        ("shared experts", r.shared_ffn), ("dense layers (--moe-layer-freq / --first-k-dense-replace)",
                                           r.dense_layers)) if on]
    if named:
        raise ArchitectureError(f"--quick-geglu with {', '.join(named)}: transformers' gpt-oss has experts in every "
                                "layer behind a softmax over the top-k router logits, no shared experts, q/k norms or "
                                "latent attention; drop them")


def gpt_oss_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of gpt_oss_fields and the family's fixed parts."""
    out = ["--quick-geglu", "--glu-linear-offset", "1.0", "--activation-func-clamp-value", str(arch["swiglu_limit"]),
           "--softmax-type", "learnable"]
    types = arch.get("layer_types") or []
    if arch.get("sliding_window") and "sliding_attention" in types:
        out += ["--window-size", f"{arch['sliding_window'] - 1},0"]
        if "full_attention" in types:
            out += ["--window-attn-skip-freq", "[" + ",".join("1" if t == "sliding_attention" else "0"
                                                              for t in types) + "]"]
    return out
