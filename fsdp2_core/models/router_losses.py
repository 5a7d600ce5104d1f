"""Megatron's router losses and aux-loss-free expert bias, for the MoE blocks under our forward (moe.py).

Every MoE forward leaves its route in `block._fsdp2_route` = (logits [T, E], chosen experts [T, k], samples b),
T = b · s tokens of this rank. After the model's forward the loss calls `router_losses`, which computes, per
MoE layer and as megatron-core 0.16 does (transformer/moe/router.py, moe_utils.py):

  load_balancing_loss      E / (k · T²) · Σ_e P_e · c_e          (--moe-router-load-balancing-type aux_loss)
  seq_load_balancing_loss  the same per sample, averaged over the b samples              (seq_aux_loss)
  z_loss                   mean over tokens of logsumexp(logits)²                   (--moe-z-loss-coeff)

P_e sums the router scores of expert e (softmax, or sigmoid normalised per token, by the family's score
function) and c_e counts the tokens whose top k of those same scores include e: Megatron's aux-loss routing
map, which ignores the expert bias and the expert groups. DeepSeek-V2's group-limited router (topk_method
group_limited_greedy, MindSpeed's and DeepSeek's own) counts the experts it actually chose instead, and adds, over
its n_group groups of consecutive experts (MindSpeed's group_limited_greedy_topKgating):

  load_balancing_device_level_loss  Σ_g f'_g · P'_g    f'_g mean of f_e = c_e · E / (T · k) over the group,
                                                       P'_g sum of the mean scores P_e / T over the group
  load_balancing_comm_level_loss    Σ_g f''_g · P'_g   f''_g the share of tokens sending to group g, over
                                                       topk_group / n_group

per sample and averaged over the samples with moe_balance_per_sample (MindSpeed --seq-aux), else over all the
micro-batch's tokens. With context parallelism P and c are summed over the
cp ranks (`cp_sum`), so every cp rank holds the whole sample's figures. The loss added to training is Σ over
layers of coeff · value; what is logged (Megatron's iteration line) is each value without its coefficient,
averaged over the MoE layers.

Aux-loss-free balancing (DeepSeek-V3, --moe-router-enable-expert-bias): `count_expert_load` adds each training
forward's chosen experts to a per-layer count, and `update_expert_bias` runs once per step after the backward:
the counts are summed over the data-parallel ranks and every layer's bias moves by
rate · sign(mean count - count_e), Megatron's `get_updated_expert_bias`.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn

from fsdp2_core.config import ConfigError

# Megatron's names in the iteration line, in the order its routers record them (z-loss first).
Z_LOSS, AUX_LOSS, SEQ_AUX_LOSS = "z_loss", "load_balancing_loss", "seq_load_balancing_loss"
DEVICE_LOSS, COMM_LOSS = "load_balancing_device_level_loss", "load_balancing_comm_level_loss"


@dataclass(frozen=True)
class RouterLossCoeffs:
    aux: float = 0.0
    seq_aux: float = 0.0
    z: float = 0.0
    score_function: str = "softmax"   # softmax | sigmoid: what the aux losses take as the router's probabilities
    device: float = 0.0               # DeepSeek-V2's device-level balance loss
    comm: float = 0.0                 # DeepSeek-V2's communication balance loss
    groups: int = 1                   # the router's expert groups (n_group) and how many a token may reach
    group_topk: int = 1
    on_choice: bool = False           # count the experts the router chose (group-limited), not the plain top k
    per_sample: bool = False          # device / comm losses per sample (MindSpeed --seq-aux)

    def active(self) -> Dict[str, float]:
        named = ((Z_LOSS, self.z), (AUX_LOSS, self.aux), (SEQ_AUX_LOSS, self.seq_aux), (DEVICE_LOSS, self.device),
                 (COMM_LOSS, self.comm))
        return {name: coeff for name, coeff in named if coeff}


@dataclass
class RouterLosses:
    total: torch.Tensor           # Σ over layers and kinds of coeff · value: what training adds
    logged: Dict[str, float]      # each kind without its coefficient, averaged over the MoE layers


def aux_scores(logits: torch.Tensor, score_function: str) -> torch.Tensor:
    """The router's probabilities as Megatron's aux losses see them (compute_routing_scores_for_aux_loss)."""
    if score_function == "softmax":
        return torch.softmax(logits, dim=-1, dtype=torch.float32)
    if score_function == "sigmoid":
        scores = torch.sigmoid(_at_least_fp32(logits))
        return scores / (scores.sum(dim=-1, keepdim=True) + 1e-20)
    raise ConfigError(f"router score function {score_function!r}: expected softmax or sigmoid")


def _at_least_fp32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _topk_map(scores: torch.Tensor, k: int) -> torch.Tensor:
    return torch.zeros_like(scores).scatter(1, scores.topk(k, dim=1).indices, 1.0)


def _identity(tensor: torch.Tensor, differentiable: bool) -> torch.Tensor:
    return tensor


def _choice_map(idx: torch.Tensor, experts: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(idx.shape[0], experts, dtype=dtype, device=idx.device).scatter(1, idx, 1.0)


def layer_losses(logits: torch.Tensor, k: int, samples: int, coeffs: RouterLossCoeffs, cp_size: int = 1,
                 cp_sum: Callable = _identity, idx: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
    """One MoE layer's losses (without coefficients) from its router logits [T, E] of this rank (and, for a
    group-limited router, the experts it chose [T, k])."""
    out: Dict[str, torch.Tensor] = {}
    tokens, experts = logits.shape
    if coeffs.z:
        lse_sq = torch.logsumexp(_at_least_fp32(logits), dim=-1).square().sum()
        out[Z_LOSS] = cp_sum(lse_sq, True) / (tokens * cp_size)
    if coeffs.aux or coeffs.seq_aux or coeffs.device or coeffs.comm:
        scores = aux_scores(logits, coeffs.score_function)
        chosen = _choice_map(idx, experts, scores.dtype) if coeffs.on_choice else _topk_map(scores, k)
        if coeffs.device or coeffs.comm:
            out.update(group_losses(scores, chosen, k, samples if coeffs.per_sample else 1, coeffs, cp_size, cp_sum))
        if coeffs.aux:
            probs, counts = cp_sum(scores.sum(0), True), cp_sum(chosen.sum(0), False)
            total = tokens * cp_size
            out[AUX_LOSS] = (probs * counts).sum() * experts / (k * total * total)
        if coeffs.seq_aux:
            probs = cp_sum(scores.view(samples, -1, experts).sum(1), True)          # [b, E] per sample
            counts = cp_sum(chosen.view(samples, -1, experts).sum(1), False)
            seq = tokens // samples * cp_size
            out[SEQ_AUX_LOSS] = (probs * counts).sum() * experts / (k * seq * seq) / samples
    return out


def group_losses(scores: torch.Tensor, chosen: torch.Tensor, k: int, units: int, coeffs: RouterLossCoeffs,
                 cp_size: int, cp_sum: Callable) -> Dict[str, torch.Tensor]:
    """DeepSeek-V2's device- and communication-level losses over `units` equal spans of the tokens (the samples,
    or the whole micro-batch), averaged over the spans."""
    tokens, experts = scores.shape
    groups = coeffs.groups
    n = tokens // units * cp_size                                                  # tokens of one span, all cp ranks
    mean_score = cp_sum(scores.view(units, -1, experts).sum(1), True) / n          # P_e / T       [units, E]
    load = cp_sum(chosen.view(units, -1, experts).sum(1), False) * experts / (n * k)  # f_e        [units, E]
    group_score = mean_score.view(units, groups, -1).sum(-1)                        # P'_g          [units, G]
    out = {}
    if coeffs.device:
        out[DEVICE_LOSS] = (load.view(units, groups, -1).mean(-1) * group_score).sum(-1).mean()
    if coeffs.comm:
        reached = (chosen.view(tokens, groups, -1).sum(-1) > 0).to(scores.dtype)   # token sends to group g
        share = cp_sum(reached.view(units, -1, groups).sum(1), False) / n / (coeffs.group_topk / groups)
        out[COMM_LOSS] = (share * group_score).sum(-1).mean()
    return out


def check_expert_groups(config, device: float, comm: float) -> None:
    """The device / comm losses need the router's expert groups: n_group dividing the experts."""
    groups = getattr(config, "n_group", None) or 0
    experts = getattr(config, "n_routed_experts", None) or getattr(config, "num_experts", None) or 0
    if groups < 1 or not experts or experts % groups:
        raise ConfigError(f"moe_device_level_aux_loss_coeff {device} / moe_comm_aux_loss_coeff {comm}: these losses "
                          f"balance the router's expert groups, and this model's config has n_group {groups or None} "
                          f"for {experts or None} experts; use a grouped router (DeepSeek-V2: topk_method "
                          "group_limited_greedy with n_group dividing n_routed_experts) or set both to 0")


