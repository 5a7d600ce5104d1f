"""Hugging Face models: from a local directory, from a config dict, or on the meta device.

The model knows nothing of parallelism. With `init_model_with_meta_device` it is built
on the meta device, the caller shards it, and `materialize` then fills each parameter
from one full tensor at a time (read from safetensors, or initialised), keeping only
this rank's shard: no rank ever holds the whole model.

From-scratch initialisation is seeded per module (seed, module index), so the
weights are the same for every parallel layout and for meta or eager building.

Multi-token prediction layers (`mtp_num_layers`, models/mtp.py) are appended right after
the model is built; a checkpoint that holds them (DeepSeek-V3's layout) fills them, else
they are initialised like any new module.
"""
import json
import logging
import os
from typing import Dict, Iterator, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor, Replicate

from fsdp2_core.config import ConfigError
from fsdp2_core.config.architecture_rules import architecture_problems

from .alibi_documents import accept_document_masks
from .families.qwen3_next import check_available
from .hidden_dropout import add_hidden_dropout
from .mtp import add_mtp_layers, mtp_layers
from .registry import install_family
from .tokens import grow_rows

log = logging.getLogger(__name__)


def hf_config(model_cfg, vocab_size: Optional[int] = None):
    """The transformers config: from model_name_or_path, else from the `architecture` dict."""
    from transformers import AutoConfig
    m = model_cfg
    if m.model_name_or_path:
        config = AutoConfig.from_pretrained(m.model_name_or_path, trust_remote_code=m.trust_remote_code,
                                            revision=m.model_revision, cache_dir=m.cache_dir)
    else:
        arch = dict(m.architecture or {})
        model_type = arch.pop("model_type", None)
        if not model_type:
            raise ConfigError("model.architecture needs a model_type (e.g. llama, qwen3, gpt2)")
        check_available(model_type)
        try:
            config = AutoConfig.for_model(model_type, **arch)
        except ValueError as exc:
            raise ConfigError(f"model.architecture: {exc}") from None
        if "vocab_size" not in arch:
            if vocab_size is None:
                raise ConfigError("model.architecture has no vocab_size and no tokenizer gives one; "
                                  "set vocab_size (--vocab-size) or a tokenizer")
            config.vocab_size = vocab_size
    config.use_cache = False  # training never reuses key/value caches
    return config


def _from_config(config, trust_remote_code: bool) -> nn.Module:
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code, dtype=torch.float32)


def build_model(cfg, device: torch.device, meta: bool, vocab_size: Optional[int] = None, seed: int = 0) -> nn.Module:
    """Eager: a ready model on `device`. Meta: an empty model to shard, then `materialize`.

    The family's own forward (`model_id`, see registry.py) is installed on the result."""
    model = _build(cfg, device, meta, vocab_size, seed)
    install_family(model, cfg)
    accept_document_masks(model)
    add_hidden_dropout(model)
    return model


def check_model_config(config, cutoff_len: int, source: str) -> None:
    """The architecture's rules (fsdp2_core.config.architecture_rules) on the config a model is built from;
    `source` leads each key in the message ("model.architecture.", "<dir>/config.json: ")."""
    problems = architecture_problems(config.to_dict(), cutoff_len, label=source)
    if problems:
        raise ConfigError("the model cannot train as configured:\n  - " + "\n  - ".join(t for _, t in problems),
                          problems)


def _build(cfg, device, meta, vocab_size, seed) -> nn.Module:
    m = cfg.model
    config = hf_config(m, vocab_size)
    source = f"{os.path.join(m.model_name_or_path, 'config.json')}: " if m.model_name_or_path else "model.architecture."
    check_model_config(config, cfg.data.cutoff_len, source)
    if meta:
        with torch.device("meta"):
            model = _from_config(config, m.trust_remote_code)
            add_mtp_layers(model, m.mtp_num_layers)
        return model
    if m.model_name_or_path and not m.train_from_scratch:
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(m.model_name_or_path, config=config, dtype=torch.float32,
                                                     trust_remote_code=m.trust_remote_code, revision=m.model_revision)
        model = model.to(device)
        with torch.device(device):
            added = add_mtp_layers(model, m.mtp_num_layers)
        if added and not load_weights(model, m.model_name_or_path, seed, only=added, strict=False):
            init_weights(model, seed, only=added)
        return model
    with torch.device(device):
        model = _from_config(config, m.trust_remote_code)
        add_mtp_layers(model, m.mtp_num_layers)
    init_weights(model, seed)
    return model


