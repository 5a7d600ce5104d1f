"""Plain data parallelism for models that fit on every rank: whole parameters, one bucketed all-reduce.

Where FSDP2 on CPU (gloo) gathers every unit before its forward and again before its backward and
reduce-scatters after, each a blocking collective between two ranks whose compute differs, a replicated model
runs forward without any communication; in backward each bucket of gradients (about `BUCKET_BYTES`, filled in
the reverse order of the parameters, the order backward produces them) is all-reduced asynchronously as soon as
all its gradients exist, on gloo's own thread, while backward goes on; the step waits for the last bucket only.
The optimizer then updates whole (plain) tensors. This is what PyTorch's DistributedDataParallel does; it is
done here with gradient hooks because the engine calls `model.lm_loss`, not `model.forward`.

The gradient each rank ends with is the sum over the data-parallel ranks divided by their number: FSDP's average,
to fp32 rounding. Buckets are launched strictly in their index order, and a bucket whose gradients do not all
arrive in backward (a parameter unused on some rank) is completed with zeros at the end of the step, so every
rank issues the same collectives in the same order; a flag per parameter travels with each bucket, so a parameter
no rank used keeps no gradient (AdamW then leaves it and its state alone, as in a single process). With gradient
accumulation only the last micro-batch's backward reduces (the hooks are off before it: `GradSync.sync`).

Which path a run takes: `parallel.data_parallel` (see `use_replicate`).
"""
import logging
from typing import List, Optional

import torch
import torch.distributed as dist
import torch.nn as nn

log = logging.getLogger(__name__)

BUCKET_BYTES = 25 * 1024 * 1024   # PyTorch DDP's default bucket_cap_mb
FIRST_BUCKET_BYTES = 1024 * 1024  # a small first bucket starts communication early, as DDP's
AUTO_MAX_PARAMS = 100_000_000     # auto: whole fp32 training state (16 bytes a parameter) of at most 1.6 GB a rank


class _Bucket:
    def __init__(self, params: List[nn.Parameter]):
        self.params = params
        self.pending = len(params)
        self.flat: Optional[torch.Tensor] = None
        self.work = None
        self.buffer: Optional[torch.Tensor] = None  # kept from step to step: no fresh allocation per step

    def reset(self) -> None:
        self.pending = len(self.params)
        self.flat = None
        self.work = None


