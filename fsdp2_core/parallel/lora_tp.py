"""LoRA adapters on tensor-parallel linears, split as Megatron / MindSpeed-LLM split them.

A peft LoRA layer wraps the base linear (`base_layer`) and adds lora_B(lora_A(x)) · alpha/r. Under tensor
parallelism the wrapper takes the base linear's place in the plan, and its three weights are placed so that
each rank computes its own slice of the sum:

  column-parallel base  weight (and bias) split on the output, lora_A whole, lora_B split on the output:
                        the input is whole on every rank, the output this rank's columns.
  row-parallel base     weight split on the input (bias whole), lora_A split on the input, lora_B whole:
                        the input is this rank's columns; base and lora_A give partial sums (lora_B is linear,
                        so its output stays partial) and one reduction sums both, into `output_layout`.

peft's own forward runs on these DTensors unchanged. A rank-r intermediate is all that lora_A adds to the
communication; the adapters' gradients are those of one process (DTensor sums the partial ones).
"""
import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import ParallelStyle

from .tp_styles import _distribute, _replicated, _settle, as_dtensor


def is_lora_layer(module: nn.Module) -> bool:
    """A peft LoRA layer (the wrapper of a target linear), recognised by its parts."""
    return all(hasattr(module, part) for part in ("base_layer", "lora_A", "lora_B", "scaling"))


def _parts(module: nn.Module):
    base = module.base_layer
    if type(base) is not nn.Linear:
        raise TypeError(f"LoRA under tensor parallelism adapts nn.Linear layers; this one wraps {type(base).__name__}")
    if getattr(module, "lora_variant", None) or any(getattr(module, "use_dora", {}).values()):
        raise TypeError("LoRA variants (DoRA, ...) are not split under tensor parallelism")
    return base, list(module.lora_A.values()), list(module.lora_B.values())


class LoraColwise(ParallelStyle):
    """A LoRA layer over a column-parallel linear: output this rank's columns (a plain tensor)."""

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        base, a_list, b_list = _parts(module)
        _distribute(base, "weight", mesh, Shard(0), self.src_data_rank)
        if base.bias is not None:
            _distribute(base, "bias", mesh, Shard(0), self.src_data_rank)
        for a in a_list:
            _distribute(a, "weight", mesh, Replicate(), self.src_data_rank)
        for b in b_list:
            _distribute(b, "weight", mesh, Shard(0), self.src_data_rank)
        module.register_forward_pre_hook(lambda _m, args: (_replicated(args[0], mesh),) + tuple(args[1:]))
        module.register_forward_hook(lambda _m, _args, out: out.to_local())
        return module


class LoraRowwise(ParallelStyle):
    """A LoRA layer over a row-parallel linear: input this rank's columns, output summed into `output_layout`."""

    def __init__(self, output_layout=Replicate(), use_local_output: bool = True):
        super().__init__()
        self.output_layout, self.use_local_output = output_layout, use_local_output

    def _apply(self, module: nn.Module, mesh: DeviceMesh) -> nn.Module:
        base, a_list, b_list = _parts(module)
        _distribute(base, "weight", mesh, Shard(1), self.src_data_rank)
        if base.bias is not None:
            _distribute(base, "bias", mesh, Replicate(), self.src_data_rank)
        for a in a_list:
            _distribute(a, "weight", mesh, Shard(1), self.src_data_rank)
        for b in b_list:
            _distribute(b, "weight", mesh, Replicate(), self.src_data_rank)
        layout, use_local = self.output_layout, self.use_local_output
        module.register_forward_pre_hook(lambda _m, args: (as_dtensor(args[0], mesh, Shard(-1)),) + tuple(args[1:]))
        module.register_forward_hook(lambda _m, _args, out: _settle(out, mesh, layout, use_local))
        return module