def materialize(model: nn.Module, cfg, device: torch.device, seed: int) -> None:
    """Allocate this rank's shards of a meta-built (and already sharded) model, then fill them."""
    model.to_empty(device=device)
    m = cfg.model
    if m.model_name_or_path and not m.train_from_scratch:
        init_buffers(model)
        mtp = mtp_layers(model)
        if not load_weights(model, m.model_name_or_path, seed, optional=mtp) and mtp:
            init_weights(model, seed, only=mtp)  # a checkpoint without MTP layers: they start fresh
    else:
        init_weights(model, seed)
    if hasattr(model, "tie_weights"):
        model.tie_weights()


# ---------------------------------------------------------------- shard-wise filling

def copy_full_into(param: torch.Tensor, full: torch.Tensor) -> None:
    """Write a full (global) tensor into `param`, keeping only this rank's shard of a DTensor."""
    with torch.no_grad():
        if isinstance(param, DTensor):
            full = full.to(device=param.to_local().device, dtype=param.dtype)
            replicated = DTensor.from_local(full, param.device_mesh, [Replicate()] * param.device_mesh.ndim,
                                            run_check=False)
            param.to_local().copy_(replicated.redistribute(param.device_mesh, param.placements).to_local())
        else:
            param.copy_(full)


def _shadow_params(module: nn.Module) -> Dict[str, nn.Parameter]:
    """Full-shaped plain CPU stand-ins for a module's own parameters (global shapes of DTensors)."""
    # Zeros, not empty: a family whose parent module initialises a child's weight (Qwen3-Next's router)
    # leaves that child's own pass with nothing to write, and it must not copy back garbage.
    return {name: nn.Parameter(torch.zeros(p.shape, dtype=torch.float32), requires_grad=False)
            for name, p in module.named_parameters(recurse=False)}


def init_weights(model: nn.Module, seed: int, only: Optional[Sequence[nn.Module]] = None) -> None:
    """Initialise every module (or those under `only`) with the model's own `_init_weights`, one module at a time.

    Each module's parameters are swapped for full-shaped stand-ins, initialised from a
    generator seeded by (seed, module index), and scattered into the real (possibly
    sharded) parameters. Buffers (rotary tables, expert biases) are written in place.
    """
    init_fn = getattr(model, "_init_weights", None)
    if init_fn is None:
        raise ConfigError(f"{type(model).__name__} has no _init_weights; cannot initialise it from scratch")
    chosen = None if only is None else {id(m) for root in only for m in root.modules()}
    rng_state = torch.get_rng_state()
    for index, (_, module) in enumerate(model.named_modules()):
        if chosen is not None and id(module) not in chosen:
            continue
        real = dict(module.named_parameters(recurse=False))
        shadow = _shadow_params(module)
        if not shadow and not list(module.buffers(recurse=False)):
            continue
        torch.manual_seed(seed * 1_000_003 + index)
        for name, p in shadow.items():
            module._parameters[name] = p
        try:
            with torch.no_grad():
                init_fn(module)
        finally:
            for name, p in real.items():
                module._parameters[name] = p
        for name, p in real.items():
            copy_full_into(p, shadow[name].data)
    torch.set_rng_state(rng_state)


def init_buffers(model: nn.Module) -> None:
    """Recompute buffers (rotary tables) lost by `to_empty`, for modules that own no parameters."""
    init_fn = getattr(model, "_init_weights", None)
    for module in model.modules():
        if list(module.buffers(recurse=False)) and not list(module.parameters(recurse=False)) and init_fn:
            with torch.no_grad():
                init_fn(module)


