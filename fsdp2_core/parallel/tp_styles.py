"""Parallel styles of our tensor-parallel plan that torch does not ship (see tensor_parallel.py).

Hidden states between blocks are DTensors sharded on the sequence (Shard(1)) when
sequence parallelism is on. The styles here move them across block boundaries:

  VocabParallelEmbedding  the input embedding split over the vocabulary rows; the sum of the
                   ranks' lookups lands on this rank's sequence slice (or whole).
  GatherSequence   input of a tensor-parallel block: all-gather the sequence, leaving a
                   Replicate DTensor, so the column-parallel projections reading it hand
                   back a partial gradient and the gather's backward is a reduce-scatter.
  WholeOnEveryRank a block that is not split (MoE routing and experts, linear attention):
                   it gets the gathered sequence as a plain tensor, computes the same result
                   on every rank, and its output is cut back to this rank's sequence slice.
  ShardParams      per-head parameters of a module (gpt-oss's sinks), sharded like the heads.
  ColwiseConv1D /  column- and row-parallel GPT-2 `Conv1D` layers (a linear layer with its
  RowwiseConv1D    weight stored transposed, [in, out]).
  LocalWidths      a block's width attributes (GPT-2's split_size) divided by tp_size.
  FusedQKVConv1D   a Conv1D whose output is [q | k | v] (GPT-2's c_attn): its weight stays
                   whole on every rank (FSDP still shards it over data parallelism) and each
                   rank computes only the q, k and v columns of its own heads; the partial
                   weight gradients are summed over the tensor-parallel ranks.
  FusedColwiseLinear the same for an nn.Linear whose output is equal blocks ([gate | up], GLM's
                   gate_up_proj): each rank computes its columns of every block.
"""
import types
from typing import Callable, Sequence

import torch
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ParallelStyle

SEQUENCE = Shard(1)


# ---------------------------------------------------------------- helpers

def as_dtensor(x: torch.Tensor, mesh: DeviceMesh, placement) -> DTensor:
    """`x` as a DTensor; a plain tensor is taken to be this rank's piece under `placement`."""
    return x if isinstance(x, DTensor) else DTensor.from_local(x, mesh, (placement,), run_check=False)


def _replicated(x: torch.Tensor, mesh: DeviceMesh) -> DTensor:
    x = as_dtensor(x, mesh, Replicate())
    return x if x.placements == (Replicate(),) else x.redistribute(mesh, (Replicate(),))


def _settle(out: DTensor, mesh: DeviceMesh, layout, use_local: bool) -> torch.Tensor:
    """Redistribute to `layout` synchronously (a compiled block must never receive a pending collective)."""
    out = out.redistribute(mesh, (layout,))
    return out.to_local() if use_local else out


def _distribute(module: nn.Module, name: str, mesh: DeviceMesh, placement, src_data_rank) -> None:
    p = getattr(module, name)
    module.register_parameter(name, nn.Parameter(distribute_tensor(p, mesh, [placement], src_data_rank=src_data_rank),
                                                 requires_grad=p.requires_grad))


def _map_hidden(args: tuple, kwargs: dict, fn: Callable) -> tuple:
    """Apply `fn` to a block's hidden states: its first positional argument, else kwargs['hidden_states']."""
    if args:
        return (fn(args[0]),) + tuple(args[1:]), kwargs
    if "hidden_states" not in kwargs:
        raise ValueError("a tensor-parallel block was called without hidden states (first argument or hidden_states=)")
    return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}


def _map_first_output(outputs, fn: Callable):
    if isinstance(outputs, tuple):
        return (fn(outputs[0]),) + tuple(outputs[1:])
    return fn(outputs)


# ---------------------------------------------------------------- block boundaries

class VocabParallelEmbedding(ParallelStyle):
    def __init__(self, output_layout=SEQUENCE, use_local_output: bool = False):
        super().__init__()
        self.output_layout, self.use_local_output = output_layout, use_local_output

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        if not isinstance(module, nn.Embedding):
            raise TypeError(f"{type(module).__name__} is not an nn.Embedding")
        _distribute(module, "weight", mesh, Shard(0), self.src_data_rank)
        layout, use_local = self.output_layout, self.use_local_output
        module.register_forward_pre_hook(lambda _m, args: (as_dtensor(args[0], mesh, Replicate()),) + tuple(args[1:]))
        module.register_forward_hook(lambda _m, _args, out: _settle(out, mesh, layout, use_local))
        return module


class GatherSequence(ParallelStyle):
    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        def gather(x):
            return as_dtensor(x, mesh, SEQUENCE).redistribute(mesh, (Replicate(),))

        module.register_forward_pre_hook(lambda _m, args, kwargs: _map_hidden(args, kwargs, gather), with_kwargs=True)
        return module


class WholeOnEveryRank(ParallelStyle):
    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        def gather(x):
            return as_dtensor(x, mesh, SEQUENCE).redistribute(mesh, (Replicate(),)).to_local()

        def cut(y):
            return DTensor.from_local(y, mesh, (Replicate(),), run_check=False).redistribute(mesh, (SEQUENCE,))

        module.register_forward_pre_hook(lambda _m, args, kwargs: _map_hidden(args, kwargs, gather), with_kwargs=True)
        module.register_forward_hook(lambda _m, _args, out: _map_first_output(out, cut))
        return module


