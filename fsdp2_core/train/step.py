"""One training iteration: accumulate micro-batches, reduce the loss, clip, step.

Normalisation (the gradient FSDP averages over the data-parallel ranks):
  calculate_per_token_loss: each micro-batch contributes sum(token losses) × dp / N,
      N the masked-token count of the whole global batch (all-reduced first), so the
      gradient is that of sum over the global batch / N.
  otherwise (Megatron's default): each micro-batch contributes its own token mean /
      accumulation steps, so the gradient is the mean over micro-batches and ranks.
Context-parallel ranks share samples: every cp rank gets the same micro-batches, the
loss (loss.py) returns the whole sample's sums on each of them, and FSDP's average over
dp × cp ranks is then the data-parallel average.
With a batch-size ramp-up the accumulation steps are those of the iteration's global batch (Megatron
divides by the current number of micro-batches), and the LR schedule advances by that batch.
fp16 loss scaling (loss_scale.py): the loss is multiplied by the scale before backward, the gradients divided by
it before the norm and clipping; an overflow skips the update and adjusts the scale.
MoE: the router auxiliary loss of each micro-batch is added / accumulation steps
(averaged over micro-batches and data-parallel ranks, as Megatron does); the reported
loss is the language-model loss alone, the auxiliary loss is reported beside it.
MoE: the router losses of each micro-batch are added / accumulation steps (averaged over
micro-batches and data-parallel ranks, as Megatron does); the reported loss is the
language-model loss alone, the router losses are reported beside it, each without its
coefficient (Megatron's load_balancing_loss, seq_load_balancing_loss, z_loss). After the
backward, the expert bias moves by the step's expert loads (`moe_router_bias_update_rate`,
Megatron's finalize_model_grads does it there too, whether or not the update is skipped).
MTP: depth k's loss (its token mean, or its sum over the global token count with
calculate_per_token_loss, as the language-model loss) is added with weight
mtp_loss_scaling_factor / D, and reported as "mtp_k loss" (the token mean).
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist

from fsdp2_core.models.router_losses import update_expert_bias

from .loss_scale import LossScaler
from .optimizer import clip_gradients, global_grad_norm, is_finite


@dataclass
class RunContext:
    cfg: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any
    mesh: Any
    device: Any
    grad_accum: int               # micro-batches of the global batch after any ramp-up (evaluation uses it)
    global_batch: int
    ignored_params: Optional[List[torch.nn.Parameter]] = None
    batch_schedule: Optional[Any] = None  # fsdp2_core.config.batch_schedule.BatchSchedule; None: constant

    def micro_batches(self, consumed: int) -> int:
        """Micro-batches per rank of the iteration that starts at `consumed` samples."""
        if self.batch_schedule is None:
            return self.grad_accum
        return self.batch_schedule.micro_batches(consumed, self.cfg.training.per_device_train_batch_size,
                                                 self.mesh.dims.dp)

    def samples_per_step(self, micro_batches: int) -> int:
        """Megatron's increment: number of micro-batches × micro batch × data-parallel size."""
        return micro_batches * self.cfg.training.per_device_train_batch_size * self.mesh.dims.dp
    loss_scaler: Optional[LossScaler] = None


@dataclass
class StepResult:
    loss: float
    grad_norm: float
    skipped: bool
    nan: bool
    tokens: int
    aux_loss: float = 0.0
    overflow: bool = False  # skipped for an fp16 overflow the dynamic loss scale backed off from
    extra_losses: Dict[str, float] = field(default_factory=dict)  # router losses and MTP losses, Megatron's names


def _to_device(batch: Dict[str, torch.Tensor], device) -> Dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in batch.items()}


def forward_sums(ctx: RunContext, batch: Dict[str, torch.Tensor]):
    """(sum of masked token losses, masked token count) of one micro-batch."""
    cu = batch.get("cu_seqlens")  # packed rows: their longest sample, read while the lengths are on the host
    max_seqlen = int((cu[1:] - cu[:-1]).max()) if cu is not None and len(cu) > 1 else None
    b = _to_device(batch, ctx.device.torch_device)
    mask = b.get("attention_mask")
    if mask is not None and mask.dim() == 4:
        mask = ~mask.bool()  # Megatron marks masked-out positions True; HF wants allowed positions True
    return ctx.model.lm_loss(b["tokens"], b["labels"], b["loss_mask"], position_ids=b.get("position_ids"),
                             attention_mask=mask, chunk_size=ctx.cfg.training.chunk_loss_size,
                             z_loss_coeff=ctx.cfg.training.z_loss_coeff, cu_seqlens=b.get("cu_seqlens"),
                             max_seqlen=max_seqlen)


def _dp_sum(ctx, t: torch.Tensor) -> torch.Tensor:
    if ctx.mesh.dims.dp > 1:
        dist.all_reduce(t, group=ctx.mesh.dp_group)
    return t


def _sync_ignored_grads(ctx) -> None:
    """Parameters left out of FSDP still need their gradients averaged over data (and context) parallelism."""
    ranks = ctx.mesh.dims.dp * ctx.mesh.dims.cp
    if not ctx.ignored_params or ranks == 1:
        return
    for p in ctx.ignored_params:
        if p.grad is not None:
            dist.all_reduce(p.grad, group=ctx.mesh.dp_cp_group)
            p.grad.div_(ranks)


