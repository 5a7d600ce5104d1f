"""Mixture-of-experts forward shared by the families: route, permute, compute, combine.

A family's MoE block is given `moe_block_forward`: the router picks top-k experts per
token; the tokens are permuted so each expert's tokens are contiguous; the experts
module is called on them (`experts(tokens, counts)`, so FSDP's hooks gather its
weights); the outputs are unpermuted, weighted and summed back per token.

Between permute and compute sits the block's dispatcher: `LocalDispatcher` when all
experts live on this rank; expert parallelism swaps in an all-to-all dispatcher
(`fsdp2_core.parallel.expert_parallel`). The model itself knows nothing of that.

Expert compute runs per expert (eager) or as one grouped GEMM (fused: torch's grouped
matmul on accelerators, a padded batched matmul elsewhere). Shared experts (DeepSeek-V3,
GLM-4.5, Qwen2-MoE) run beside the routed ones on every token: the family hands
`install_moe` a `shared_forward(block, x)` whose output is added.

Each forward leaves the block's route in `block._fsdp2_route` = (router logits [T, E],
chosen experts [T, k], samples b): the router losses and the expert-bias update
(`router_losses.py`) read it after the forward. With forced load balancing (`random_logits.py`,
a benchmarking aid) the router's gate logits are random and those random logits are the route's.
"""
import types
from typing import Callable, List, Optional

import torch
import torch.nn as nn
from torch.distributed.tensor import DTensor

from fsdp2_core.config import ConfigError
from fsdp2_core.kernels.grouped_gemm import grouped_gemm

from .capacity import drop_over_capacity
from .random_logits import RandomLogitSource, RandomRouterLogits


def local(p: torch.Tensor) -> torch.Tensor:
    """This rank's experts of a weight: the local shard of an expert-parallel DTensor."""
    return p.to_local() if isinstance(p, DTensor) else p


# ---------------------------------------------------------------- grouped matmul

def grouped_matmul(x: torch.Tensor, w: torch.Tensor, counts: torch.Tensor, fused: bool) -> torch.Tensor:
    """Rows of `x` grouped by expert (`counts` rows each) times that expert's `w[e]` ([in, out])."""
    if x.shape[0] == 0:
        return x @ w[0]  # keeps the weight in the graph, so its gradient exists (zeros) on every rank
    if fused:
        return _grouped(x, w, counts)
    out, start = [], 0
    for e, c in enumerate(counts.tolist()):
        if c:
            out.append(x[start:start + c] @ w[e])
            start += c
    return torch.cat(out)


def _grouped(x, w, counts):
    """One grouped GEMM, the kernel chosen per device by `fsdp2_core.kernels` (npu / cuda / padded bmm)."""
    return grouped_gemm(x, w, counts)


def per_expert(bias: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    return torch.repeat_interleave(bias, counts, dim=0)


# ---------------------------------------------------------------- dispatch

def check_dispatcher(name: str, device_type: str) -> None:
    if name == "mc2":
        not_yet = " and this build does not drive the MC2 kernels yet" if device_type == "npu" else ""
        raise ConfigError(f"ep_dispatcher mc2 is Ascend's fused communication and matmul (torch_npu MC2 kernels); "
                          f"this run is on {device_type}{not_yet}; use ep_dispatcher eager or fused")


def permute(idx: torch.Tensor, num_experts: int):
    """(order of token-expert pairs sorted by expert, tokens per expert)."""
    flat = idx.reshape(-1)
    return torch.argsort(flat, stable=True), torch.bincount(flat, minlength=num_experts)


def combine(y: torch.Tensor, order: torch.Tensor, weights: torch.Tensor, tokens: int, k: int) -> torch.Tensor:
    """Unpermute expert outputs and sum them per token, weighted by the router."""
    w = weights.reshape(-1)[order].unsqueeze(-1).to(y.dtype)
    return y.new_zeros(tokens, y.shape[-1]).index_add(0, order // k, y * w)


class LocalDispatcher:
    """Every expert on this rank."""

    def __call__(self, experts: nn.Module, x: torch.Tensor, weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        tokens, k = idx.shape
        order, counts = permute(idx, experts.num_experts)
        y = experts(x[order // k], counts)
        return combine(y, order, weights, tokens, k)


def route(block: nn.Module, x: torch.Tensor):
    """The block's router on tokens `x` [T, H]: (logits [T, E], weights [T, k], experts [T, k])."""
    router = getattr(block, block._fsdp2_router)
    source = block._fsdp2_random_logits
    if source is None:
        return router(x)
    with RandomRouterLogits(source, router):
        return router(x)


def force_random_logits(blocks: List[nn.Module], seed: int) -> None:
    """Forced load balancing on these MoE blocks: random gate logits from this rank's stream `seed`."""
    source = RandomLogitSource(seed)
    for block in blocks:
        block._fsdp2_random_logits = source


def moe_block_forward(self, hidden_states: torch.Tensor):
    """Replaces a family MoE block's forward (self is the block)."""
    b, s, h = hidden_states.shape
    x = hidden_states.reshape(-1, h)
    logits, weights, idx = route(self, x)
    self._fsdp2_route = (logits, idx, b)
    if self._fsdp2_capacity is not None:  # Megatron's token dropping (capacity.py)
        weights, self._fsdp2_kept = drop_over_capacity(weights, idx, self.experts.num_experts, *self._fsdp2_capacity)
    out = self._fsdp2_dispatcher(self.experts, x, weights, idx)
    if self._fsdp2_shared is not None:
        out = out + self._fsdp2_shared(self, x).to(out.dtype)
    out = out.reshape(b, s, h)
    return (out, weights) if self._fsdp2_returns_scores else out


def install_moe(model: nn.Module, block_types, router_attr: str, experts_forward, returns_scores: bool,
                fused: bool = False, shared_forward: Optional[Callable] = None) -> List[nn.Module]:
    """Give every MoE block of `model` our forward; return the blocks (kept on the model for the router losses)."""
    blocks = [m for m in model.modules() if type(m).__name__ in block_types]
    for block in blocks:
        block._fsdp2_router = router_attr
        block._fsdp2_returns_scores = returns_scores
        block._fsdp2_shared = shared_forward
        block._fsdp2_random_logits = None
        block._fsdp2_capacity = None  # (factor, drop policy) with Megatron's expert capacity; None: dropless
        block._fsdp2_kept = None
        block._fsdp2_dispatcher = LocalDispatcher()
        block.forward = types.MethodType(moe_block_forward, block)
        block.experts._fsdp2_fused = fused
        block.experts.forward = types.MethodType(experts_forward, block.experts)
    model._fsdp2_moe_blocks = blocks
    return blocks
