"""Fused-kernel hooks of the registered families: the kernels of `fsdp2_core.kernels`.

The same `apply_kernels` runs for the plain transformers forward (from `build_parallel_model`);
it is idempotent, so a registered family gets its kernels once.
"""
import torch.nn as nn

from fsdp2_core.kernels import apply_kernels


def apply_kernel_hooks(model: nn.Module, cfg) -> list:
    """Install the requested fused kernels; return the names of those applied."""
    return apply_kernels(model, cfg)
