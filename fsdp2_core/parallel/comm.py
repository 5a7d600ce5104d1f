"""Differentiable collectives for context and expert parallelism, with a byte counter.

`all_to_all(x, group, out_splits, in_splits)` exchanges rows of `x` (dim 0); its
backward is the reverse exchange. `all_reduce_sum(x, group)` sums over the group;
its backward sums the gradients too, which is what a value computed identically on
every rank of the group needs (each rank's gradient then carries the whole group's
share, and FSDP's average over those ranks gives back the true gradient).

`COMM` counts the bytes each rank sends in all-to-alls, forward and backward, for the
benchmark (bench/bench_cp_ep.py).
"""
from typing import List, Optional

import torch
import torch.distributed as dist


class CommCounter:
    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.all_to_all_bytes = 0
        self.all_to_all_calls = 0

    def add(self, tensor: torch.Tensor, group, in_splits: Optional[List[int]]) -> None:
        """Bytes leaving this rank: everything except the slice it keeps for itself."""
        rows = tensor.shape[0]
        me = dist.get_rank(group)
        kept = in_splits[me] if in_splits else rows // dist.get_world_size(group)
        row_bytes = tensor.element_size() * (tensor.numel() // max(rows, 1))
        self.all_to_all_bytes += (rows - kept) * row_bytes
        self.all_to_all_calls += 1


COMM = CommCounter()


def _exchange(x: torch.Tensor, group, out_splits, in_splits) -> torch.Tensor:
    x = x.contiguous()
    rows = sum(out_splits) if out_splits else x.shape[0]
    out = x.new_empty((rows,) + tuple(x.shape[1:]))
    COMM.add(x, group, in_splits)
    dist.all_to_all_single(out, x, output_split_sizes=out_splits, input_split_sizes=in_splits, group=group)
    return out


class _AllToAll(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group, out_splits, in_splits):
        ctx.group, ctx.out_splits, ctx.in_splits = group, out_splits, in_splits
        return _exchange(x, group, out_splits, in_splits)

    @staticmethod
    def backward(ctx, grad):
        return _exchange(grad, ctx.group, ctx.in_splits, ctx.out_splits), None, None, None


def all_to_all(x: torch.Tensor, group, out_splits: Optional[List[int]] = None,
               in_splits: Optional[List[int]] = None) -> torch.Tensor:
    """Rows of `x` split by `in_splits` go to ranks 0..n-1; rows from them arrive split by `out_splits`."""
    return _AllToAll.apply(x, group, out_splits, in_splits)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


def all_reduce_sum(x: torch.Tensor, group) -> torch.Tensor:
    return _AllReduceSum.apply(x, group)


def exchange_counts(counts: torch.Tensor, group) -> torch.Tensor:
    """Non-differentiable all-to-all of an integer table [ranks, ...] (row r goes to rank r)."""
    out = torch.empty_like(counts)
    dist.all_to_all_single(out, counts.contiguous(), group=group)
    return out
