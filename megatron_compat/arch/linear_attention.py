"""Qwen3-Next from flags: Gated DeltaNet linear-attention layers beside gated full-attention layers.

Two dialects describe the model (transformers' `qwen3_next` computes it):
  Megatron-LM    --experimental-attention-variant gated_delta_net, --linear-attention-freq N or a 0/1 list
                 (1 = linear attention), --attention-output-gate, --linear-conv-kernel-dim K
  MindSpeed-LLM  --full-attention-interval N (its qwen3_next spec, whose full attention is always gated),
                 --mamba-d-conv K (the linear layers' convolution width)
and both --linear-key-head-dim, --linear-value-head-dim, --linear-num-key-heads, --linear-num-value-heads.
With an interval N, layer i (from 0) is full attention when (i + 1) % N == 0, linear otherwise: megatron-core's
get_linear_attention_pattern, MindSpeed's and transformers' layer_types alike.

What transformers' Qwen3-Next always has, the flags must say too: q/k norms (--qk-layernorm) and no biases; an MoE
model routes with softmax and adds one gated shared expert (Qwen2-MoE's block: --moe-shared-expert-intermediate-size
with --moe-shared-expert-gate, MindSpeed --n-shared-experts with --shared-expert-gate). Its norms compute x·(1 + w)
(MindSpeed --add-rmsnorm-offset, Megatron --apply-layernorm-1p); without the flag the model is the same function at
initialisation (w starts at 0 where Megatron's starts at 1), which a note says.
"""
import ast
from typing import Any, Dict, List, Optional

from . import ArchitectureError

VARIANTS = ("gated_delta_net", "gdn")
# Megatron-LM's defaults (megatron/training/arguments.py); MindSpeed's scripts always give them
DEFAULTS = {"--linear-key-head-dim": 128, "--linear-value-head-dim": 128, "--linear-num-key-heads": 16,
            "--linear-num-value-heads": 32}
FIELDS = {"--linear-key-head-dim": "linear_key_head_dim", "--linear-value-head-dim": "linear_value_head_dim",
          "--linear-num-key-heads": "linear_num_key_heads", "--linear-num-value-heads": "linear_num_value_heads"}
FULL, LINEAR = "full_attention", "linear_attention"


def wants_linear_attention(g) -> bool:
    variant = g.get("--experimental-attention-variant")
    if variant is not None and variant not in VARIANTS:
        raise ArchitectureError(f"--experimental-attention-variant {variant}: only Gated DeltaNet "
                                f"({' / '.join(VARIANTS)}, Qwen3-Next) has a Hugging Face family here")
    return variant is not None or bool(g.get("--full-attention-interval"))


def layer_types(g, layers: int) -> List[str]:
    """Each layer's kind, from --full-attention-interval N (MindSpeed) or --linear-attention-freq (Megatron-LM)."""
    if g.get("--full-attention-interval"):
        if "--linear-attention-freq" in g:
            raise ArchitectureError("--full-attention-interval and --linear-attention-freq both give the layer "
                                    "pattern; keep one")
        return _every(int(g["--full-attention-interval"]), layers, "--full-attention-interval")
    text = g.get("--linear-attention-freq")
    if text is None:
        raise ArchitectureError("--experimental-attention-variant gated_delta_net needs --linear-attention-freq (N: a "
                                "full-attention layer every N layers, or a 0/1 list with 1 for linear attention)")
    text = str(text).strip()
    if "[" not in text:
        return _every(_int(text), layers, "--linear-attention-freq")
    try:
        pattern = _eval_list(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError):
        raise ArchitectureError(f"--linear-attention-freq {text}: expects an integer or a 0/1 list such as "
                                "[1]*3+[0]*1") from None
    if len(pattern) != layers or any(v not in (0, 1) for v in pattern):
        raise ArchitectureError(f"--linear-attention-freq {text}: needs one 0 or 1 per layer ({layers} layers), got "
                                f"{len(pattern)} entries")
    return [LINEAR if v else FULL for v in pattern]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ArchitectureError(f"--linear-attention-freq {text}: expects an integer or a 0/1 list such as "
                                "[1]*3+[0]*1") from None


def _every(n: int, layers: int, flag: str) -> List[str]:
    if n < 1:
        raise ArchitectureError(f"{flag} {n}: give the interval of full-attention layers (>= 1)")
    return [FULL if (i + 1) % n == 0 else LINEAR for i in range(layers)]


