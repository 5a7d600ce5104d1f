"""Expert capacity with token dropping, as Megatron's router applies it (--moe-expert-capacity-factor).

Each expert takes at most ceil(T · k / E · factor) of the T tokens the router sees on this rank (k experts per token,
E experts); beyond that, token-expert pairs are dropped: the pairs with the smallest routing weights (policy
"probs") or the latest tokens (policy "position", by torch.topk over the routing map, as Megatron). A dropped pair
adds nothing to its token's output and gets no gradient, like megatron-core's `apply_router_token_dropping`
(tests/arch/test_capacity.py compares against it). Padding each expert's input to the capacity
(--moe-pad-expert-input-to-capacity) only adds pairs of weight 0, so it changes no value and is not modelled.

The router losses are computed from the logits before dropping, as Megatron's; the expert-bias update counts the
pairs that were kept."""
import math
from typing import Tuple

import torch


def expert_capacity(num_pairs: int, num_experts: int, factor: float) -> int:
    return math.ceil(num_pairs / num_experts * factor)


def drop_over_capacity(weights: torch.Tensor, idx: torch.Tensor, num_experts: int, factor: float,
                       policy: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(weights with dropped pairs zeroed, kept [T, k] bool) for routing weights and chosen experts [T, k]."""
    tokens, k = idx.shape
    capacity = expert_capacity(tokens * k, num_experts, factor)
    if capacity > tokens:  # no expert can overflow
        return weights, torch.ones_like(idx, dtype=torch.bool)
    probs = weights.new_zeros(tokens, num_experts).scatter(1, idx, weights.detach())
    if policy == "probs":
        _, keep = torch.topk(probs, k=capacity, dim=0, sorted=False)
    elif policy == "position":
        chosen = torch.zeros(tokens, num_experts, dtype=torch.int32, device=idx.device).scatter(1, idx, 1)
        _, keep = torch.topk(chosen, k=capacity, dim=0, sorted=False)
    else:
        raise ValueError(f"moe_token_drop_policy {policy!r}: use probs or position")
    within = torch.zeros(tokens, num_experts, dtype=torch.bool, device=idx.device).scatter(0, keep, True)
    kept = within.gather(1, idx)
    return weights * kept, kept
