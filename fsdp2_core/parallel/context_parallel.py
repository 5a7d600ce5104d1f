"""Ulysses context parallelism (`cp_size`, `cp_type: ulysses`).

Each of the cp ranks of a group holds a contiguous 1/cp of every sample's sequence
(the loss slices tokens, labels, loss mask and positions; positions stay global, so
rotary embeddings see true positions). Everything but attention is per token and runs
on the local slice. Around attention an all-to-all trades the split: before it, each
rank has all heads of its sequence slice; after it, 1/cp of the heads over the whole
sequence. Attention runs there, and a second all-to-all trades back.

It plugs into Hugging Face models through their attention interface: the model's
`_attn_implementation` becomes `fsdp2_ulysses` (fsdp2_core/models/attention.py, the
attention core with its whole-sequence masks), so any family whose attention calls
`ALL_ATTENTION_FUNCTIONS` (Llama, Qwen, Mixtral, gpt-oss, ...) runs unchanged; this
module hands each attention module a `SequenceSplit` whose `attend` is `ulysses_attend`.

Heads: the query heads on a rank (after tensor parallelism) must divide by cp; key/value
heads that do not are replicated (repeated) up to a multiple of cp, keeping each query
head with its own key/value head.

The loss sums and token counts of the cp ranks are summed with a differentiable
all-reduce, so every cp rank sees the whole sample's loss; FSDP's gradient average
over the (dp × cp) ranks then gives the gradient of the whole sample.
"""
import dataclasses
import functools
import math
from typing import Tuple

import torch
import torch.nn as nn

from fsdp2_core.config import ConfigError
from fsdp2_core.models.attention import SequenceSplit, core_attention, install_attention

from .comm import all_to_all


def _heads(config, tp: int) -> Tuple[int, int]:
    heads = getattr(config, "num_attention_heads", None)
    kv = getattr(config, "num_key_value_heads", None) or heads
    if not isinstance(heads, int):
        raise ConfigError(f"cp_size > 1: the model config ({type(config).__name__}) has no num_attention_heads")
    return heads // tp, kv // tp if kv % tp == 0 else kv


def check_heads(config, cp: int, tp: int = 1) -> None:
    """Query heads per rank must divide by cp; key/value heads may be replicated."""
    heads, _ = _heads(config, tp)
    if heads % cp:
        raise ConfigError(f"cp_size {cp}: Ulysses splits attention heads over the context-parallel ranks, and the "
                          f"{heads} query heads per rank (num_attention_heads {config.num_attention_heads} / tp_size "
                          f"{tp}) do not divide by {cp}; choose a cp_size that divides {heads}")


def check_attention_only(config) -> None:
    """Ulysses covers softmax attention; linear-attention mixers (Gated DeltaNet) and Mamba mixers (Nemotron-H's
    layers_block_type) are not split."""
    kinds = set(getattr(config, "layer_types", None) or ()) | set(getattr(config, "layers_block_type", None) or ())
    other = sorted(k for k in kinds if k not in ("full_attention", "sliding_attention", "attention", "mlp", "moe"))
    if other:
        raise ConfigError(f"cp_size > 1: this model has {', '.join(other)} layers, which Ulysses context parallelism "
                          "does not split; set cp_size 1")


def apply_context_parallel(model: nn.Module, cp_mesh, tp: int = 1) -> SequenceSplit:
    check_attention_only(model.config)
    check_heads(model.config, cp_mesh.size(), tp)
    split = SequenceSplit(cp_mesh.get_group(), cp_mesh.get_local_rank(), cp_mesh.size(), attend=None)
    return install_attention(model, dataclasses.replace(split, attend=functools.partial(ulysses_attend, split)))


# ---------------------------------------------------------------- the exchange around the core

def _seq_to_heads(x: torch.Tensor, info: SequenceSplit) -> torch.Tensor:
    """[b, H, s, d] (all heads, local sequence) -> [b, H/cp, cp·s, d] (local heads, whole sequence)."""
    b, heads, s, d = x.shape
    cp = info.size
    x = x.reshape(b, cp, heads // cp, s, d).transpose(0, 1)          # [cp(head group), b, H/cp, s, d]
    y = all_to_all(x, info.group)                                     # [cp(sequence chunk), b, H/cp, s, d]
    return y.permute(1, 2, 0, 3, 4).reshape(b, heads // cp, cp * s, d)


def _heads_to_seq(x: torch.Tensor, info: SequenceSplit) -> torch.Tensor:
    """[b, H/cp, S, d] -> [b, H, S/cp, d]."""
    b, local_heads, seq, d = x.shape
    cp = info.size
    x = x.reshape(b, local_heads, cp, seq // cp, d).permute(2, 0, 1, 3, 4)   # [cp(sequence chunk), b, H/cp, s, d]
    y = all_to_all(x, info.group)                                             # [cp(head group), b, H/cp, s, d]
    return y.transpose(0, 1).reshape(b, cp * local_heads, seq // cp, d)


def _replicate_kv(x: torch.Tensor, cp: int) -> torch.Tensor:
    heads = x.shape[1]
    if heads % cp == 0:
        return x
    return x.repeat_interleave(cp // math.gcd(heads, cp), dim=1)


def ulysses_attend(info: SequenceSplit, query, key, value, scaling: float, masks: dict, s_aux, dropout: float,
                   fused: bool) -> torch.Tensor:
    """All heads of the local sequence -> 1/cp of the heads over the whole sequence, the core, and back."""
    cp = info.size
    heads = query.shape[1]
    key, value = _replicate_kv(key, cp), _replicate_kv(value, cp)
    q, k, v = (_seq_to_heads(t, info) for t in (query, key, value))
    sinks = None
    if s_aux is not None:
        per_rank = heads // cp
        sinks = s_aux[info.rank * per_rank:(info.rank + 1) * per_rank]
    out = core_attention(q, k, v, scaling, sinks=sinks, dropout=dropout, fused=fused, **masks)
    return _heads_to_seq(out, info)
