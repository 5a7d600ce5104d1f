"""FSDP2 (`fully_shard`) over the `fsdp_modules` patterns, minus `ignored_modules`.

Units are sharded innermost first, then the root takes whatever is left. Modules
whose weights are used more than once per step (tied input/output embeddings, the
output head under a chunked loss) are kept in the root unit so their weights are
gathered once per step rather than once per use.
"""
import importlib
import logging
from typing import Iterable, List, Optional, Set

import torch
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from fsdp2_core.config import ConfigError

from .patterns import matching_modules

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_callable(path: Optional[str]):
    """'package.module:function' or 'package.module.function' -> the function."""
    if not path:
        return None
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"shard_placement_fn {path!r} cannot be imported ({exc}); "
                          "give 'package.module:function'") from None


def ignored_parameters(model: nn.Module, patterns) -> Set[nn.Parameter]:
    params: Set[nn.Parameter] = set()
    for _, module in matching_modules(model, patterns or ()):
        params.update(module.parameters())
    return params


def shard_units(model: nn.Module, patterns, keep_in_root: Iterable[nn.Module] = ()) -> List[nn.Module]:
    """The modules to wrap, in forward (pre-)order, without those kept in the root."""
    keep = {id(m) for m in keep_in_root}
    return [m for _, m in matching_modules(model, patterns) if id(m) not in keep and m is not model]


def apply_fsdp(model: nn.Module, mesh: DeviceMesh, p, keep_in_root: Iterable[nn.Module] = (),
               root_reshard: bool = True) -> List[FSDPModule]:
    """Shard `model` per the parallel config `p`; return the inner units in forward order.

    `root_reshard=False` keeps the root unit's parameters gathered from forward to backward: needed when the loss
    reaches them through tensors the forward does not return (multi-token prediction's embedding and head)."""
    mp = MixedPrecisionPolicy(param_dtype=DTYPES[p.param_dtype], reduce_dtype=DTYPES[p.reduce_dtype])
    common = dict(mesh=mesh, mp_policy=mp, shard_placement_fn=resolve_callable(p.shard_placement_fn),
                  ignored_params=ignored_parameters(model, p.ignored_modules) or None)
    # With a shard group of one, resharding after forward frees nothing and only costs a re-gather.
    reshard = p.reshard_after_forward and mesh.shape[-1] > 1
    units = shard_units(model, p.fsdp_modules, keep_in_root)
    if not units:
        log.warning("no module matches fsdp_modules %s; the whole model is one FSDP unit", p.fsdp_modules)
    for module in reversed(units):  # children before parents
        fully_shard(module, reshard_after_forward=reshard, **common)
    fully_shard(model, reshard_after_forward=reshard and root_reshard, **common)
    _set_prefetch(units, p.num_to_forward_prefetch, p.num_to_backward_prefetch)
    model._fsdp2_compute_dtype = mp.param_dtype  # what attention masks are built in (models/packed.py)
    return units


def _set_prefetch(units: List[nn.Module], forward: int, backward: int) -> None:
    """Explicit prefetch of the next `forward` units in forward, the previous `backward` ones in backward."""
    if len(units) < 2:
        return
    for i, unit in enumerate(units):
        if forward > 0 and i + 1 < len(units):
            unit.set_modules_to_forward_prefetch(units[i + 1:i + 1 + forward])
        if backward > 0 and i > 0:
            unit.set_modules_to_backward_prefetch(list(reversed(units[max(0, i - backward):i])))
