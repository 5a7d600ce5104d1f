"""Tensor parallelism from the `tp_colwise` / `tp_rowwise` glob patterns (DTensor).

Column-parallel layers keep a local (head-sharded) output, so Hugging Face attention,
which reshapes with `-1` heads, runs unchanged on its shard; the row-parallel layer
after it all-reduces back to a replicated activation. Parameters outside the patterns
stay plain tensors, identical on every tensor-parallel rank.
"""
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from fsdp2_core.config import ConfigError

from .patterns import matching_modules


def check_tp_divides(model: nn.Module, tp: int) -> None:
    """Heads and the FFN width must split evenly; say which one does not."""
    cfg = getattr(model, "config", None)
    if cfg is None or tp == 1:
        return
    for key in ("num_attention_heads", "num_key_value_heads", "intermediate_size"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value % tp:
            raise ConfigError(f"tp_size {tp} does not divide the model's {key} ({value}); choose a tp_size that does")


def tensor_parallel_plan(model: nn.Module, colwise, rowwise) -> dict:
    plan = {}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in matching_modules(model, colwise):
        # The output head's logits are gathered so the loss sees the whole vocabulary.
        plan[name] = ColwiseParallel(output_layouts=Replicate()) if module is head else ColwiseParallel()
    for name, _ in matching_modules(model, rowwise):
        if name in plan:
            raise ConfigError(f"module {name} matches both tp_colwise and tp_rowwise; remove it from one")
        plan[name] = RowwiseParallel()
    return plan


def apply_tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh, colwise, rowwise) -> dict:
    check_tp_divides(model, tp_mesh.size())
    plan = tensor_parallel_plan(model, colwise, rowwise)
    if not plan:
        raise ConfigError(f"tp_size {tp_mesh.size()} but no module matches tp_colwise {list(colwise)} or "
                          f"tp_rowwise {list(rowwise)}; adjust the patterns to this model's module names")
    parallelize_module(model, tp_mesh, plan)
    return plan