class GradSync:
    """Bucketed, asynchronous gradient all-reduce over `group` for the parameters given (in model order)."""

    def __init__(self, params: List[nn.Parameter], group, bucket_bytes: int = BUCKET_BYTES,
                 first_bucket_bytes: int = FIRST_BUCKET_BYTES):
        self.group = group
        self.world = dist.get_world_size(group)
        self.sync = True
        self.buckets: List[_Bucket] = []
        current: List[nn.Parameter] = []
        size, cap = 0, first_bucket_bytes
        for p in reversed(params):  # backward produces gradients roughly in reverse model order
            current.append(p)
            size += p.numel() * p.element_size()
            if size >= cap:
                self.buckets.append(_Bucket(current))
                current, size, cap = [], 0, bucket_bytes
        if current:
            self.buckets.append(_Bucket(current))
        self.where = {}
        for i, bucket in enumerate(self.buckets):
            for p in bucket.params:
                self.where[p] = i
        self.next_launch = 0
        self.handles = [p.register_post_accumulate_grad_hook(self._ready) for p in params]

    def _ready(self, p: torch.Tensor) -> None:
        if not self.sync:
            return
        self.buckets[self.where[p]].pending -= 1
        while self.next_launch < len(self.buckets) and self.buckets[self.next_launch].pending == 0:
            self._launch(self.buckets[self.next_launch])
            self.next_launch += 1

    def _launch(self, bucket: _Bucket) -> None:
        """The bucket's gradients, flat, then one flag per parameter (1: this rank has its gradient), summed."""
        params = bucket.params
        flags = torch.tensor([p.grad is not None for p in params], dtype=params[0].dtype, device=params[0].device)
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        if bucket.buffer is None:
            bucket.buffer = torch.empty(sum(g.numel() for g in grads) + len(params), dtype=flags.dtype,
                                        device=flags.device)
        bucket.flat = torch.cat(grads + [flags], out=bucket.buffer)
        bucket.work = dist.all_reduce(bucket.flat, group=self.group, async_op=True)

    def finish(self) -> None:
        """Launch what backward left (in index order), wait for every bucket, write back the averaged gradients."""
        if not self.sync:
            return
        for bucket in self.buckets[self.next_launch:]:
            self._launch(bucket)
        self.next_launch = len(self.buckets)
        for bucket in self.buckets:
            bucket.work.wait()
            flags = bucket.flat[-len(bucket.params):].tolist()
            bucket.flat.div_(self.world)
            offset = 0
            for p, had in zip(bucket.params, flags):
                n = p.numel()
                view = bucket.flat[offset:offset + n].view_as(p)
                if p.grad is not None:
                    p.grad.copy_(view)
                elif had:  # unused here, used on another rank: the average of theirs
                    p.grad = view.clone()
                offset += n  # unused on every rank: no gradient, as without data parallelism
            bucket.reset()
        self.next_launch = 0

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def replicate_reason(mesh, p, model: nn.Module, device_type: str) -> Optional[str]:
    """Why this run cannot be replicated (None: it can): plain data parallelism over more than one rank, fp32
    parameters and reduction, nothing left out of or resized inside FSDP."""
    dims = mesh.dims
    if dims.world_size == 1:
        return "one rank (nothing to reduce)"
    if dims.tp > 1 or dims.cp > 1 or dims.ep > 1:
        return "tensor, context or expert parallelism"
    if p.param_dtype != "fp32" or p.reduce_dtype != "fp32":
        return "parameters or reduction not in fp32 (FSDP keeps fp32 masters and casts)"
    if p.fsdp_size is not None:
        return "an explicit fsdp_size"
    if p.ignored_modules:
        return "ignored_modules"
    return None


def use_replicate(mesh, p, model: nn.Module, device_type: str) -> bool:
    """`parallel.data_parallel`: 'fsdp' always shards; 'replicate' replicates (refused where it cannot apply);
    'auto' replicates on CPU when it can apply and the model has at most AUTO_MAX_PARAMS parameters."""
    from fsdp2_core.config import ConfigError
    mode = getattr(p, "data_parallel", "fsdp")
    if mode == "fsdp":
        return False
    why = replicate_reason(mesh, p, model, device_type)
    if mode == "replicate":
        if why is not None and mesh.dims.world_size > 1:
            raise ConfigError(f"data_parallel: replicate needs plain fp32 data parallelism; this run has {why}; "
                              "use data_parallel: fsdp (or auto)")
        return why is None
    if why is not None or device_type != "cpu":
        return False
    return sum(t.numel() for t in model.parameters()) <= AUTO_MAX_PARAMS


def broadcast_parameters(model: nn.Module, group) -> None:
    """Every rank starts from rank 0's parameters and buffers (in one flat message per dtype)."""
    tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.numel()]
    by_dtype = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    src = dist.get_global_rank(group, 0)
    with torch.no_grad():
        for same in by_dtype.values():
            flat = torch.cat([t.detach().reshape(-1) for t in same])
            dist.broadcast(flat, src=src, group=group)
            offset = 0
            for t in same:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()


def apply_replicate(model: nn.Module, group) -> GradSync:
    """Attach the gradient all-reduce to `model` (`model._fsdp2_grad_sync`); parameters stay plain tensors."""
    params = [p for p in model.parameters() if p.requires_grad]
    sync = GradSync(params, group)
    model._fsdp2_grad_sync = sync
    return sync
