"""Activation recompute over `recompute_modules`.

The module's own `forward` is wrapped in non-reentrant checkpointing in place, so
parameter names stay those of the Hugging Face checkpoint (no wrapper prefix), and
FSDP hooks (which run around `__call__`) stay outside the recomputed region.
"""
import functools
from typing import List

import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .patterns import matching_modules


def apply_recompute(model: nn.Module, patterns) -> List[str]:
    wrapped = []
    for name, module in matching_modules(model, patterns):
        if getattr(module, "_fsdp2_recompute", False):
            continue
        inner = module.forward

        @functools.wraps(inner)
        def forward(*args, _inner=inner, **kwargs):
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        module.forward = forward
        module._fsdp2_recompute = True
        wrapped.append(name)
    return wrapped
