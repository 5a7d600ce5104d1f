"""AdamW (or SGD) with Megatron's parameter groups, and a global gradient norm correct for DTensor shards.

The update runs PyTorch's fused AdamW (one kernel per device and dtype, CPU included) wherever PyTorch has
that kernel for every parameter's device and dtype, and its foreach implementation otherwise; both compute
the same update, to fp32 rounding. The choice is kept across checkpoint loads (a saved state records the
implementation of the run that wrote it) and reported by `describe_optimizer`.
"""
import functools
import logging
import math
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Set, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

from fsdp2_core.config import ConfigError

log = logging.getLogger(__name__)
IMPLEMENTATIONS = ("fused", "foreach")


def no_weight_decay(name: str, param: torch.Tensor) -> bool:
    """Megatron: biases and 1-D parameters (norm scales) get no weight decay."""
    return name.endswith(".bias") or param.ndim == 1


def decoupled_lr_params(model: nn.Module) -> Set[int]:
    """ids of the input embedding and output layer weights: Megatron's `is_embedding_or_output_parameter`
    (word embeddings and output layer only, not position embeddings; tied, the one shared weight)."""
    found = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter, lambda: None)()
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor):
            found.add(id(weight))
    return found


GROUP_ORDER = ((False, False), (False, True), (True, False), (True, True))  # (decoupled LR, no weight decay)


def param_groups(model: nn.Module, t) -> List[dict]:
    """Megatron's groups: weight decay or not (wd_mult), and with decoupled_lr the embedding and output layer
    apart (is_decoupled_lr; default_config False: not on the main LR schedule, whose LR is logged)."""
    decoupled = decoupled_lr_params(model) if t.decoupled_lr is not None else set()
    if t.decoupled_lr is not None and not decoupled:
        raise ConfigError("training.decoupled_lr (--decoupled-lr): the model has no input embedding or output layer "
                          "(get_input_embeddings / get_output_embeddings) to give it to")
    buckets: Dict[Tuple[bool, bool], List[torch.Tensor]] = {key: [] for key in GROUP_ORDER}
    for name, p in model.named_parameters():
        if p.requires_grad:
            buckets[(id(p) in decoupled, no_weight_decay(name, p))].append(p)
    groups = []
    for lr_apart, plain in GROUP_ORDER:
        if buckets[(lr_apart, plain)]:
            group = {"params": buckets[(lr_apart, plain)], "wd_mult": 0.0 if plain else 1.0}
            if lr_apart:  # only these groups carry the marks: other groups keep the keys older checkpoints hold
                group.update(is_decoupled_lr=True, default_config=False)
            groups.append(group)
    return groups


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


@functools.lru_cache(maxsize=None)
def has_fused_adamw(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether PyTorch's fused AdamW kernel runs for parameters of this device and dtype (tried once on
    one-element tensors: a device type may be listed as supported and still lack the kernel)."""
    if device.type not in _get_fused_kernels_supported_devices() or not dtype.is_floating_point:
        return False
    p, g, m, v = (torch.zeros(1, device=device, dtype=dtype) for _ in range(4))
    step = torch.zeros((), device=device, dtype=torch.float32)
    try:
        torch._fused_adamw_([p], [g], [m], [v], [], [step], lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0,
                            eps=1e-8, amsgrad=False, maximize=False)
    except (RuntimeError, NotImplementedError) as exc:
        log.info("no fused AdamW for %s %s (%s)", device, dtype, exc)
        return False
    return True


def adamw_implementation(params: Iterable[torch.Tensor]) -> str:
    """'fused' when every parameter's (local) device and dtype has the fused kernel, else 'foreach'."""
    kinds = {(_local(p).device, p.dtype) for p in params}
    return "fused" if kinds and all(has_fused_adamw(d, t) for d, t in kinds) else "foreach"


def _flags(implementation: str) -> dict:
    return {"fused": implementation == "fused", "foreach": implementation == "foreach"}


def keep_implementation(optimizer: torch.optim.Optimizer, implementation: str) -> None:
    """Set the implementation on every group now and again after every `load_state_dict` (whose saved groups
    would otherwise bring back the flags of the run that wrote them)."""
    def apply(opt):
        for group in opt.param_groups:
            group.update(_flags(implementation))
            if implementation == "fused":  # the fused kernel keeps each step count beside its parameter
                for p in group["params"]:
                    state = opt.state.get(p, {})
                    if torch.is_tensor(state.get("step")):
                        state["step"] = state["step"].to(device=_local(p).device, dtype=torch.float32)
    apply(optimizer)
    optimizer.register_load_state_dict_post_hook(apply)
    optimizer.implementation = implementation


