"""`compile_blocks`: torch.compile per transformer block, before recompute and FSDP.

Each block's own `forward` is compiled in place (parameter names unchanged, no `_orig_mod`
prefix), so FSDP's hooks, which run around `__call__`, stay outside the compiled region and
keep gathering and freeing the block's weights eagerly. A block is a member of the model's
`layers` module list (every transformers decoder family keeps its blocks there).
"""
import logging
from typing import List

import torch
import torch.nn as nn

from fsdp2_core.config import ConfigError

log = logging.getLogger(__name__)


def transformer_blocks(model: nn.Module) -> List[nn.Module]:
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] == "layers":
            return list(module)
    return []


def apply_compile(model: nn.Module, backend: str = "inductor") -> int:
    """Compile every transformer block's forward; return how many."""
    blocks = transformer_blocks(model)
    if not blocks:
        raise ConfigError(f"compile_blocks: no `layers` module list (transformer blocks) in {type(model).__name__}")
    for block in blocks:
        if not getattr(block, "_fsdp2_compiled", False):
            block.forward = torch.compile(block.forward, backend=backend)
            block._fsdp2_compiled = True
    log.info("compile_blocks: %d transformer blocks compiled (%s)", len(blocks), backend)
    return len(blocks)
