"""The language-model loss, as Megatron computes it from (tokens, labels, loss_mask).

`lm_loss_sums` returns (sum of masked token losses, number of masked tokens) for one
micro-batch; the step decides how to normalise (per token over the global batch, or
Megatron's per-micro-batch mean). With `chunk_size` the output head and the cross
entropy run over sequence chunks under recompute, so the full [batch, seq, vocab]
logits never exist at once; the result is the same loss.

It is installed on the model as `model.lm_loss` and registered with FSDP as a forward
method, so FSDP's root hooks (gathering, resharding) run around it as around forward.

Tensor parallelism: the model carries `_fsdp2_vocab_shard`; the output layer is
column-parallel, so each rank computes the logits of its vocabulary slice only and the
token losses (z-loss included) come from the vocabulary-parallel cross entropy
(parallel/loss_parallel.py); the sequence-parallel hidden states are gathered once
before the head, not per chunk. Every tensor-parallel rank returns the same sums.

Context parallelism: the model carries `_fsdp2_cp`; each cp rank runs its slice of the
sequence, and the sums and counts are summed over the cp ranks (differentiably), so
every cp rank returns the whole micro-batch's figures, as a rank without cp would.

MoE: the router losses of the same forward are left in `model.last_aux_loss` (None
without one): our families' Megatron losses (models/router_losses.py: load balancing,
sequence-level load balancing, z-loss), whose coefficient-free values go to
`model.last_router_losses` for the iteration line, or with the plain transformers forward,
transformers' own load-balancing loss. A training forward also counts each layer's expert
load for the aux-loss-free bias update (`moe_router_bias_update_rate`).

Multi-token prediction (models/mtp.py): each depth's (loss sum, token count), over the
inputs rolled k positions left, goes to `model.last_mtp_sums` (None without MTP layers).
"""
import functools
import types
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.fsdp import register_fsdp_forward_method
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint

from fsdp2_core.models.attention import local_part, split_inputs
from fsdp2_core.models.indexer_loss import INDEXER_LOSS, indexer_losses
from fsdp2_core.models.mtp import depth_inputs, mtp_hidden_states, mtp_layers
from fsdp2_core.models.packed import packed_attention_inputs
from fsdp2_core.models.router_losses import RouterLossCoeffs, count_expert_load, router_losses
from fsdp2_core.parallel.comm import all_reduce_sum
from fsdp2_core.parallel.loss_parallel import VocabShard, vocab_parallel_cross_entropy, whole_sequence


def backbone_of(model: nn.Module) -> nn.Module:
    """The transformer without its output head (LlamaModel, GPT2Model, ...)."""
    prefix = getattr(model, "base_model_prefix", "model")
    return getattr(model, prefix, None) or model.get_decoder()


def output_layer(model: nn.Module):
    """The output head as the loss applies it. Gemma 2 soft-caps its logits (C · tanh(logits / C)) and Granite
    (MiniCPM's --dim-model-base) divides them by logits_scaling in their ForCausalLM forward, which the loss does not
    call, so both are applied here (elementwise: a vocabulary slice under tensor parallelism is treated the same)."""
    head = model.get_output_embeddings()
    config = getattr(model, "config", None)
    scaling = getattr(config, "logits_scaling", 1.0) if getattr(config, "model_type", "") == "granite" else 1.0
    if scaling != 1.0:
        head = functools.partial(_scaled, head, float(scaling))
    cap = getattr(config, "final_logit_softcapping", None)
    return functools.partial(_soft_capped, head, float(cap)) if cap else head


def _scaled(head, scaling: float, hidden: torch.Tensor) -> torch.Tensor:
    return head(hidden) / scaling


def _soft_capped(head, cap: float, hidden: torch.Tensor) -> torch.Tensor:
    return torch.tanh(head(hidden) / cap) * cap


def _token_losses(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor, z_loss_coeff: float = 0.0,
                  vocab_shard: Optional[VocabShard] = None):
    """Cross entropy per token; with `z_loss_coeff`, plus coeff × logsumexp(logits)² (PaLM's z-loss, which the forks'
    --use-z-loss adds to every token's loss with coeff 1e-4), so it is masked and averaged like the loss itself.
    Under tensor parallelism (`vocab_shard`) the head gives this rank's vocabulary slice of the logits only."""
    logits = head(hidden)
    if vocab_shard is not None:
        return vocab_parallel_cross_entropy(logits, labels, vocab_shard, z_loss_coeff)
    logits = logits.float()
    flat = logits.reshape(-1, logits.shape[-1])
    losses = F.cross_entropy(flat, labels.reshape(-1), reduction="none")
    if z_loss_coeff:
        losses = losses + z_loss_coeff * torch.logsumexp(flat, dim=-1).square()
    return losses.view_as(labels)


