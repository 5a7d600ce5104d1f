"""Learning-rate and weight-decay schedule, computed as Megatron's OptimizerParamScheduler.

Like Megatron, the schedule counts *samples*: each optimizer step advances it by the
global batch size, and warmup/decay lengths given in iterations are multiplied by it.
(This matters for inverse-square-root, whose value is not scale-free.) With a batch-size
ramp-up each step advances it by that iteration's global batch, as Megatron's
`opt_param_scheduler.step(increment=num_microbatches × micro × dp)`; a run given in
samples (train_samples) decays over them, as Megatron's sample-based branch does.

Parameter groups carry `wd_mult` (0 for biases and norms) and may override `max_lr`/`min_lr`;
a group marked `is_decoupled_lr` (the embedding and output layer with --decoupled-lr) takes
`decoupled_max_lr` / `decoupled_min_lr` of this schedule, so on resume those settings come
from the run's config like every other schedule setting, not from the checkpoint.
"""
import math
from dataclasses import dataclass
from typing import Optional

from fsdp2_core.config import ConfigError

STYLES = {"cosine": "cosine", "linear": "linear", "constant": "constant",
          "inverse_square_root": "inverse-square-root", "wsd": "WSD"}


@dataclass
class LRSchedule:
    max_lr: float
    min_lr: float
    init_lr: float
    warmup_steps: float
    decay_steps: float
    style: str                      # Megatron spelling: cosine, linear, constant, inverse-square-root, WSD
    start_wd: float
    end_wd: float
    wd_incr_steps: float
    wd_incr_style: str = "constant"
    wsd_decay_steps: Optional[float] = None
    wsd_decay_style: str = "exponential"
    num_steps: float = 0
    decoupled_max_lr: Optional[float] = None
    decoupled_min_lr: Optional[float] = None  # None: min_lr (Megatron's default for the decoupled group)

    def lr(self, max_lr: Optional[float] = None, min_lr: Optional[float] = None) -> float:
        max_lr = self.max_lr if max_lr is None else max_lr
        min_lr = self.min_lr if min_lr is None else min_lr
        n = self.num_steps
        if self.warmup_steps > 0 and n <= self.warmup_steps:
            return self.init_lr + (max_lr - self.init_lr) * float(n) / float(self.warmup_steps)
        if self.style == "constant":
            return max_lr
        if n > self.decay_steps:
            return min_lr
        if self.style == "inverse-square-root":
            return max(min_lr, max_lr * max(self.warmup_steps, 1) ** 0.5 / max(n, 1) ** 0.5)
        ratio = float(n - self.warmup_steps) / float(self.decay_steps - self.warmup_steps)
        if self.style == "linear":
            coeff = 1.0 - ratio
        elif self.style == "cosine":
            coeff = 0.5 * (math.cos(math.pi * ratio) + 1.0)
        elif self.style == "WSD":
            coeff = self._wsd_coeff(n)
        else:
            raise ConfigError(f"unknown LR decay style {self.style}")
        return min_lr + coeff * (max_lr - min_lr)

    def _wsd_coeff(self, n: float) -> float:
        anneal_start = self.decay_steps - self.wsd_decay_steps
        if n <= anneal_start:
            return 1.0
        r = float(n - anneal_start) / float(self.wsd_decay_steps)
        return {"linear": lambda: 1.0 - r, "cosine": lambda: 0.5 * (math.cos(math.pi * r) + 1.0),
                "exponential": lambda: 2.0 * math.pow(0.5, r) - 1.0,
                "minus_sqrt": lambda: 1.0 - math.sqrt(r)}[self.wsd_decay_style]()

    def wd(self) -> float:
        if self.num_steps > self.wd_incr_steps or self.wd_incr_style == "constant":
            return self.end_wd
        ratio = float(self.num_steps) / float(self.wd_incr_steps)
        coeff = ratio if self.wd_incr_style == "linear" else 0.5 * (math.cos(math.pi * (1 - ratio)) + 1.0)
        return self.start_wd + coeff * (self.end_wd - self.start_wd)

    def group_lr(self, group: dict) -> float:
        """The learning rate of one parameter group (megatron-core's get_lr(param_group))."""
        if group.get("is_decoupled_lr") and self.decoupled_max_lr is not None:
            low = self.min_lr if self.decoupled_min_lr is None else self.decoupled_min_lr
            return self.lr(self.decoupled_max_lr, low)
        return self.lr(group.get("max_lr"), group.get("min_lr"))

    def apply(self, optimizer) -> None:
        """Write lr and weight decay into every parameter group."""
        wd = self.wd()
        for group in optimizer.param_groups:
            group["lr"] = self.group_lr(group)
            group["weight_decay"] = wd * group.get("wd_mult", 1.0)

    def step(self, optimizer, increment: int) -> None:
        self.num_steps += increment
        self.apply(optimizer)

    def state_dict(self) -> dict:
        return {"num_steps": self.num_steps}

    def load_state_dict(self, state: dict) -> None:
        self.num_steps = state["num_steps"]


def build_schedule(training_cfg, train_iters: int, global_batch: int) -> LRSchedule:
    """From the training config, in samples (iterations × global batch, the batch after any ramp-up), as Megatron
    does; a run given in train_samples decays over them and increments weight decay over them."""
    t = training_cfg
    run_samples = t.train_samples or train_iters * global_batch
    decay_steps = t.lr_decay_steps * global_batch if t.lr_decay_steps else run_samples
    if t.lr_warmup_steps is not None:
        warmup = t.lr_warmup_steps * global_batch
    else:
        warmup = t.warmup_ratio * decay_steps
    if warmup >= decay_steps:
        raise ConfigError(f"LR warmup ({warmup / global_batch:g} steps) must be shorter than the decay "
                          f"({decay_steps / global_batch:g} steps); shorten lr_warmup_steps/warmup_ratio")
    style = STYLES[t.lr_scheduler_type]
    wsd = None
    if style == "WSD":
        if t.lr_wsd_decay_steps is None:
            raise ConfigError("lr_scheduler_type wsd needs lr_wsd_decay_steps (--lr-wsd-decay-iters)")
        wsd = t.lr_wsd_decay_steps * global_batch
    if t.weight_decay_incr_style == "constant":
        start_wd = end_wd = t.weight_decay
    else:
        start_wd, end_wd = t.start_weight_decay, t.end_weight_decay
    return LRSchedule(max_lr=t.lr, min_lr=t.min_lr, init_lr=t.lr_warmup_init, warmup_steps=warmup,
                      decay_steps=decay_steps, style=style, start_wd=start_wd, end_wd=end_wd,
                      wd_incr_steps=run_samples, wd_incr_style=t.weight_decay_incr_style,
                      wsd_decay_steps=wsd, wsd_decay_style=t.lr_wsd_decay_style,
                      decoupled_max_lr=t.decoupled_lr, decoupled_min_lr=t.decoupled_min_lr)
