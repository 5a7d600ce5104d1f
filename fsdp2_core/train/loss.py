"""The language-model loss, as Megatron computes it from (tokens, labels, loss_mask).

`lm_loss_sums` returns (sum of masked token losses, number of masked tokens) for one
micro-batch; the step decides how to normalise (per token over the global batch, or
Megatron's per-micro-batch mean). With `chunk_size` the output head and the cross
entropy run over sequence chunks under recompute, so the full [batch, seq, vocab]
logits never exist at once; the result is the same loss.

It is installed on the model as `model.lm_loss` and registered with FSDP as a forward
method, so FSDP's root hooks (gathering, resharding) run around it as around forward.
"""
import types
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.fsdp import register_fsdp_forward_method
from torch.utils.checkpoint import checkpoint


def backbone_of(model: nn.Module) -> nn.Module:
    """The transformer without its output head (LlamaModel, GPT2Model, ...)."""
    prefix = getattr(model, "base_model_prefix", "model")
    return getattr(model, prefix, None) or model.get_decoder()


def _token_losses(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none").view_as(labels)


def _masked_sum(head, hidden, labels, mask):
    return (_token_losses(head, hidden, labels) * mask).sum()


def lm_loss_sums(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor,
                 position_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                 chunk_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    hidden = backbone_of(model)(input_ids=tokens, position_ids=position_ids, attention_mask=attention_mask,
                                use_cache=False)[0]
    head = model.get_output_embeddings()
    mask = loss_mask.float()
    seq = hidden.shape[1]
    if not chunk_size or chunk_size >= seq:
        total = _masked_sum(head, hidden, labels, mask)
    else:
        total = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, seq, chunk_size):
            end = start + chunk_size
            total = total + checkpoint(_masked_sum, head, hidden[:, start:end], labels[:, start:end],
                                       mask[:, start:end], use_reentrant=False)
    return total, mask.sum()


def install_loss(model: nn.Module) -> None:
    """Add `model.lm_loss(...)`; after `fully_shard` call `register_loss_with_fsdp`."""
    model.lm_loss = types.MethodType(lambda self, *a, **k: lm_loss_sums(self, *a, **k), model)


def register_loss_with_fsdp(model: nn.Module) -> None:
    register_fsdp_forward_method(model, "lm_loss")  # no-op when model is not FSDP-wrapped