def _eval_list(node) -> List[int]:
    """[ints], list * int and list + list (Megatron evaluates the text as Python), without eval."""
    if isinstance(node, ast.List) and all(isinstance(e, ast.Constant) and isinstance(e.value, int) for e in node.elts):
        return [e.value for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and isinstance(node.right, ast.Constant):
        return _eval_list(node.left) * int(node.right.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _eval_list(node.left) + _eval_list(node.right)
    raise ValueError(ast.dump(node))


def linear_attention_fields(g, layers: int) -> Dict[str, Any]:
    """The Qwen3-Next config fields of the linear-attention layers and the layer pattern."""
    out: Dict[str, Any] = {"layer_types": layer_types(g, layers)}
    for flag, field in FIELDS.items():
        value = g.get(flag, DEFAULTS[flag])
        if not value or value < 1:
            raise ArchitectureError(f"{flag} {value}: give the Gated DeltaNet layers' size (>= 1)")
        out[field] = int(value)
    conv = g.get("--linear-conv-kernel-dim", g.get("--mamba-d-conv", 4))
    if conv < 1:
        raise ArchitectureError(f"--linear-conv-kernel-dim {conv}: give the convolution width (>= 1)")
    out["linear_conv_kernel_dim"] = int(conv)
    if out["linear_num_value_heads"] % out["linear_num_key_heads"]:
        raise ArchitectureError(f"--linear-num-value-heads {out['linear_num_value_heads']} must be a multiple of "
                                f"--linear-num-key-heads {out['linear_num_key_heads']} (value heads share key heads)")
    return out


def _check_dialect(g) -> None:
    if g.get("--experimental-attention-variant") is not None and not g.get("--attention-output-gate"):
        raise ArchitectureError("--experimental-attention-variant gated_delta_net without --attention-output-gate: "
                                "Qwen3-Next's full-attention layers always gate their output (transformers' "
                                "qwen3_next); add --attention-output-gate")
    if g.get("--attention-output-gate") and not wants_linear_attention(g):
        raise ArchitectureError("--attention-output-gate: the gated full attention is Qwen3-Next's, which needs its "
                                "Gated DeltaNet layers too (--experimental-attention-variant gated_delta_net)")
    if g.get("--mamba-expand", 1) != 1:
        raise ArchitectureError(f"--mamba-expand {g['--mamba-expand']}: Qwen3-Next's Gated DeltaNet layers do not "
                                "widen their values (MindSpeed's qwen3_next scripts give 1)")


def check_qwen3_next(a, notes: List[str]) -> None:
    """Refuse what transformers' Qwen3-Next cannot compute; note the norms' parametrisation."""
    wrong = [why for why, bad in (
        ("needs --qk-layernorm (its full attention has q/k norms)", not a["qk_norm"]),
        ("has no linear biases (add --disable-bias-linear; no --add-qkv-bias)", a["bias"] or a["qkv_bias"]),
        ("has no Multi-Latent Attention", a["mla"] is not None),
        ("has no sliding window", a["window"] is not None)) if bad]
    if wrong:
        raise ArchitectureError("Gated DeltaNet layers (Qwen3-Next): the family " + "; ".join(wrong))
    routing = a["routing"]
    if routing is not None:
        if routing.score != "softmax" or routing.expert_bias or routing.groups > 1 or routing.scaling != 1.0:
            raise ArchitectureError("Qwen3-Next routes with a plain softmax router; drop the sigmoid score function, "
                                    "expert bias, groups and scaling factor")
        if not routing.shared_ffn or not routing.shared_gate:
            raise ArchitectureError("Qwen3-Next's MoE layers add one gated shared expert: give "
                                    "--moe-shared-expert-intermediate-size and --moe-shared-expert-gate (MindSpeed "
                                    "--n-shared-experts with --shared-expert-gate)")
    if not a["norm_offset"]:
        notes.append("Qwen3-Next's RMSNorms compute x·(1 + w) with w starting at 0 (MindSpeed --add-rmsnorm-offset, "
                     "Megatron --apply-layernorm-1p): the same function at initialisation as Megatron's plain x·w "
                     "from 1, but weight decay pulls w towards 0, i.e. the scale towards 1")


def dense_fields(layers: int) -> Dict[str, Any]:
    """A Qwen3-Next without experts: every layer (the MTP layers' too) takes the dense MLP (mlp_only_layers)."""
    return {"num_experts": 1, "num_experts_per_tok": 1, "mlp_only_layers": list(range(layers)),
            "output_router_logits": False}


def is_dense(arch: Dict[str, Any]) -> bool:
    return len(arch.get("mlp_only_layers") or []) >= arch["num_hidden_layers"]


def linear_attention_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of linear_attention_fields, in Megatron-LM's dialect."""
    pattern = [1 if t == LINEAR else 0 for t in arch["layer_types"]]
    out = ["--experimental-attention-variant", "gated_delta_net", "--attention-output-gate",
           "--linear-attention-freq", _pattern_text(pattern), "--apply-layernorm-1p",
           "--linear-conv-kernel-dim", str(arch["linear_conv_kernel_dim"])]
    for flag, field in FIELDS.items():
        out += [flag, str(arch[field])]
    return out


def _pattern_text(pattern: List[int]) -> str:
    n = len(pattern)
    for interval in range(1, n + 1):
        if pattern == [0 if (i + 1) % interval == 0 else 1 for i in range(n)]:
            return str(interval)
    return "[" + ",".join(map(str, pattern)) + "]"


def linear_attention(g, layers: int) -> Optional[Dict[str, Any]]:
    """Qwen3-Next's fields when the flags ask for Gated DeltaNet layers, else None."""
    _check_dialect(g)
    return linear_attention_fields(g, layers) if wants_linear_attention(g) else None
