"""Megatron's hidden dropout for families whose transformers class has none (Llama, Qwen, Mistral, Mixtral, ...).

Megatron-LM drops out hidden states in three places (`--hidden-dropout`, 0.1 unless a script sets it): the output of
the embedding, and the output of each layer's attention and MLP just before it is added to the residual stream
(its bias-dropout-add). Transformers' Llama-style decoder layers compute `residual + self_attn(...)` and
`residual + mlp(...)` with no dropout, so a forward hook on the embedding and on each layer's `self_attn` and `mlp`
applies it at exactly those places. It acts in training only (`module.training`), so evaluation and an exported
model are unchanged; the value travels as the config attribute `hidden_dropout`, which transformers keeps.

Families with their own hidden dropout (GPT-2's resid_pdrop, GPT-NeoX's, BLOOM's and Falcon's hidden_dropout)
are left to it. StableLM's `hidden_dropout` acts on the MLP output only: the embedding and attention are hooked.
OPT's `dropout` acts on the attention and MLP outputs; the sum of its word and position embeddings, which no module
returns, is dropped out as the first layer's input (its residual stream, as Megatron's embedding dropout is).
"""
from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.tensor import DTensor, Replicate

OWN_HIDDEN_DROPOUT = ("gpt2", "gpt_bigcode", "gpt_neox", "bloom", "falcon", "nemotron_h", "opt")
OWN_MLP_DROPOUT = ("stablelm",)  # its decoder layer drops out the MLP output with config.hidden_dropout
OWN_LAYER_DROPOUT = ("opt",)  # its layers drop out attention and MLP outputs (config.dropout), not the embeddings


def _embedding_dropout_of(model: nn.Module) -> float:
    config = getattr(model, "config", None)
    return float(getattr(config, "dropout", 0.0) or 0.0) if getattr(config, "model_type", None) in \
        OWN_LAYER_DROPOUT else 0.0


def hidden_dropout_of(model: nn.Module) -> float:
    """The probability to apply here: the config's `hidden_dropout` for a family without its own, else 0."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", None) in OWN_HIDDEN_DROPOUT:
        return 0.0
    return float(getattr(config, "hidden_dropout", 0.0) or 0.0)


def add_hidden_dropout(model: nn.Module) -> int:
    """Hook the dropout in where Megatron applies it; returns the number of places hooked (0: none)."""
    embedding_p = _embedding_dropout_of(model)
    if embedding_p > 0:  # OPT: the first layer's input is the embeddings' sum
        model.model.decoder.layers[0].register_forward_pre_hook(_input_dropout_hook(embedding_p), with_kwargs=True)
        return 1
    p = hidden_dropout_of(model)
    if p <= 0:
        return 0
    decoder = getattr(model, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise ValueError(f"hidden_dropout {p}: {type(model).__name__} has no decoder layers (model.layers) to "
                         "apply it to")
    places = [model.get_input_embeddings()]
    own_mlp = model.config.model_type in OWN_MLP_DROPOUT
    for layer in layers:  # a hybrid layer (Qwen3-Next) has linear attention in place of self_attn
        places += [getattr(layer, "self_attn", None) or layer.linear_attn] + ([] if own_mlp else [layer.mlp])
    for module in places:
        module.register_forward_hook(_dropout_hook(p))
    return len(places)


def _input_dropout_hook(p: float):
    def hook(module: nn.Module, args, kwargs):
        if not module.training:
            return None
        if args:
            return (_dropout(args[0], p),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": _dropout(kwargs["hidden_states"], p)}
    return hook


def _dropout_hook(p: float):
    def hook(module: nn.Module, args, output):
        if not module.training:
            return output
        if isinstance(output, tuple):  # attention: (hidden, weights); an MoE block: (hidden, router logits)
            return (_dropout(output[0], p),) + tuple(output[1:])
        return _dropout(output, p)
    return hook


def _dropout(hidden, p: float):
    """Dropout from torch's default generator, which every rank seeds alike and draws from in step, so the
    tensor-parallel copies of a replicated activation drop the same elements (as Megatron's default generator
    does), and activation recomputation, which restores that generator, redraws the same mask. A tensor-parallel
    embedding's output is still a partial sum: it is reduced first, as Megatron drops out after the reduction."""
    if not isinstance(hidden, DTensor):
        return F.dropout(hidden, p, training=True)
    whole = [Replicate() if placement.is_partial() else placement for placement in hidden.placements]
    hidden = hidden.redistribute(hidden.device_mesh, whole)
    dropped = F.dropout(hidden.to_local(), p, training=True)
    return DTensor.from_local(dropped, hidden.device_mesh, hidden.placements, run_check=False)