def build_optimizer(model: nn.Module, t, implementation: Optional[str] = None) -> torch.optim.Optimizer:
    """AdamW over Megatron's groups; `implementation` ('fused' / 'foreach', tests) overrides the choice.
    Megatron's --optimizer sgd: torch SGD (foreach) with momentum and (coupled) weight decay."""
    groups = param_groups(model, t)
    if t.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=t.lr, momentum=t.sgd_momentum, weight_decay=t.weight_decay,
                                    foreach=True)
        optimizer.implementation = "foreach"
        return optimizer
    chosen = implementation or adamw_implementation([p for g in groups for p in g["params"]])
    if chosen not in IMPLEMENTATIONS:
        raise ValueError(f"AdamW implementation {chosen!r}: expected one of {', '.join(IMPLEMENTATIONS)}")
    optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon,
                                  weight_decay=t.weight_decay, **_flags(chosen))
    keep_implementation(optimizer, chosen)
    return optimizer


def describe_optimizer(optimizer: torch.optim.Optimizer) -> str:
    """One log line: the optimizer, its implementation, and the devices and dtypes it updates."""
    kinds: List[Tuple[str, str]] = sorted({(_local(p).device.type, str(p.dtype).replace("torch.", ""))
                                           for g in optimizer.param_groups for p in g["params"]})
    where = ", ".join(f"{d} {t}" for d, t in kinds)
    implementation = getattr(optimizer, "implementation", "default")
    return f"optimizer: {type(optimizer).__name__}, {implementation} implementation ({where})"


def logged_lr(optimizer: torch.optim.Optimizer) -> float:
    """The LR Megatron logs: that of the first group on the main schedule (get_canonical_lr_for_logging)."""
    groups = optimizer.param_groups
    return next((g["lr"] for g in groups if g.get("default_config", True)), groups[0]["lr"])


def _copies(t: torch.Tensor, world: int) -> int:
    """How many ranks of the world hold each element of this tensor's local piece."""
    if not isinstance(t, DTensor):
        return world
    shards = 1
    for size, placement in zip(t.device_mesh.shape, t.placements):
        if not (placement.is_replicate() or placement.is_partial()):  # Shard and FSDP×TP's _StridedShard
            shards *= size
    return world // shards


def global_grad_norm(params: Iterable[torch.Tensor], group: Optional[dist.ProcessGroup] = None,
                     replicated: bool = False) -> torch.Tensor:
    """L2 norm of all gradients over every shard (FSDP and TP), as one full reduction.

    Each rank sums the squares of its local pieces, weighted by 1/copies so replicated
    pieces count once, and a single all-reduce over the world adds them up. `replicated`: every rank holds the
    same whole (already reduced) gradients, so its own norm is the global one and nothing is reduced.
    """
    world = dist.get_world_size(group) if dist.is_initialized() and not replicated else 1
    by_copies = defaultdict(list)  # one fused norm per replication factor
    for p in params:
        if p.grad is not None:
            g = p.grad
            by_copies[_copies(g, world)].append(_local(g).detach())
    if not by_copies:
        return torch.tensor(0.0)
    device = next(iter(by_copies.values()))[0].device
    total = torch.zeros((), dtype=torch.float64, device=device)
    for copies, tensors in by_copies.items():
        norms = torch.stack(torch._foreach_norm(tensors)).double()
        total += norms.pow(2).sum() / copies
    if world > 1:
        dist.all_reduce(total, group=group)
    return total.sqrt().float()


def clip_gradients(params: List[torch.Tensor], max_norm: float, total_norm: float) -> None:
    """Scale gradients so their global norm (`total_norm`, already on the host) is at most `max_norm` (as torch's
    clip_grad_norm_)."""
    if max_norm <= 0:
        return
    coef = max_norm / (float(total_norm) + 1e-6)
    if coef < 1.0:
        torch._foreach_mul_([_local(p.grad) for p in params if p.grad is not None], coef)


def is_finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