def router_losses(blocks: List[nn.Module], coeffs: RouterLossCoeffs, cp_size: int = 1,
                  cp_sum: Callable = _identity) -> Optional[RouterLosses]:
    """The router losses of the last forward, summed over the MoE layers (None without routes or coefficients).

    `cp_sum(tensor, differentiable)` sums over the context-parallel ranks (handed in by the loss, which owns the
    process groups)."""
    active = coeffs.active()
    routes = [getattr(b, "_fsdp2_route", None) for b in blocks]
    if not active or not routes or any(r is None for r in routes):
        return None
    per_kind: Dict[str, List[torch.Tensor]] = {name: [] for name in active}
    for logits, idx, samples in routes:
        for name, value in layer_losses(logits, idx.shape[-1], samples, coeffs, cp_size, cp_sum, idx).items():
            per_kind[name].append(value)
    total = sum(active[name] * torch.stack(values).sum() for name, values in per_kind.items())
    logged = {name: float(torch.stack(values).detach().mean()) for name, values in per_kind.items()}
    return RouterLosses(total, logged)


# ---------------------------------------------------------------- aux-loss-free balancing

def expert_bias(block: nn.Module) -> Optional[torch.Tensor]:
    """The block's expert bias: `e_score_correction_bias` of the router (DeepSeek-V3, GLM-4.5) or of the block itself
    (MiniMax-M2), or None."""
    bias = getattr(getattr(block, block._fsdp2_router, None), "e_score_correction_bias", None)
    return bias if bias is not None else getattr(block, "e_score_correction_bias", None)


