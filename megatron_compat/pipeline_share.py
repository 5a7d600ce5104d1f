"""Pipeline ranks that share samples.

In Megatron the P ranks of a pipeline work on the same samples: its data-parallel size is world / (tp × cp × P).
The engine has no pipeline stages, and folding the P ranks into data parallelism multiplies dp by P; when the
script's global batch then no longer splits into whole micro-batches for every rank (fewer samples than ranks, or
not a multiple), the P ranks are given to a dimension whose ranks also share samples instead: context parallelism
(Ulysses: each rank takes a slice of every sample's sequence) or tensor parallelism (each rank a slice of the
heads and widths). The whole factor P is given, split between the two as the model's shapes allow, so dp, the
micro batch and the gradient-accumulation steps are the ones Megatron computes; when the shapes do not allow the
whole factor, the smallest part of it that lets the global batch split is given and the rest folds into data
parallelism (same global batch and micro batch, fewer accumulation steps: megatron_compat/groups.py
_share_pipeline_ranks). Context parallelism comes first:
it leaves the weights whole (tensor parallelism would also change how Megatron pads the vocabulary, which the
translation then keeps as the script's).
"""
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

TP_WIDTHS = ("num_attention_heads", "num_key_value_heads", "intermediate_size", "shared_expert_intermediate_size")


@dataclass(frozen=True)
class Share:
    """The pipeline factor given to context (cp) and tensor (tp) parallelism: cp × tp = P."""
    cp: int
    tp: int


def splits(pp: int) -> Iterator[Share]:
    """Every way to give `pp` to cp × tp, context parallelism first (most of it to cp)."""
    for cp in range(pp, 0, -1):
        if pp % cp == 0:
            yield Share(cp, pp // cp)


def _arch(values: Dict, given: Dict) -> Dict:
    """The model's shapes: the translated architecture, else what the flags say."""
    arch = dict(values.get("architecture") or {})
    if "num_attention_heads" not in arch and given.get("--num-attention-heads"):
        arch["num_attention_heads"] = given["--num-attention-heads"]
        if given.get("--group-query-attention") and given.get("--num-query-groups"):
            arch["num_key_value_heads"] = given["--num-query-groups"]
    return arch


def why_not_cp(arch: Dict, values: Dict, cp: int, tp: int) -> Optional[str]:
    """Ulysses needs the query heads per tensor-parallel rank and the sequence to divide by cp."""
    heads = arch.get("num_attention_heads")
    if not isinstance(heads, int):
        return "the model's attention heads are not known here"
    if heads % tp or (heads // tp) % cp:
        return f"its {heads} heads / tp {tp} do not divide by cp {cp}"
    seq = values.get("cutoff_len")
    if isinstance(seq, int) and seq % (cp * tp):
        return f"the sequence length {seq} does not divide by cp {cp} × tp {tp}"
    other = sorted(k for k in set(arch.get("layer_types") or ()) if k not in ("full_attention", "sliding_attention"))
    if other:
        return f"its {', '.join(other)} layers are not split by Ulysses context parallelism"
    return None


def why_not_tp(arch: Dict, values: Dict, script_tp: int, tp: int) -> Optional[str]:
    """Tensor parallelism needs heads, widths and the sequence (sequence parallelism) to divide, Megatron's vocabulary
    padding to stay what the script's tp gives, and neither experts nor MTP layers beside it."""
    for key in TP_WIDTHS:
        if key == "num_attention_heads" and not isinstance(arch.get(key), int):
            return "the model's attention heads are not known here"
        if isinstance(arch.get(key), int) and arch[key] % tp:
            return f"its {key} {arch[key]} does not divide by tp {tp}"
    if values.get("ep_size", 1) > 1:
        return "expert parallelism runs with tp 1 here"
    if values.get("mtp_num_layers"):
        return "the MTP layers take the whole sequence, which tensor (sequence) parallelism splits"
    seq = values.get("cutoff_len")
    if isinstance(seq, int) and seq % tp:
        return f"the sequence length {seq} does not divide by tp {tp}"
    vocab = arch.get("vocab_size") or values.get("padded_vocab_size")
    if isinstance(vocab, int) and vocab % tp:
        return f"the padded vocabulary {vocab} does not divide by tp {tp}"
    multiple = values.get("make_vocab_size_divisible_by", 128)
    if not isinstance(vocab, int) and (multiple * script_tp) % tp:
        return f"Megatron pads the vocabulary to a multiple of {multiple} × tp {script_tp}, which tp {tp} cannot keep"
    return None


def choose(values: Dict, given: Dict, pp: int) -> Tuple[Optional[Share], List[str]]:
    """The first split of `pp` the shapes allow, or None and why each split does not fit."""
    arch = _arch(values, given)
    tp, cp = values.get("tp_size", 1), values.get("cp_size", 1)
    reasons = []
    for share in splits(pp):
        why = why_not_cp(arch, values, cp * share.cp, tp * share.tp) if cp * share.cp > 1 else None
        if why is None and share.tp > 1:
            why = why_not_tp(arch, values, tp, tp * share.tp)
        if why is None:
            return share, reasons
        reasons.append(f"cp × {share.cp}, tp × {share.tp}: {why}")
    return None, reasons


def apply(values: Dict, share: Share) -> str:
    """Set cp and tp; keep Megatron's vocabulary padding (a multiple of divisible-by × the script's tp)."""
    tp, cp = values.get("tp_size", 1), values.get("cp_size", 1)
    values["cp_size"], values["tp_size"] = cp * share.cp, tp * share.tp
    parts = []
    if share.cp > 1:
        parts.append(f"context parallelism (cp {cp} → {cp * share.cp})")
    if share.tp > 1:
        parts.append(f"tensor parallelism (tp {tp} → {tp * share.tp})")
        multiple = values.get("make_vocab_size_divisible_by", 128)
        if not values.get("padded_vocab_size") and (multiple * tp) % (tp * share.tp) == 0:
            values["make_vocab_size_divisible_by"] = multiple * tp // (tp * share.tp)  # the same padded size
    return " and ".join(parts)
