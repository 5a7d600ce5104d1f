"""The LR / weight-decay schedule equals megatron-core's OptimizerParamScheduler, step for step."""
import warnings

import pytest

from fsdp2_core.config import build_config
from fsdp2_core.train.lr_schedule import build_schedule

warnings.filterwarnings("ignore", category=UserWarning)
sched_mod = pytest.importorskip("megatron.core.optimizer_param_scheduler")

ITERS, GBS = 100, 8


class _Opt:
    def __init__(self):
        self.param_groups = [{"wd_mult": 1.0}, {"wd_mult": 0.0}]


CASES = [
    dict(lr_scheduler_type="cosine", lr_warmup_steps=10),
    dict(lr_scheduler_type="cosine", warmup_ratio=0.05, lr_decay_steps=80),      # decay ends early: min_lr after
    dict(lr_scheduler_type="linear", lr_warmup_steps=7, lr_warmup_init=1e-5),
    dict(lr_scheduler_type="constant", lr_warmup_steps=10),
    dict(lr_scheduler_type="inverse_square_root", lr_warmup_steps=10),
    dict(lr_scheduler_type="inverse_square_root", warmup_ratio=0.0),              # not scale-free: samples matter
    dict(lr_scheduler_type="wsd", lr_warmup_steps=5, lr_wsd_decay_steps=20, lr_wsd_decay_style="exponential"),
    dict(lr_scheduler_type="wsd", lr_warmup_steps=5, lr_wsd_decay_steps=30, lr_wsd_decay_style="linear"),
    dict(lr_scheduler_type="wsd", warmup_ratio=0.0, lr_wsd_decay_steps=30, lr_wsd_decay_style="cosine"),
    dict(lr_scheduler_type="wsd", lr_warmup_steps=5, lr_wsd_decay_steps=50, lr_wsd_decay_style="minus_sqrt"),
    dict(lr_scheduler_type="cosine", lr_warmup_steps=10, weight_decay_incr_style="linear",
         start_weight_decay=0.01, end_weight_decay=0.1),
    dict(lr_scheduler_type="linear", lr_warmup_steps=3, weight_decay_incr_style="cosine",
         start_weight_decay=0.0, end_weight_decay=0.05),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_schedule_matches_megatron(case):
    values = {"architecture": {"model_type": "llama"}, "output_dir": "/tmp/x", "max_steps": ITERS,
              "lr": 3e-4, "min_lr": 3e-5, "weight_decay": 0.1, "warmup_ratio": 0.0, **case}
    t = build_config(values).training
    ours = build_schedule(t, ITERS, GBS)
    decay = (t.lr_decay_steps or ITERS) * GBS
    warmup = t.lr_warmup_steps * GBS if t.lr_warmup_steps is not None else t.warmup_ratio * decay
    spelled = {"inverse_square_root": "inverse-square-root", "wsd": "WSD"}
    megatron_style = spelled.get(t.lr_scheduler_type, t.lr_scheduler_type)
    mopt = _Opt()
    ref = sched_mod.OptimizerParamScheduler(
        mopt, init_lr=t.lr_warmup_init, max_lr=t.lr, min_lr=t.min_lr, lr_warmup_steps=warmup, lr_decay_steps=decay,
        lr_decay_style=megatron_style, start_wd=ours.start_wd, end_wd=ours.end_wd, wd_incr_steps=ITERS * GBS,
        wd_incr_style=t.weight_decay_incr_style,
        wsd_decay_steps=(t.lr_wsd_decay_steps * GBS if t.lr_wsd_decay_steps else None),
        lr_wsd_decay_style=t.lr_wsd_decay_style)
    oopt = _Opt()
    ours.apply(oopt)
    for it in range(ITERS + 5):  # also past the end of the decay
        for mine, theirs in zip(oopt.param_groups, mopt.param_groups):
            assert mine["lr"] == pytest.approx(theirs["lr"], rel=1e-12, abs=1e-15), it
            assert mine["weight_decay"] == pytest.approx(theirs["weight_decay"], rel=1e-12, abs=1e-15), it
        ours.step(oopt, GBS)
        ref.step(GBS)
