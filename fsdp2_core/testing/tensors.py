"""Count the tensors a forward / backward creates or saves, per rank (tests and bench/bench_tp_memory.py).

`TensorLog` sees the output of every operator (a TorchDispatchMode, as torch's own
FlopCounterMode is), so a test can show that no rank ever creates a tensor of a given
shape (the full [tokens, vocabulary] logits). DTensors are counted by their local piece.

`SavedActivations` sums the bytes autograd saves for backward (saved-tensor hooks),
once per storage, under the module that was running when they were saved: what a
rank holds between forward and backward, split by norms, the loss and the rest.
"""
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def local_piece(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


class TensorLog(TorchDispatchMode):
    """Shapes of the (local) outputs of every operator run while the mode is active."""

    def __init__(self):
        super().__init__()
        self.shapes: List[Tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(local_piece(t).shape))
        return out

    def with_last_dim(self, size: int, rows: int) -> List[Tuple[int, ...]]:
        """Shapes [..., size] holding `rows` rows of it (e.g. [tokens, vocabulary] logits, however batched)."""
        return [s for s in self.shapes if s and s[-1] == size and _prod(s[:-1]) == rows]


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


class SavedActivations:
    """Bytes saved for backward during the `with` block, by category of the innermost running module.

    `categorize(name, module)` names a module's category (None: inherit the enclosing one's);
    tensors saved outside any categorised module count as "other". Parameters are not activations
    and are skipped; each storage is counted once."""

    def __init__(self, model: nn.Module, categorize: Callable[[str, nn.Module], Optional[str]],
                 params: Optional[List[torch.Tensor]] = None):
        self.model, self.categorize = model, categorize
        self.bytes: Dict[str, int] = defaultdict(int)
        self._stack: List[str] = []
        self._seen = set()
        self._skip = {local_piece(p).untyped_storage().data_ptr() for p in (params or model.parameters())}
        self._handles = []

    def _pack(self, t: torch.Tensor):
        local = local_piece(t)
        if local.device.type != "meta":
            key = local.untyped_storage().data_ptr()
            if key not in self._seen and key not in self._skip:
                self._seen.add(key)
                self.bytes[self._stack[-1] if self._stack else "other"] += local.untyped_storage().nbytes()
        return t

    def _enter_module(self, category: str) -> None:
        self._stack.append(category)

    def _leave_module(self) -> None:  # returns None: a forward hook's return value would replace the output
        self._stack.pop()

    @contextmanager
    def section(self, category: str):
        """Count what is saved inside this block (code that runs outside modules, e.g. the loss) as `category`."""
        self._stack.append(category)
        try:
            yield
        finally:
            self._stack.pop()

    def __enter__(self):
        for name, module in self.model.named_modules():
            category = self.categorize(name, module)
            if category is None:
                continue
            self._handles.append(module.register_forward_pre_hook(lambda *_a, c=category: self._enter_module(c)))
            self._handles.append(module.register_forward_hook(lambda *_a: self._leave_module()))
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        for h in self._handles:
            h.remove()
        return False
