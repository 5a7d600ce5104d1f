"""Forced load balancing (--moe-router-force-load-balancing): random router logits, a benchmarking aid.

As megatron-core 0.16 does (transformer/moe/router.py TopKRouter.forward, moe_utils.RandomSTE): right after the
gating linear the router logits are replaced by standard-normal values, and routing (score function, expert bias,
groups, top k, scaling) then runs as usual on them, so tokens spread near-uniformly over the experts whatever
the gate has learned. It is a straight-through estimator: the backward hands the gradient to the gate's logits
unchanged. Training quality is meaningless; it exists to measure speed with balanced expert loads.

The values come from a generator of their own per rank (never the global one, so dropout and data order are
untouched), seeded `seed + 1024 + 100 · (rank // tp_size)`: Megatron's expert-parallel stream offset
(seed + 1024 + 100 · ep_rank). Tensor-parallel ranks share the stream because the MoE blocks run whole on each
of them on the same gathered tokens (parallel/tensor_parallel.py) and must route alike.

Our routers are the families' transformers modules (models/families/), each computing its logits with one
`F.linear`; `RandomRouterLogits` is a TorchFunctionMode active only around the router call that replaces the
result of that linear, so each family's own routing runs unchanged on the random logits.
"""
from typing import Dict

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

EXPERT_SEED_OFFSET = 1024
RANK_SEED_STRIDE = 100


class RandomSTE(torch.autograd.Function):
    """Forward: standard-normal values shaped like `logits`, drawn from `generator`. Backward: the gradient as is."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.empty_like(logits).normal_(generator=generator)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output, None


def random_logits_seed(seed: int, rank: int, tp_size: int) -> int:
    return seed + EXPERT_SEED_OFFSET + RANK_SEED_STRIDE * (rank // tp_size)


class RandomLogitSource:
    """This rank's generators of random router logits, one per device, all seeded alike."""

    def __init__(self, seed: int):
        self.seed = seed
        self._generators: Dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return RandomSTE.apply(logits, self.generator(logits.device))


class RandomRouterLogits(TorchFunctionMode):
    """Within a router's forward: the output of its gating linear becomes random logits (`source`)."""

    def __init__(self, source: RandomLogitSource, router: torch.nn.Module):
        super().__init__()
        self.source = source
        self.router_name = type(router).__name__
        self.replaced = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is F.linear:
            self.replaced += 1
            return self.source(out)
        return out

    def __exit__(self, exc_type, exc, tb):
        super().__exit__(exc_type, exc, tb)
        if exc_type is None and self.replaced != 1:
            raise RuntimeError(f"moe_router_force_load_balancing: router {self.router_name} ran {self.replaced} "
                               "linear layers, expected exactly one (its gate); its transformers implementation "
                               "changed, so the random logits cannot be placed")