def train_step(ctx: RunContext, micro_batches: List[Dict[str, torch.Tensor]]) -> StepResult:
    """One iteration. The host waits on the device once: for the gradient norm, which decides the skip (read
    together with the losses); everything before it stays on the device."""
    t = ctx.cfg.training
    dp = ctx.mesh.dims.dp
    per_token = t.calculate_per_token_loss
    local_tokens = sum(float(torch.as_tensor(mb["loss_mask"]).sum()) for mb in micro_batches)  # host-side data
    total_tokens = float(_dp_sum(ctx, torch.tensor(local_tokens, dtype=torch.float64)))
    reported = torch.zeros(2, dtype=torch.float64, device=ctx.device.torch_device)  # (lm loss, aux loss)
    extra = ExtraLosses()
    grad_sync = getattr(ctx.model, "_fsdp2_grad_sync", None)  # replicated weights (parallel/replicate.py)
    for i, mb in enumerate(micro_batches):
        if grad_sync is not None:
            grad_sync.sync = i == len(micro_batches) - 1  # reduce in the last micro-batch's backward only
        s, n = forward_sums(ctx, mb)
        if per_token:
            loss = s * (dp / max(total_tokens, 1.0))
            reported[0] += s.detach()
        else:
            mean = s / n.clamp(min=1.0)
            loss = mean / len(micro_batches)
            reported[0] += mean.detach()
        aux = getattr(ctx.model, "last_aux_loss", None)
        if aux is not None:
            loss = loss + aux / len(micro_batches)
            reported[1] += aux.detach()
        extra.add_router(getattr(ctx.model, "last_router_losses", None))  # Megatron logs these before MTP's
        loss = loss + _mtp_loss(ctx, per_token, total_tokens, len(micro_batches), extra)
        (ctx.loss_scaler.scale_loss(loss) if ctx.loss_scaler else loss).backward()
    if grad_sync is not None:
        grad_sync.finish()
    _sync_ignored_grads(ctx)
    _update_expert_bias(ctx)
    reported = _dp_sum(ctx, reported)

    params = [p for p in ctx.model.parameters() if p.grad is not None]
    scaler = ctx.loss_scaler
    if scaler is not None:
        scaler.unscale(p.grad for p in params)
    # all-reduced: every rank sees the same overflow
    norm = global_grad_norm(params, replicated=grad_sync is not None).to(reported.device, torch.float64).reshape(1)
    lm_sum, aux_sum, grad_norm = torch.cat([reported, norm]).tolist()  # the step's one device-to-host read
    loss_value = lm_sum / (max(total_tokens, 1.0) if per_token else len(micro_batches) * dp)
    aux_value = aux_sum / (len(micro_batches) * dp)
    skipped = not is_finite(grad_norm)
    backed_off = scaler is not None and scaler.dynamic and skipped and scaler.scale > scaler.min_scale
    if scaler is not None:
        scaler.update(skipped)
    if not skipped:  # Megatron skips the update (and the scheduler) when gradients overflow
        clip_gradients(params, t.max_grad_norm, grad_norm)
        ctx.optimizer.step()
        ctx.schedule.step(ctx.optimizer, ctx.samples_per_step(len(micro_batches)))
    ctx.optimizer.zero_grad(set_to_none=True)
    return StepResult(loss_value, grad_norm, skipped, not is_finite(loss_value), int(total_tokens), aux_value,
                      backed_off, extra.averaged(ctx, len(micro_batches)))


class ExtraLosses:
    """The router and MTP losses of a step's micro-batches, summed by name in the order they appear."""

    def __init__(self):
        self.sums: Dict[str, float] = {}

    def add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value

    def add_router(self, logged: Optional[Dict[str, float]]) -> None:
        for name, value in (logged or {}).items():
            self.add(name, value)

    def averaged(self, ctx, micro_batches: int) -> Dict[str, float]:
        """Mean over the micro-batches and the data-parallel ranks (every rank has the same names)."""
        if not self.sums:
            return {}
        values = _dp_sum(ctx, torch.tensor(list(self.sums.values()), dtype=torch.float64))
        scale = micro_batches * ctx.mesh.dims.dp
        return {name: float(v) / scale for name, v in zip(self.sums, values)}


def _mtp_loss(ctx, per_token: bool, total_tokens: float, micro_batches: int, extra: ExtraLosses):
    """mtp_loss_scaling_factor / D · Σ_k depth k's loss, normalised as the language-model loss is."""
    sums = getattr(ctx.model, "last_mtp_sums", None)
    if not sums:
        return 0.0
    weight = ctx.cfg.model.mtp_loss_scaling_factor / len(sums)
    loss = 0.0
    for k, (s, n) in enumerate(sums, start=1):
        mean = s / n.clamp(min=1.0)
        extra.add(f"mtp_{k} loss", float(mean.detach()))
        loss = loss + weight * (s * (ctx.mesh.dims.dp / max(total_tokens, 1.0)) if per_token else mean / micro_batches)
    return loss


def _update_expert_bias(ctx) -> None:
    """Aux-loss-free balancing: the step's expert loads, summed over the data- and context-parallel ranks."""
    rate = ctx.cfg.model.moe_router_bias_update_rate
    blocks = getattr(ctx.model, "_fsdp2_moe_blocks", None)
    if not rate or not blocks:
        return
    ranks = ctx.mesh.dims.dp * ctx.mesh.dims.cp

    def sum_over_ranks(counts):
        if ranks > 1:
            dist.all_reduce(counts, group=ctx.mesh.dp_cp_group)

    update_expert_bias(blocks, rate, sum_over_ranks)
