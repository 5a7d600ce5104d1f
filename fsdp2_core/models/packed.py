"""How the boundaries of packed samples reach attention, in the form each attention implementation takes.

Packed rows (neat packing) come from the data as position ids restarting at 0 for every sample, with the
cumulative sample lengths over the flattened batch (`cu_seqlens`); the data builds no [b, 1, L, L] mask.
At the model's door (`packed_attention_inputs`) they become what the model's attention implementation uses:

  documents  our attention core (`fsdp2_ulysses`, model_id families and context parallelism) reads the
             documents from the position ids itself: the inputs pass unchanged.
  varlen     flash-attention kernels (CUDA `flash_attention_2/3`, hub flash kernels, and the Ascend flash
             attention that transformers serves under the same names) take sequence boundaries directly:
             the rows are flattened into one row of b·L tokens and given `cu_seq_lens_q/k` and
             `max_length_q/k`, which transformers hands to the varlen kernel. No mask exists.
  additive   SDPA and eager attention need a mask. The cheapest correct one is a single additive mask
             [b, 1, L, L] in the compute dtype (0 where a query may attend, -inf elsewhere), built once per
             forward from the position ids and shared by every layer; SDPA takes it as it is, where a boolean
             mask is converted to this form again inside every layer's call.
  positions  any other implementation (flex attention, ...): the position ids alone, from which transformers
             detects the packed samples and builds its own mask.

A 4-D boolean mask that the data does give (Megatron's `create_attention_mask_in_dataloader`, True where attention
is masked out) is converted to the additive form once for SDPA and eager attention too.
"""
from typing import Dict, Optional, Tuple

import torch

from fsdp2_core.kernels.attention import ATTENTION_NAME as FUSED

from .attention import ATTENTION_NAME as OUR_CORE
from .attention import document_ids
from .document_attention import NAME as DOCUMENT_SDPA
from .document_attention import documents_of, use_document_attention

MASKED_IMPLEMENTATIONS = ("sdpa", "eager", FUSED, DOCUMENT_SDPA)


def boundary_form(model) -> str:
    """'documents', 'varlen', 'additive' or 'positions' for this model's attention implementation."""
    impl = str(getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager")
    if impl == OUR_CORE:
        return "documents"
    if "flash" in impl:
        return "varlen"
    return "additive" if impl in MASKED_IMPLEMENTATIONS else "positions"


def compute_dtype(model) -> torch.dtype:
    """The dtype attention computes in: FSDP's parameter dtype when sharded, else the embedding's."""
    dtype = getattr(model, "_fsdp2_compute_dtype", None)
    return dtype if dtype is not None else model.get_input_embeddings().weight.dtype


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean [b, 1, S, S] (True = may attend) -> 0 / -inf in `dtype`."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def packed_causal_mask(docs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Causal attention inside each packed sample, as an additive [b, 1, S, S] mask."""
    seq = docs.shape[-1]
    i = torch.arange(seq, device=docs.device)
    allowed = (i[None, :] <= i[:, None])[None, None] & (docs[:, None, :, None] == docs[:, None, None, :])
    return additive_mask(allowed, dtype)


def _flattened(tokens, labels, loss_mask, position_ids, cu_seqlens: Optional[torch.Tensor],
               max_seqlen: Optional[int]):
    """All rows as one row; with `cu_seqlens`, the cumulative lengths the varlen kernels take (without them
    transformers derives the lengths from the position ids of the single row)."""
    flat = [t.reshape(1, -1) for t in (tokens, labels, loss_mask, position_ids)]
    extra = {}
    if cu_seqlens is not None:
        cu = cu_seqlens.to(tokens.device, torch.int32)
        if max_seqlen is None:
            max_seqlen = int((cu[1:] - cu[:-1]).max())
        extra = {"cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max_seqlen, "max_length_k": max_seqlen}
    return (*flat, None, extra)


def packed_attention_inputs(model, tokens, labels, loss_mask, position_ids=None, attention_mask=None,
                            cu_seqlens: Optional[torch.Tensor] = None, max_seqlen: Optional[int] = None
                            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor],
                                       Optional[torch.Tensor], Dict]:
    """(tokens, labels, loss_mask, position_ids, attention_mask, extra backbone kwargs) in the form the model's
    attention takes. `attention_mask` as the data gives it: None, [b, S] (1 = real token) or [b, 1, S, S] bool
    (True = may attend); `cu_seqlens` (and its largest length `max_seqlen`) only with packed rows."""
    form = boundary_form(model)
    unchanged = (tokens, labels, loss_mask, position_ids, attention_mask, {})
    if form == "documents" or position_ids is None:
        return unchanged
    if attention_mask is not None:  # the data's own mask decides what is attended
        if form == "additive" and attention_mask.dim() == 4 and attention_mask.dtype == torch.bool:
            return (tokens, labels, loss_mask, position_ids, additive_mask(attention_mask, compute_dtype(model)), {})
        return unchanged
    if form == "varlen":
        packed = cu_seqlens is not None or document_ids(position_ids) is not None
        return _flattened(tokens, labels, loss_mask, position_ids, cu_seqlens, max_seqlen) if packed else unchanged
    if form == "additive":
        docs = document_ids(position_ids)
        if docs is not None and use_document_attention(model, tokens.device):
            return tokens, labels, loss_mask, position_ids, None, {"fsdp2_documents": documents_of(docs)}
        if docs is not None:
            return tokens, labels, loss_mask, position_ids, packed_causal_mask(docs, compute_dtype(model)), {}
    return unchanged
