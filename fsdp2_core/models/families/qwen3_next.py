"""Gated DeltaNet settings (Qwen3-Next's linear-attention layers): `gdn_chunk_size`, `use_triton_gdn`.

transformers' Qwen3NextGatedDeltaNet runs the chunked gated delta rule either with the
flash-linear-attention package (`fla`, Triton kernels) or with its torch reference. We
pass `gdn_chunk_size` to the torch reference (the chunked algorithm is exact, so the
chunk size changes speed and memory, not the result), and `use_triton_gdn` requires
the Triton kernels to be importable.
"""
import functools
import importlib.util

import torch.nn as nn

from fsdp2_core.config import ConfigError

GDN_MODEL_TYPES = ("qwen3_next",)


def family_available() -> bool:
    return importlib.util.find_spec("transformers.models.qwen3_next") is not None


def check_available(model_type: str) -> None:
    if model_type in GDN_MODEL_TYPES and not family_available():
        import transformers
        raise ConfigError(f"model_type {model_type} (Gated DeltaNet) needs transformers.models.qwen3_next, which the "
                          f"installed transformers {transformers.__version__} lacks; upgrade transformers (>= 4.57)")


def triton_gdn_available() -> bool:
    return importlib.util.find_spec("triton") is not None and importlib.util.find_spec("fla") is not None


def apply_gdn_options(model: nn.Module, cfg) -> int:
    """Set the chunk size on every Gated DeltaNet layer; return how many there are."""
    o, t = cfg.optimization, cfg.training
    model_type = getattr(model.config, "model_type", None)
    if model_type not in GDN_MODEL_TYPES:
        if o.use_triton_gdn:
            raise ConfigError(f"use_triton_gdn applies to Gated DeltaNet models (Qwen3-Next, model_type qwen3_next); "
                              f"this model is {model_type}; unset use_triton_gdn")
        return 0
    p = cfg.parallel
    if p.tp_size > 1 or p.cp_size > 1:  # the layers would run on a slice of the heads or of the sequence
        raise ConfigError(f"tp_size {p.tp_size} / cp_size {p.cp_size} with Gated DeltaNet layers ({model_type}): "
                          "tensor and context parallelism do not split these layers (fused q/k/v/z projection, "
                          "causal convolution, a recurrent state over the whole sequence); set tp_size 1 and "
                          "cp_size 1 (FSDP2 shards the weights, ep_size the experts)")
    if o.use_triton_gdn and not triton_gdn_available():
        raise ConfigError("use_triton_gdn needs Triton and the flash-linear-attention package (import name fla); "
                          "install them (CUDA), or unset use_triton_gdn to run the torch reference")
    if t.gdn_chunk_size < 1:
        raise ConfigError(f"gdn_chunk_size must be >= 1, got {t.gdn_chunk_size}")
    layers = [m for m in model.modules() if type(m).__name__.endswith("GatedDeltaNet")]
    for layer in layers:
        layer.forward = functools.partial(layer.forward, chunk_size=t.gdn_chunk_size)
    return len(layers)
