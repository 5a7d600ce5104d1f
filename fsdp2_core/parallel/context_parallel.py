"""Ulysses context parallelism (`cp_size`, `cp_type: ulysses`).

Each of the cp ranks of a group holds a contiguous 1/cp of every sample's sequence
(the loss slices tokens, labels, loss mask and positions; positions stay global, so
rotary embeddings see true positions). Everything but attention is per token and runs
on the local slice. Around attention an all-to-all trades the split: before it, each
rank has all heads of its sequence slice; after it, 1/cp of the heads over the whole
sequence. Attention runs there, and a second all-to-all trades back.

It plugs into Hugging Face models through their attention interface: the model's
`_attn_implementation` becomes `fsdp2_ulysses`, so any family whose attention calls
`ALL_ATTENTION_FUNCTIONS` (Llama, Qwen, Mixtral, gpt-oss, ...) runs unchanged. The
mask is rebuilt here for the full sequence: causal, documents of packed samples
(a position that does not follow its predecessor starts a new document, as
transformers detects packing), sliding windows, a padding or dense mask when given,
and gpt-oss's attention sinks.

Heads: the query heads on a rank (after tensor parallelism) must divide by cp; key/value
heads that do not are replicated (repeated) up to a multiple of cp, keeping each query
head with its own key/value head.

The same attention function serves the registered families at cp_size 1 (no
exchange): their packed samples then keep documents apart the same way at every cp
size, whatever the transformers family's own mask does (gpt-oss's ignores positions).

The loss sums and token counts of the cp ranks are summed with a differentiable
all-reduce, so every cp rank sees the whole sample's loss; FSDP's gradient average
over the (dp × cp) ranks then gives the gradient of the whole sample.
"""
import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsdp2_core.config import ConfigError

from .comm import all_to_all

ATTENTION_NAME = "fsdp2_ulysses"


@dataclass(frozen=True)
class ContextParallel:
    group: object
    rank: int
    size: int


NO_SPLIT = ContextParallel(None, 0, 1)


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
                          f"{heads} query heads per rank (num_attention_heads {config.num_attention_heads} / tp_size {tp}) "
                          f"do not divide by {cp}; choose a cp_size that divides {heads}")


def check_attention_only(config) -> None:
    """Ulysses covers softmax attention; linear-attention mixers (Gated DeltaNet) are not split."""
    kinds = set(getattr(config, "layer_types", None) or ())
    other = sorted(k for k in kinds if k not in ("full_attention", "sliding_attention"))
    if other:
        raise ConfigError(f"cp_size > 1: this model has {', '.join(other)} layers, which Ulysses context parallelism "
                          "does not split; set cp_size 1")


def apply_context_parallel(model: nn.Module, cp_mesh, tp: int = 1) -> ContextParallel:
    check_attention_only(model.config)
    check_heads(model.config, cp_mesh.size(), tp)
    return install_attention(model, ContextParallel(cp_mesh.get_group(), cp_mesh.get_local_rank(), cp_mesh.size()))


def install_attention(model: nn.Module, info: ContextParallel = NO_SPLIT) -> ContextParallel:
    """Route the model's attention through `ulysses_attention` (with no exchange when info.size is 1)."""
    register_attention()
    model.config._attn_implementation = ATTENTION_NAME
    tagged = 0
    for module in model.modules():
        if type(module).__name__.endswith("Attention") and hasattr(module, "head_dim"):
            module._fsdp2_cp = info
            tagged += 1
    if not tagged:
        raise ConfigError(f"no attention module (a class named *Attention with head_dim) found in {type(model).__name__}")
    model._fsdp2_cp = info
    return info


_REGISTERED = False


def register_attention() -> None:
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        AttentionInterface.register(ATTENTION_NAME, ulysses_attention)
        _REGISTERED = True


# ---------------------------------------------------------------- the input split

def document_ids(position_ids: torch.Tensor) -> Optional[torch.Tensor]:
    """[b, S] document index of each position of packed samples; None when every row is one document."""
    first = position_ids[:, :1] - 1
    docs = (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)
    return None if bool((docs[:, -1] == 0).all()) else docs


def split_inputs(info: ContextParallel, tokens, labels, loss_mask, position_ids=None,
                 attention_mask=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Dict]:
    """This rank's slice of the sequence, and the full-sequence mask facts attention needs."""
    b, seq = tokens.shape
    if seq % info.size:
        raise ConfigError(f"sequence length {seq} is not divisible by cp_size {info.size}; pad or cut samples "
                          f"(cutoff_len / --seq-length) to a multiple of {info.size}")
    if position_ids is None:
        position_ids = torch.arange(seq, device=tokens.device).expand(b, seq)
    extra = {"cp_doc_ids": document_ids(position_ids)}
    if attention_mask is not None:
        if attention_mask.dim() == 4:
            extra["cp_dense_mask"] = attention_mask.bool()      # [b, 1, S, S], True = may attend
        elif attention_mask.dim() == 2:
            extra["cp_key_mask"] = attention_mask.bool()        # [b, S], True = real token
        else:
            raise ConfigError(f"attention_mask of shape {tuple(attention_mask.shape)}: expected [b, S] or [b, 1, S, S]")
    local = seq // info.size
    part = slice(info.rank * local, (info.rank + 1) * local)
    return tokens[:, part], labels[:, part], loss_mask[:, part], position_ids[:, part], extra


