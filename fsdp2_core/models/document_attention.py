"""SDPA over packed samples one document at a time (the CPU's cheapest correct form of neat packing).

A row of packed samples under SDPA otherwise needs a [b, 1, L, L] mask, with which SDPA computes every block of
the row, the blocks across documents included. Called once per document with `is_causal`, SDPA computes only the
lower triangle of each document: for documents of a third of the row, about a sixth of the work. The result is
the masked attention's, to fp32 rounding.

`fsdp2_sdpa_documents` is registered with transformers as an attention implementation that is SDPA, with SDPA's
masks, whenever the forward carries no `fsdp2_documents`; with them (per row, the (start, end) of each document,
computed on the host from the document ids) it loops over the documents; one-token documents (the padding of
packed rows) take their own value, which is what attention over one key gives. Only installed for CPU runs of
models that use SDPA without sliding windows or sinks (`use_document_attention`); an accelerator takes the varlen
kernels or a mask.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "fsdp2_sdpa_documents"
Documents = List[List[Tuple[int, int, bool]]]

_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        AttentionInterface.register(NAME, document_sdpa_forward)
        AttentionMaskInterface.register(NAME, sdpa_mask)  # the masks SDPA gets, when there are no documents
        _REGISTERED = True


def document_sdpa_forward(module: nn.Module, query, key, value, attention_mask, dropout: float = 0.0,
                          scaling: Optional[float] = None, fsdp2_documents: Optional[Documents] = None, **kwargs):
    """transformers' SDPA forward, once per document when `fsdp2_documents` is given. Output [b, s, h, d]."""
    if fsdp2_documents is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if kwargs.get("sliding_window") is not None:
        raise RuntimeError(f"{NAME}: a sliding-window layer reached the per-document attention; it should not have "
                           "been installed for this model")
    rows = []
    for b, bounds in enumerate(fsdp2_documents):
        parts = [_single_tokens(module, value[b:b + 1, :, s:e]) if singles and not dropout else
                 _causal(module, query[b:b + 1, :, s:e], key[b:b + 1, :, s:e], value[b:b + 1, :, s:e], dropout,
                         scaling) for s, e, singles in bounds]
        rows.append(torch.cat(parts, dim=1))
    return torch.cat(rows, dim=0), None


def _causal(module, query, key, value, dropout, scaling):
    return sdpa_attention_forward(module, query, key, value, None, dropout=dropout, scaling=scaling,
                                  is_causal=True)[0]


def _single_tokens(module, value):
    """Documents of one token each (padding of packed rows: position 0 after position 0): a softmax over one key is
    1, so each token's output is its own value, exactly. [1, kv heads, n, d] -> [1, n, heads, d]."""
    groups = getattr(module, "num_key_value_groups", 1)
    return value.repeat_interleave(groups, dim=1).transpose(1, 2)


def documents_of(doc_ids: torch.Tensor) -> Documents:
    """Per row, (start, end, singles) of each packed sample, from the [b, S] document index of each position
    (`attention.document_ids`, the one rule for where a document starts). Consecutive one-token documents (the
    padding of a packed row, all at position 0) are merged into one entry with `singles` True."""
    starts = torch.diff(doc_ids, dim=-1) != 0
    out = []
    for row in starts.cpu():
        cuts = [0] + (row.nonzero().squeeze(1) + 1).tolist() + [doc_ids.shape[-1]]
        bounds = []
        for s, e in zip(cuts[:-1], cuts[1:]):
            if e - s == 1 and bounds and bounds[-1][2] and bounds[-1][1] == s:
                bounds[-1] = (bounds[-1][0], e, True)
            else:
                bounds.append((s, e, e - s == 1))
        out.append(bounds)
    return out


def _attention_configs(model: nn.Module) -> list:
    configs = {}
    for module in model.modules():
        config = getattr(module, "config", None)
        if type(module).__name__.endswith("Attention") and config is not None:
            configs[id(config)] = config
    return list(configs.values())


def _windowed(config) -> bool:
    types = getattr(config, "layer_types", None) or []
    if any(t != "full_attention" for t in types):
        return True
    return bool(getattr(config, "sliding_window", None)) and bool(getattr(config, "use_sliding_window", not types))


def use_document_attention(model: nn.Module, device: torch.device) -> bool:
    """Install the per-document SDPA on a CPU model whose every attention module runs SDPA over full causal
    attention (no sliding window, no sinks); True when it is (or already was) installed."""
    state = getattr(model, "_fsdp2_document_sdpa", None)
    if state is not None:
        return state
    configs = _attention_configs(model)
    sinks = any(hasattr(m, "sinks") for m in model.modules())
    usable = (device.type == "cpu" and bool(configs) and not sinks
              and all(getattr(c, "_attn_implementation", None) == "sdpa" and not _windowed(c) for c in configs))
    if usable:
        _register()
        for config in configs:
            config._attn_implementation = NAME
    model._fsdp2_document_sdpa = usable
    return usable
