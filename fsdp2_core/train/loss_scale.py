"""fp16 loss scaling, as Megatron does it (megatron.core.optimizer.grad_scaler).

fp16 gradients underflow: the loss is multiplied by a scale before backward and the gradients divided by it
before clipping and the update. An iteration whose gradients overflow (Inf/NaN anywhere, on any rank) is
skipped, and the scale adapts:

    static (training.loss_scale, Megatron --loss-scale S): the scale stays S; overflowing iterations are still
        skipped (Megatron's ConstantGradScaler under its mixed-precision optimizer).
    dynamic (fp16 without --loss-scale): start at initial_loss_scale; each overflow spends one unit of
        hysteresis, and once none is left the scale halves (not below min_loss_scale); after loss_scale_window
        iterations in a row without overflow the scale doubles and the hysteresis is restored.

bf16 and fp32 need no scaling (the same range as fp32): no scaler, unless --loss-scale asks for a static one,
which Megatron honours in bf16 too.
"""
from dataclasses import dataclass
from typing import Iterable, Optional

import torch


@dataclass
class LossScaler:
    """Megatron's ConstantGradScaler (dynamic=False) and DynamicGradScaler (growth ×2, backoff ×0.5)."""
    scale: float
    dynamic: bool = False
    min_scale: float = 1.0
    growth_interval: int = 1000
    hysteresis: int = 2
    growth_tracker: int = 0
    hysteresis_tracker: int = 2

    def __post_init__(self):
        self.hysteresis_tracker = self.hysteresis

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale

    def unscale(self, grads: Iterable[torch.Tensor]) -> None:
        """Divide the gradients by the scale (in place), as Megatron multiplies them by its float32 inverse."""
        inverse = float(torch.tensor(self.scale, dtype=torch.float64).reciprocal().float())
        for g in grads:
            g.mul_(inverse)

    def update(self, found_inf: bool) -> None:
        if not self.dynamic:
            return
        if found_inf:
            self.growth_tracker = 0
            self.hysteresis_tracker -= 1
            if self.hysteresis_tracker <= 0:
                self.scale = max(self.scale * 0.5, self.min_scale)
        else:
            self.growth_tracker += 1
            if self.growth_tracker == self.growth_interval:
                self.growth_tracker = 0
                self.hysteresis_tracker = self.hysteresis
                self.scale = self.scale * 2.0

    def state_dict(self) -> dict:
        """What a resume needs (kept in the checkpoint's training state)."""
        return {"scale": self.scale, "growth_tracker": self.growth_tracker,
                "hysteresis_tracker": self.hysteresis_tracker} if self.dynamic else {}

    def load_state_dict(self, state: dict) -> None:
        if self.dynamic and state:
            self.scale = float(state["scale"])
            self.growth_tracker = int(state["growth_tracker"])
            self.hysteresis_tracker = int(state["hysteresis_tracker"])


def build_loss_scaler(param_dtype: str, t) -> Optional[LossScaler]:
    """The scaler training.* asks for: static when loss_scale is set, dynamic for fp16, else none."""
    if t.loss_scale:
        return LossScaler(float(t.loss_scale))
    if param_dtype != "fp16":
        return None
    return LossScaler(float(t.initial_loss_scale), dynamic=True, min_scale=float(t.min_loss_scale),
                      growth_interval=int(t.loss_scale_window), hysteresis=int(t.hysteresis))