def check_expert_bias(blocks: List[nn.Module], rate: float) -> None:
    if rate and blocks and any(expert_bias(b) is None for b in blocks):
        router = type(getattr(blocks[0], blocks[0]._fsdp2_router)).__name__
        raise ConfigError(f"moe_router_bias_update_rate {rate}: the routers of this model ({router}) have no expert "
                          "bias (e_score_correction_bias); aux-loss-free balancing needs model_id deepseek_v3 "
                          "(DeepSeek-V3 / GLM-4.5 MoE) or minimax_m2; set moe_router_bias_update_rate 0")


def count_expert_load(blocks: List[nn.Module]) -> None:
    """Add the experts chosen in the last forward to each block's count (training forwards only)."""
    for block in blocks:
        route = getattr(block, "_fsdp2_route", None)
        if route is None:
            continue
        chosen = route[1].reshape(-1)
        kept = getattr(block, "_fsdp2_kept", None)  # with an expert capacity, the pairs not dropped (capacity.py)
        if kept is not None:
            chosen = chosen[kept.reshape(-1)]
        counts = torch.bincount(chosen, minlength=route[0].shape[-1]).float()
        previous = getattr(block, "_fsdp2_expert_load", None)
        block._fsdp2_expert_load = counts if previous is None else previous + counts


def updated_bias(counts: torch.Tensor, bias: torch.Tensor, rate: float) -> torch.Tensor:
    """Megatron's get_updated_expert_bias on counts already summed over the ranks: [layers, E] each."""
    mean = counts.sum(dim=-1, keepdim=True) / counts.shape[-1]
    return bias + torch.sign(mean - counts) * rate


def update_expert_bias(blocks: List[nn.Module], rate: float, sum_over_ranks: Callable[[torch.Tensor], None]) -> bool:
    """Once per step: move every layer's expert bias by the step's loads, then reset the loads. False if no load."""
    loads = [getattr(b, "_fsdp2_expert_load", None) for b in blocks]
    if not rate or not blocks or any(load is None for load in loads):
        return False
    biases = [expert_bias(b) for b in blocks]
    counts = torch.stack(loads).to(biases[0].device)
    sum_over_ranks(counts)
    new = updated_bias(counts, torch.stack([b.float() for b in biases]), rate)
    with torch.no_grad():
        for bias, value in zip(biases, new):
            bias.copy_(value)
    for block in blocks:
        block._fsdp2_expert_load = None
    return True