def _masked_sum(head, hidden, labels, mask, z_loss_coeff=0.0, vocab_shard=None):
    if vocab_shard is None and hidden.device.type == "cpu" and not isinstance(hidden, DTensor):
        hidden, labels, mask = _counted_positions(hidden, labels, mask)
    return (_token_losses(head, hidden, labels, z_loss_coeff, vocab_shard) * mask).sum()


def _counted_positions(hidden, labels, mask):
    """The rows of the positions the mask counts, flattened: the output head and the cross entropy then skip the
    prompt and padding tokens (half or more of a fine-tuning batch) and give the same sum. On the CPU only: finding
    the positions reads the mask on the host, which on an accelerator would be a wait per micro-batch."""
    keep = mask.reshape(-1).nonzero().squeeze(1)
    if keep.numel() == mask.numel():  # pretraining: every position counts
        return hidden, labels, mask
    return (hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep), labels.reshape(-1).index_select(0, keep),
            mask.reshape(-1).index_select(0, keep))


def lm_loss_sums(model: nn.Module, tokens: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor,
                 position_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                 chunk_size: Optional[int] = None, z_loss_coeff: float = 0.0, cu_seqlens: Optional[torch.Tensor] = None,
                 max_seqlen: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """`attention_mask`: None, [b, S] (1 = real token) or [b, 1, S, S] bool (True = may attend); packed rows
    (position ids restarting per sample, `cu_seqlens`) reach attention in the form it takes (models/packed.py)."""
    cp = getattr(model, "_fsdp2_cp", None)
    depths = depth_inputs(tokens, labels, loss_mask, len(mtp_layers(model))) if mtp_layers(model) else []
    if cp is not None:
        part = local_part(cp, tokens.shape[1])
        depths = [tuple(x[:, part] for x in depth) for depth in depths]
        tokens, labels, loss_mask, position_ids, extra = split_inputs(cp, tokens, labels, loss_mask, position_ids,
                                                                      attention_mask)
        attention_mask = None
    else:
        tokens, labels, loss_mask, position_ids, attention_mask, extra = packed_attention_inputs(
            model, tokens, labels, loss_mask, position_ids, attention_mask, cu_seqlens, max_seqlen)
    plain_aux = _plain_aux_coeff(model)
    if plain_aux:
        extra["output_router_logits"] = True
    out = backbone_of(model)(input_ids=tokens, position_ids=position_ids, attention_mask=attention_mask,
                             use_cache=False, **extra)
    hidden = whole_sequence(out[0])
    head = output_layer(model)
    vocab_shard = getattr(model, "_fsdp2_vocab_shard", None)
    total, count = _sums(head, hidden, labels, loss_mask.float(), chunk_size, cp, z_loss_coeff, vocab_shard)
    model.last_mtp_sums = None
    if depths:  # before the router losses: the MTP layers' MoE blocks route too
        if position_ids is None:
            position_ids = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        attn = {k: v for k, v in extra.items() if k.startswith("cp_")}
        outputs = mtp_hidden_states(model, hidden, [d[0] for d in depths], position_ids, **attn)
        model.last_mtp_sums = [_sums(head, whole_sequence(h), d[1], d[2].float(), chunk_size, cp, 0.0, vocab_shard)
                               for h, d in zip(outputs, depths)]
    model.last_aux_loss = _aux_loss(model, cp, out, plain_aux, attention_mask)
    _add_indexer_loss(model)
    return total, count


def _add_indexer_loss(model) -> None:
    """Sparse attention's indexer losses (models/indexer_loss.py) join the router losses: added to the step's loss
    the same way, logged under MindSpeed-LLM's name, averaged over the layers."""
    found = indexer_losses(getattr(model, "_fsdp2_indexed_attention", ()))
    if found is None:
        return
    total, logged = found
    model.last_aux_loss = total if model.last_aux_loss is None else model.last_aux_loss + total
    model.last_router_losses = {**(model.last_router_losses or {}), INDEXER_LOSS: logged}


def _sums(head, hidden, labels, mask, chunk_size, cp, z_loss_coeff=0.0,
          vocab_shard=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """(sum of masked token losses, masked token count), over the context-parallel ranks too. The MTP depths take
    no PaLM z-loss: the forks' --use-z-loss adds it to the language-model head only."""
    seq = hidden.shape[1]
    if not chunk_size or chunk_size >= seq:
        total = _masked_sum(head, hidden, labels, mask, z_loss_coeff, vocab_shard)
    else:
        total = torch.zeros((), dtype=torch.float32, device=labels.device)
        for start in range(0, seq, chunk_size):
            end = start + chunk_size
            total = total + checkpoint(_masked_sum, head, hidden[:, start:end], labels[:, start:end],
                                       mask[:, start:end], z_loss_coeff, vocab_shard, use_reentrant=False)
    count = mask.sum()
    if cp is not None and cp.size > 1:
        total = all_reduce_sum(total, cp.group)
        count = all_reduce_sum(count.detach(), cp.group)
    return total, count


def _cp_summer(group):
    """Sums over the context-parallel ranks: differentiably for router probabilities, plainly for counts."""
    def cp_sum(tensor, differentiable):
        if differentiable:
            return all_reduce_sum(tensor, group)
        tensor = tensor.clone()
        torch.distributed.all_reduce(tensor, group=group)
        return tensor
    return cp_sum


def _plain_aux_coeff(model) -> float:
    """transformers' MoE load-balancing coefficient when the plain forward runs an MoE model with it on."""
    config = getattr(model, "config", None)
    if getattr(model, "_fsdp2_moe_blocks", None) or not getattr(config, "output_router_logits", False):
        return 0.0
    return float(getattr(config, "router_aux_loss_coef", 0.0) or 0.0)


def router_coeffs(model) -> RouterLossCoeffs:
    """Megatron's router-loss coefficients: the load-balancing one from the Hugging Face config
    (router_aux_loss_coef with output_router_logits, as --moe-aux-loss-coeff translates), the others from ours."""
    config = model.config
    on = getattr(config, "output_router_logits", False)
    aux = float(getattr(config, "router_aux_loss_coef", 0.0) or 0.0) if on else 0.0
    extra = getattr(model, "_fsdp2_router_coeffs", {})
    return RouterLossCoeffs(aux=aux, seq_aux=extra.get("seq_aux", 0.0), z=extra.get("z", 0.0),
                            score_function=getattr(model, "_fsdp2_score_function", "softmax"),
                            device=extra.get("device", 0.0), comm=extra.get("comm", 0.0),
                            groups=int(getattr(config, "n_group", None) or 1),
                            group_topk=int(getattr(config, "topk_group", None) or 1),
                            on_choice=getattr(config, "topk_method", None) == "group_limited_greedy",
                            per_sample=bool(extra.get("per_sample", False)))


def _aux_loss(model, cp, out, plain_coeff: float, attention_mask):
    blocks = getattr(model, "_fsdp2_moe_blocks", None)
    model.last_router_losses = None
    if blocks:
        if torch.is_grad_enabled() and getattr(model, "_fsdp2_count_expert_load", False):
            count_expert_load(blocks)
        split = cp is not None and cp.size > 1
        losses = router_losses(blocks, router_coeffs(model), cp.size if split else 1,
                               _cp_summer(cp.group) if split else (lambda t, d: t))
        for b in blocks:
            b._fsdp2_route = None
        if losses is None:
            return None
        model.last_router_losses = losses.logged
        return losses.total
    router_logits = getattr(out, "router_logits", None)
    if not plain_coeff or not router_logits:
        return None
    import sys
    fns = [getattr(sys.modules.get(c.__module__), "load_balancing_loss_func", None) for c in type(model).__mro__]
    fn = next((f for f in fns if f is not None), None)
    if fn is None:
        return None
    config = model.config
    experts = getattr(config, "num_experts", None) or getattr(config, "num_local_experts")
    mask = attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
    return plain_coeff * fn(router_logits, experts, config.num_experts_per_tok, mask)


def install_loss(model: nn.Module) -> None:
    """Add `model.lm_loss(...)`; after `fully_shard` call `register_loss_with_fsdp`."""
    model.lm_loss = types.MethodType(lambda self, *a, **k: lm_loss_sums(self, *a, **k), model)


def register_loss_with_fsdp(model: nn.Module) -> None:
    register_fsdp_forward_method(model, "lm_loss")  # no-op when model is not FSDP-wrapped
