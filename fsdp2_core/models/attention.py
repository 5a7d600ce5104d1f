"""Our attention core: what transformers calls for the registered families (`model_id`).

A family's model gets `_attn_implementation = "fsdp2_ulysses"`; every attention module then calls
`attention_forward`, which builds the mask for the whole sequence itself: causal, documents of packed samples (a
position that does not follow its predecessor starts a new document, as transformers detects packing), sliding
windows, a padding or dense mask when given, and gpt-oss's attention sinks. So packed samples keep documents apart
the same way at every context-parallel size, whatever the transformers family's own mask does.

Each attention module and the model carry a `SequenceSplit` (`_fsdp2_cp`): at cp_size 1 `NO_SPLIT`; context
parallelism (fsdp2_core/parallel/context_parallel.py) replaces it with one whose `attend` runs this core across the
ranks (Ulysses). The model knows nothing of the exchange: parallel code hands it in.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from fsdp2_core.config import ConfigError
from fsdp2_core.kernels.attention import causal_attention

ATTENTION_NAME = "fsdp2_ulysses"


@dataclass(frozen=True)
class SequenceSplit:
    """A sample's sequence split over `size` context-parallel ranks (this is `rank`, in `group`).

    `attend(query, key, value, scaling, masks, sinks, dropout, fused)` runs the core attention across the split:
    inputs [b, h, s_local, d], output [b, h, s_local, d]; None at size 1."""
    group: object
    rank: int
    size: int
    attend: Optional[Callable] = None


NO_SPLIT = SequenceSplit(None, 0, 1)


def install_attention(model: nn.Module, split: SequenceSplit = NO_SPLIT) -> SequenceSplit:
    """Route the model's attention through `attention_forward`, split as `split` says."""
    register_attention()
    model.config._attn_implementation = ATTENTION_NAME
    tagged = 0
    for module in model.modules():
        heads = hasattr(module, "head_dim") or hasattr(module, "qk_head_dim")  # qk_head_dim: DeepSeek-V3's MLA
        if type(module).__name__.endswith("Attention") and heads:
            module._fsdp2_cp = split
            tagged += 1
    if not tagged:
        raise ConfigError("no attention module (a class named *Attention with head_dim or qk_head_dim) found in "
                          f"{type(model).__name__}")
    model._fsdp2_cp = split
    return split


_REGISTERED = False


def register_attention() -> None:
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        AttentionInterface.register(ATTENTION_NAME, attention_forward)
        _REGISTERED = True


# ---------------------------------------------------------------- the input split

def document_ids(position_ids: torch.Tensor) -> Optional[torch.Tensor]:
    """[b, S] document index of each position of packed samples; None when every row is one document."""
    first = position_ids[:, :1] - 1
    docs = (torch.diff(position_ids, prepend=first, dim=-1) != 1).cumsum(-1)
    return None if bool((docs[:, -1] == 0).all()) else docs


def split_inputs(info: SequenceSplit, tokens, labels, loss_mask, position_ids=None,
                 attention_mask=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Dict]:
    """This rank's slice of the sequence, and the full-sequence mask facts attention needs."""
    b, seq = tokens.shape
    if seq % info.size:
        raise ConfigError(f"sequence length {seq} is not divisible by cp_size {info.size}; pad or cut samples "
                          f"(cutoff_len / --seq-length) to a multiple of {info.size}")
    if position_ids is None:
        position_ids = torch.arange(seq, device=tokens.device).expand(b, seq)
    # as transformers does: restarted position ids mark documents only when no mask is given (a given mask says
    # what may be attended; LLaMA-Factory-style plain packing restarts positions with attention across samples)
    extra = {"cp_doc_ids": document_ids(position_ids) if attention_mask is None else None}
    if attention_mask is not None:
        if attention_mask.dim() == 4:
            extra["cp_dense_mask"] = attention_mask.bool()      # [b, 1, S, S], True = may attend
        elif attention_mask.dim() == 2:
            keys = attention_mask.bool()                        # [b, S], True = real token
            extra["cp_key_mask"] = None if bool(keys.all()) else keys  # hiding nothing: the plain causal path
        else:
            raise ConfigError(f"attention_mask of shape {tuple(attention_mask.shape)}: expected [b, S] or [b, 1, S, S]")
    part = local_part(info, seq)
    return tokens[:, part], labels[:, part], loss_mask[:, part], position_ids[:, part], extra


def local_part(info: SequenceSplit, seq: int) -> slice:
    """This rank's positions of a sequence of length `seq`."""
    local = seq // info.size
    return slice(info.rank * local, (info.rank + 1) * local)


# ---------------------------------------------------------------- the attention

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
    masked = sliding_window is not None or doc_ids is not None or key_mask is not None or dense_mask is not None
    if fused and sinks is None and not masked:
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


def attention_forward(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                      sliding_window=None, s_aux=None, cp_doc_ids=None, cp_key_mask=None, cp_dense_mask=None,
                      **_ignored):
    """Hugging Face attention-interface function: inputs [b, h, s_local, d], output [b, s_local, h, d]."""
    split: SequenceSplit = module._fsdp2_cp
    if isinstance(s_aux, DTensor):
        s_aux = s_aux.to_local()  # tensor parallelism splits the sinks like the heads: this rank's heads' sinks
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    masks = {"sliding_window": sliding_window, "doc_ids": cp_doc_ids, "key_mask": cp_key_mask,
             "dense_mask": cp_dense_mask}
    fused = getattr(module, "_fsdp2_fused_attn", False)
    if split.size == 1:
        out = core_attention(query, key, value, scaling, sinks=s_aux, dropout=dropout, fused=fused, **masks)
    else:
        out = split.attend(query, key, value, scaling, masks, s_aux, dropout, fused)
    return out.transpose(1, 2).contiguous(), None