def _safetensors_files(path: str) -> Dict[str, str]:
    """{tensor name: file} for a local checkpoint directory."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as fh:
            weight_map = json.load(fh)["weight_map"]
        return {k: os.path.join(path, v) for k, v in weight_map.items()}
    single = os.path.join(path, "model.safetensors")
    if not os.path.exists(single):
        raise ConfigError(f"{path}: no model.safetensors(.index.json); meta-device loading reads safetensors only")
    from safetensors import safe_open
    with safe_open(single, framework="pt") as fh:
        return {k: single for k in fh.keys()}


def iter_checkpoint(path: str) -> Iterator[Tuple[str, torch.Tensor]]:
    from safetensors import safe_open
    files = _safetensors_files(path)
    by_file: Dict[str, list] = {}
    for name, file in files.items():
        by_file.setdefault(file, []).append(name)
    for file, names in by_file.items():
        with safe_open(file, framework="pt") as fh:
            for name in names:
                yield name, fh.get_tensor(name)


def persistent_buffers(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Buffers a checkpoint holds (e.g. DeepSeek-V3's e_score_correction_bias); rotary tables are not."""
    out = {}
    for module_name, module in model.named_modules():
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and name not in module._non_persistent_buffers_set:
                out[f"{module_name}.{name}" if module_name else name] = buf
    return out


def load_weights(model: nn.Module, path: str, seed: int, optional: Sequence[nn.Module] = (),
                 only: Optional[Sequence[nn.Module]] = None, strict: bool = True) -> bool:
    """Fill parameters (and persistent buffers) from safetensors one tensor at a time; rows beyond the
    checkpoint's vocabulary (a resized embedding) are initialised as new tokens.

    `only`: fill just the tensors of these modules. Parameters of `optional` modules (or any, unless `strict`) may
    be missing; returns whether every wanted tensor was found."""
    params = dict(model.named_parameters())
    buffers = persistent_buffers(model)
    params.update(buffers)
    if only is not None:
        wanted_ids = {id(t) for root in only for t in list(root.parameters()) + list(root.buffers())}
        params = {n: t for n, t in params.items() if id(t) in wanted_ids}
    seen = set()
    for name, full in iter_checkpoint(path):
        if name not in params:
            continue
        param = params[name]
        if full.shape != param.shape:
            if full.shape[1:] == param.shape[1:] and full.shape[0] < param.shape[0]:
                full = grow_rows(full.float(), param.shape[0], seed)
            else:
                raise ConfigError(f"{path}: tensor {name} has shape {tuple(full.shape)}, the model expects "
                                  f"{tuple(param.shape)}")
        copy_full_into(param, full)
        seen.add(name)
    may_miss = {id(t) for root in optional for t in list(root.parameters()) + list(root.buffers())}
    missing = [n for n in params if n not in seen and not _is_tied(model, n)]
    with torch.no_grad():
        for name in missing:
            if name in buffers:  # e.g. an expert bias the checkpoint does not carry: it starts at zero
                buffers[name].zero_()
    required = [n for n in missing if n not in buffers and id(params[n]) not in may_miss]
    if required and strict:
        raise ConfigError(f"{path}: the checkpoint lacks {len(required)} parameters, e.g. {required[:3]}")
    return not [n for n in missing if n not in buffers]


def _is_tied(model: nn.Module, name: str) -> bool:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return (head is not None and embed is not None and head.weight is embed.weight
            and name.endswith("weight") and dict(model.named_parameters()).get(name) is head.weight)


def count_parameters(model: nn.Module, exclude_input_embedding: bool = False) -> int:
    """Global parameter count (DTensor numel is the global size); tied weights once."""
    skip = set()
    if exclude_input_embedding and hasattr(model, "get_input_embeddings"):
        emb = model.get_input_embeddings()
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is None or head.weight is not emb.weight:
            skip = {id(p) for p in emb.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
