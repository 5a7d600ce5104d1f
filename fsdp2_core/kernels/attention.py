"""Causal attention (`use_flash_attn`): [b, h, s, d] query / key / value -> [b, h, s, d].

The reference is torch's scaled-dot-product attention restricted to its math backend.
On CUDA the fused path is `flash_attn` when installed, else SDPA restricted to its flash
backend; on Ascend `torch_npu.npu_fusion_attention` (BNSD layout, causal by sparse_mode 2
and the 2048×2048 compressed mask the kernel expects). Grouped key/value heads are
expanded before the call, so every backend sees equal head counts.

`fused_attention` plugs this into transformers' attention interface under the name
`fsdp2_fused` (the plain transformers forward, no `model_id`); with a `model_id` our own
attention core calls `causal_attention` for the plain causal case.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from . import select

ATTENTION_NAME = "fsdp2_fused"
_NPU_CAUSAL_MASK = {}


def _expand_kv(q, k, v):
    rep = q.shape[1] // k.shape[1]
    if rep > 1:
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return k, v


def attention_reference(q, k, v, scale: float, dropout: float = 0.0, mask: Optional[torch.Tensor] = None):
    k, v = _expand_kv(q, k, v)
    with sdpa_kernel(SDPBackend.MATH):
        if mask is None:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)


def _npu_causal_mask(device):
    if device not in _NPU_CAUSAL_MASK:
        _NPU_CAUSAL_MASK[device] = torch.triu(torch.ones(2048, 2048, dtype=torch.bool, device=device), diagonal=1)
    return _NPU_CAUSAL_MASK[device]


def causal_attention(q, k, v, scale: float, dropout: float = 0.0, mask: Optional[torch.Tensor] = None):
    """`mask` (optional): boolean [b or 1, 1 or h, s, s], True where attention is allowed (causality included)."""
    impl = select.choose("attention", select.device_of(q), q.dtype)
    k, v = _expand_kv(q, k, v)
    if impl == "npu_fusion_attention":
        select.record("attention", impl)
        npu = select.torch_npu()
        if mask is None:
            kw = dict(atten_mask=_npu_causal_mask(q.device), sparse_mode=2)
        else:
            kw = dict(atten_mask=~mask, sparse_mode=0)  # the NPU kernel's mask marks what is masked out
        return npu.npu_fusion_attention(q, k, v, q.shape[1], "BNSD", scale=scale, keep_prob=1.0 - dropout, **kw)[0]
    if impl == "flash_attn" and mask is None:
        select.record("attention", impl)
        from flash_attn import flash_attn_func
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=dropout,
                              softmax_scale=scale, causal=True)
        return out.transpose(1, 2)
    if impl in ("flash_attn", "sdpa_flash") and mask is None:
        select.record("attention", "sdpa_flash")
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scale)
    if impl != select.REFERENCE:  # a mask (packed documents, padding) on CUDA: SDPA picks its best masked kernel
        select.record("attention", "sdpa_masked")
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)
    select.record("attention", select.REFERENCE)
    return attention_reference(q, k, v, scale, dropout, mask)


def fused_attention(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                    sliding_window=None, s_aux=None, **_ignored):
    """transformers attention-interface function: inputs [b, h, s, d], output [b, s, h, d]."""
    if s_aux is not None:
        raise NotImplementedError("use_flash_attn with the plain transformers forward covers attention without sinks; "
                                  "set model_id gpt_oss (our attention core) for this family")
    # sliding windows: transformers' mask for the layer already holds the window (None only when the sequence fits it)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    mask = None
    if attention_mask is not None:
        mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
        mask = mask[..., : key.shape[-2]]
    out = causal_attention(query, key, value, scale, dropout, mask)
    return out.transpose(1, 2).contiguous(), None


_REGISTERED = False


def register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
        AttentionInterface.register(ATTENTION_NAME, fused_attention)
        AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
        _REGISTERED = True
