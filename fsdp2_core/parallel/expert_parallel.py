"""Expert parallelism: `ep_size`, `ep_fsdp_size`, `ep_modules`, `ep_fsdp_modules`, `ep_dispatcher`.

The expert mesh (mesh.py) arranges the world as (ep_replicate, ep_fsdp, ep). Each
rank of an `ep` group holds E/ep experts: the fused expert weights of the modules
matching `ep_modules` become DTensors sharded on the expert dimension over `ep`, with
their full logical shape [E, ...], so checkpoints hold every expert and reshard to
another ep_size on load. The modules matching `ep_fsdp_modules` are then sharded by
FSDP over `ep_fsdp` (replicated over `ep_replicate`, HSDP) before the dense units.

Token dispatch (`ep_dispatcher`):
  eager  all-to-all of the permuted tokens to the ranks holding their experts, the
         experts one by one, the reverse all-to-all, unpermute and weighted sum;
  fused  the same exchange with the experts as one grouped GEMM (also what
         `moe_grouped_gemm` selects);
  mc2    Ascend's fused dispatch-and-matmul (torch_npu MC2 kernels): refused elsewhere.

Gradients: an expert's gradient on its ep rank already sums the contributions of the
tokens of all ep ranks (the all-to-all's backward brings them home). FSDP then sums
over the expert data-parallel ranks and divides by the dense data-parallel size
(dp × cp), so experts get exactly the average dense parameters get.
"""
import logging
from typing import List

import torch
import torch.nn as nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import Shard, distribute_tensor

from fsdp2_core.config import ConfigError
from fsdp2_core.models.moe import check_dispatcher, combine, permute

from .comm import all_to_all, exchange_counts
from .patterns import matching_modules

log = logging.getLogger(__name__)


class AllToAllDispatcher:
    """Send each token-expert pair to the ep rank holding the expert; bring the results back."""

    def __init__(self, group, ep: int):
        self.group, self.ep = group, ep

    def __call__(self, experts: nn.Module, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        tokens, k = idx.shape
        num_experts, ep = experts.num_experts, self.ep
        per_rank = num_experts // ep
        order, counts = permute(idx, num_experts)
        send = counts.view(ep, per_rank)                         # [destination rank, its local expert]
        recv = exchange_counts(send, self.group)                 # [source rank, my local expert]
        in_splits, out_splits = send.sum(1).tolist(), recv.sum(1).tolist()
        arrived = all_to_all(x[order // k], self.group, out_splits, in_splits)   # source-major
        expert_of = torch.repeat_interleave(torch.arange(per_rank, device=x.device).repeat(ep), recv.reshape(-1))
        by_expert = torch.argsort(expert_of, stable=True)
        y = experts(arrived[by_expert], recv.sum(0))
        y = y.index_select(0, torch.argsort(by_expert))          # back to source-major
        returned = all_to_all(y, self.group, in_splits, out_splits)
        return combine(returned, order, weights, tokens, k)


def expert_modules(model: nn.Module, patterns) -> List[nn.Module]:
    return [m for _, m in matching_modules(model, patterns)]


def apply_expert_parallel(model: nn.Module, mesh, p) -> List[nn.Module]:
    """Shard the experts over the ep mesh and give the MoE blocks the all-to-all dispatcher."""
    check_dispatcher(p.ep_dispatcher, mesh.device_type)
    blocks = getattr(model, "_fsdp2_moe_blocks", None)
    if not blocks:
        raise ConfigError("ep_size / ep_fsdp_size > 1 but the model has no MoE blocks under our forward; "
                          "set model_id to a family with experts (qwen3_moe, gpt_oss)")
    ep = mesh.dims.ep
    modules = expert_modules(model, p.ep_modules)
    wanted = {id(b.experts) for b in blocks}
    if {id(m) for m in modules} != wanted:
        raise ConfigError(f"ep_modules {p.ep_modules} match {len(modules)} modules, but the model has {len(wanted)} "
                          "expert modules (e.g. model.layers.{*}.mlp.experts); make the patterns match exactly those")
    ep_mesh = mesh.ep
    for module in modules:
        if module.num_experts % ep:
            raise ConfigError(f"ep_size {ep} does not divide the {module.num_experts} experts; choose an ep_size "
                              "that does")
        for name, param in list(module.named_parameters(recurse=False)):
            sharded = distribute_tensor(param.data, ep_mesh, [Shard(0)])
            module.register_parameter(name, nn.Parameter(sharded, requires_grad=param.requires_grad))
    if ep > 1:
        dispatcher = AllToAllDispatcher(ep_mesh.get_group(), ep)
        for block in blocks:
            block._fsdp2_dispatcher = dispatcher
    return modules


def shard_experts(model: nn.Module, mesh, p, mp: MixedPrecisionPolicy) -> List[nn.Module]:
    """FSDP units of the experts on the expert mesh; call before the dense units are sharded."""
    modules = expert_modules(model, p.ep_fsdp_modules)
    if not modules:
        raise ConfigError(f"ep_fsdp_modules {p.ep_fsdp_modules} match no module; use e.g. "
                          "model.layers.{*}.mlp.experts")
    fsdp_mesh = mesh.expert_fsdp
    dense_ranks = mesh.dims.dp * mesh.dims.cp
    reshard = p.reshard_after_forward and mesh.dims.ep_fsdp > 1
    for module in modules:
        fully_shard(module, mesh=fsdp_mesh, mp_policy=mp, reshard_after_forward=reshard)
        module.set_gradient_divide_factor(float(dense_ranks))
        # Gloo has no PREMUL_SUM: sum, then divide. Not with a shard group of one: there FSDP (torch 2.13)
        # divides in its local copy and again after it, and no reduce-scatter op is issued anyway.
        module.set_force_sum_reduction_for_comms(mesh.dims.ep_fsdp > 1)
    return modules