# ---------------------------------------------------------------- parameters and widths

class ShardParams(ParallelStyle):
    """The named parameters of the module itself, sharded on `dim` (its consumer reads `.to_local()`)."""

    def __init__(self, names: Sequence[str], dim: int = 0):
        super().__init__()
        self.names, self.dim = tuple(names), dim

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        for name in self.names:
            _distribute(module, name, mesh, Shard(self.dim), self.src_data_rank)
        return module


class LocalWidths(ParallelStyle):
    """Divide the named width attributes of a block by tp_size (what its forward splits or reshapes by)."""

    def __init__(self, attributes: Sequence[str]):
        super().__init__()
        self.attributes = tuple(attributes)

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        for attr in self.attributes:
            if hasattr(module, attr):
                setattr(module, attr, getattr(module, attr) // mesh.size())
        return module


# ---------------------------------------------------------------- GPT-2's Conv1D

def _check_conv1d(module: nn.Module) -> None:
    if type(module).__name__ != "Conv1D" or not hasattr(module, "nf"):
        raise TypeError(f"{type(module).__name__} is not a transformers Conv1D layer")


class ColwiseConv1D(ParallelStyle):
    """Weight [in, out] split on out, bias with it; input whole, output this rank's columns (a plain tensor).
    Conv1D's own forward runs on the DTensors (its addmm and view read global shapes)."""

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        _check_conv1d(module)
        _distribute(module, "weight", mesh, Shard(1), self.src_data_rank)
        _distribute(module, "bias", mesh, Shard(0), self.src_data_rank)
        module.register_forward_pre_hook(lambda _m, args: (_replicated(args[0], mesh),) + tuple(args[1:]))
        module.register_forward_hook(lambda _m, _args, out: out.to_local())
        return module


class RowwiseConv1D(ParallelStyle):
    """Weight split on in, bias whole; input this rank's columns, output summed over the ranks into `output_layout`."""

    def __init__(self, output_layout=Replicate(), use_local_output: bool = True):
        super().__init__()
        self.output_layout, self.use_local_output = output_layout, use_local_output

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        _check_conv1d(module)
        _distribute(module, "weight", mesh, Shard(0), self.src_data_rank)
        _distribute(module, "bias", mesh, Replicate(), self.src_data_rank)
        layout, use_local = self.output_layout, self.use_local_output
        module.register_forward_pre_hook(lambda _m, args: (as_dtensor(args[0], mesh, Shard(-1)),) + tuple(args[1:]))
        module.register_forward_hook(lambda _m, _args, out: _settle(out, mesh, layout, use_local))
        return module


def head_columns(width: int, parts: int, rank: int, tp: int) -> torch.Tensor:
    """Indices of this rank's heads' columns in an output made of `parts` equal blocks ([q | k | v])."""
    block = width // parts
    per_rank = block // tp
    return torch.cat([torch.arange(p * block + rank * per_rank, p * block + (rank + 1) * per_rank)
                      for p in range(parts)])


class FusedQKVConv1D(ParallelStyle):
    def __init__(self, parts: int = 3):
        super().__init__()
        self.parts = parts

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        _check_conv1d(module)
        _distribute(module, "weight", mesh, Replicate(), self.src_data_rank)
        _distribute(module, "bias", mesh, Replicate(), self.src_data_rank)
        columns = head_columns(module.nf, self.parts, mesh.get_local_rank(), mesh.size())

        def forward(self, x):
            # Each rank reads only its heads' columns, so the gradients of the input, the weight
            # and the bias are partial here and summed over the tensor-parallel ranks.
            x = _replicated(x, mesh).to_local(grad_placements=(Partial(),))
            cols = columns.to(x.device)
            weight = self.weight.to_local(grad_placements=(Partial(),)).index_select(1, cols)
            bias = self.bias.to_local(grad_placements=(Partial(),)).index_select(0, cols)
            return torch.addmm(bias, x.reshape(-1, x.shape[-1]), weight).view(*x.shape[:-1], -1)

        module.forward = types.MethodType(forward, module)
        return module


class FusedColwiseLinear(ParallelStyle):
    """An nn.Linear whose output is `parts` equal blocks: weight (and bias) whole on every rank, each rank computing
    its share of every block, so the local output is [block 0 share | block 1 share | ...] as the forward expects."""

    def __init__(self, parts: int = 2):
        super().__init__()
        self.parts = parts

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        if not isinstance(module, nn.Linear):
            raise TypeError(f"{type(module).__name__} is not an nn.Linear")
        _distribute(module, "weight", mesh, Replicate(), self.src_data_rank)
        if module.bias is not None:
            _distribute(module, "bias", mesh, Replicate(), self.src_data_rank)
        rows = head_columns(module.out_features, self.parts, mesh.get_local_rank(), mesh.size())

        def forward(self, x):
            # partial gradients of the input, weight and bias, summed over the tensor-parallel ranks
            x = _replicated(x, mesh).to_local(grad_placements=(Partial(),))
            index = rows.to(x.device)
            weight = self.weight.to_local(grad_placements=(Partial(),)).index_select(0, index)
            bias = self.bias
            if bias is not None:
                bias = bias.to_local(grad_placements=(Partial(),)).index_select(0, index)
            return torch.nn.functional.linear(x, weight, bias)

        module.forward = types.MethodType(forward, module)
        return module