# ---------------------------------------------------------------- the attention

def _seq_to_heads(x: torch.Tensor, info: ContextParallel) -> torch.Tensor:
    """[b, H, s, d] (all heads, local sequence) -> [b, H/cp, cp·s, d] (local heads, whole sequence)."""
    b, heads, s, d = x.shape
    cp = info.size
    x = x.reshape(b, cp, heads // cp, s, d).transpose(0, 1)          # [cp(head group), b, H/cp, s, d]
    y = all_to_all(x, info.group)                                     # [cp(sequence chunk), b, H/cp, s, d]
    return y.permute(1, 2, 0, 3, 4).reshape(b, heads // cp, cp * s, d)


def _heads_to_seq(x: torch.Tensor, info: ContextParallel) -> torch.Tensor:
    """[b, H/cp, S, d] -> [b, H, S/cp, d]."""
    b, local_heads, seq, d = x.shape
    cp = info.size
    x = x.reshape(b, local_heads, cp, seq // cp, d).permute(2, 0, 1, 3, 4)   # [cp(sequence chunk), b, H/cp, s, d]
    y = all_to_all(x, info.group)                                             # [cp(head group), b, H/cp, s, d]
    return y.transpose(0, 1).reshape(b, cp * local_heads, seq // cp, d)


def _allowed(seq: int, device, sliding_window=None, doc_ids=None, key_mask=None, dense_mask=None) -> torch.Tensor:
    """Boolean [b|1, 1, S, S] mask of the key positions each query may attend (the diagonal always)."""
    i = torch.arange(seq, device=device)
    allowed = i[None, :] <= i[:, None]
    if sliding_window:
        allowed = allowed & (i[None, :] > i[:, None] - sliding_window)
    allowed = allowed[None, None]
    if doc_ids is not None:
        allowed = allowed & (doc_ids[:, None, :, None] == doc_ids[:, None, None, :])
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]
    if dense_mask is not None:
        allowed = allowed & dense_mask
    return allowed | torch.eye(seq, dtype=torch.bool, device=device)


def core_attention(q, k, v, scaling: float, sliding_window=None, doc_ids=None, key_mask=None, dense_mask=None,
                   sinks: Optional[torch.Tensor] = None, dropout: float = 0.0, fused: bool = False) -> torch.Tensor:
    """Causal attention over the whole sequence: [b, h, S, d] each -> [b, h, S, d].

    `fused` (use_flash_attn): the plain causal case runs `fsdp2_core.kernels.attention.causal_attention`."""
    if fused and sinks is None and sliding_window is None and doc_ids is None and key_mask is None and dense_mask is None:
        from fsdp2_core.kernels.attention import causal_attention
        return causal_attention(q, k, v, scaling, dropout)
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    seq = q.shape[2]
    plain = sliding_window is None and doc_ids is None and key_mask is None and dense_mask is None
    if sinks is None and plain:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling)
    allowed = _allowed(seq, q.device, sliding_window, doc_ids, key_mask, dense_mask)
    if sinks is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout, scale=scaling)
    # Attention sinks (gpt-oss): one extra learned logit per head that takes probability mass and no value.
    scores = torch.matmul(q, k.transpose(2, 3)) * scaling
    scores = scores.masked_fill(~allowed, float("-inf"))
    sink = sinks.to(scores.dtype).reshape(1, -1, 1, 1).expand(q.shape[0], -1, seq, 1)
    logits = torch.cat([scores, sink], dim=-1)
    logits = logits - logits.max(dim=-1, keepdim=True).values
    probs = torch.softmax(logits, dim=-1)[..., :-1]
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    return torch.matmul(probs.to(v.dtype), v)


def _replicate_kv(x: torch.Tensor, cp: int) -> torch.Tensor:
    heads = x.shape[1]
    if heads % cp == 0:
        return x
    return x.repeat_interleave(cp // math.gcd(heads, cp), dim=1)


def ulysses_attention(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                      sliding_window=None, s_aux=None, cp_doc_ids=None, cp_key_mask=None, cp_dense_mask=None,
                      **_ignored):
    """Hugging Face attention-interface function: inputs [b, h, s_local, d], output [b, s_local, h, d]."""
    info: ContextParallel = module._fsdp2_cp
    cp = info.size
    heads = query.shape[1]
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if cp == 1:
        out = core_attention(query, key, value, scaling, sliding_window, cp_doc_ids, cp_key_mask, cp_dense_mask,
                             s_aux, dropout, fused=getattr(module, "_fsdp2_fused_attn", False))
        return out.transpose(1, 2).contiguous(), None
    key, value = _replicate_kv(key, cp), _replicate_kv(value, cp)
    q, k, v = (_seq_to_heads(t, info) for t in (query, key, value))
    sinks = None
    if s_aux is not None:
        per_rank = heads // cp
        sinks = s_aux[info.rank * per_rank:(info.rank + 1) * per_rank]
    out = core_attention(q, k, v, scaling, sliding_window, cp_doc_ids, cp_key_mask, cp_dense_mask, sinks, dropout,
                         fused=getattr(module, "_fsdp2_fused_attn", False))
    return _heads_to_seq(out, info).transpose(1, 2).contiguous(), None
