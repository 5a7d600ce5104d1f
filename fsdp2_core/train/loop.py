"""The training loop, Megatron's `train()` in a page.

    while iteration < train_iters:
        micro-batches for this iteration from the consumed samples (ramp-up: the current global batch)
        run one iteration (grad-accumulated), advance consumed samples by its global batch
        log every logging_steps, evaluate every eval_interval, let checkpoint hooks save
    evaluate valid/test at the end

As Megatron, a checkpoint is saved when the number of micro-batches changes (a ramp-up step).
"""
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

from fsdp2_core.errors import UserError

from .evaluate import evaluate
from .logging_line import eval_line, iteration_line
from .metrics import throughput
from .optimizer import logged_lr
from .step import RunContext, train_step

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What a resume needs from the loop; `consumed_train_samples` positions the data in O(1)."""
    iteration: int = 0
    consumed_train_samples: int = 0
    skipped_iters: int = 0
    nan_iters: int = 0
    overflow_iters: int = 0               # of the skipped: fp16 overflows the dynamic loss scale backed off from
    loss_scale: Optional[dict] = None     # the dynamic fp16 loss scaler's state (loss_scale.LossScaler)

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def load_state_dict(self, d: dict) -> None:
        for k, v in d.items():
            setattr(self, k, v)


class TrainingDiverged(UserError, RuntimeError):
    """Too many iterations had a NaN/Inf loss or gradient norm."""


def check_skipped(state: TrainState, limit: int) -> None:
    """With check_for_nan_in_loss_and_grad, a skipped update (NaN/Inf loss or gradient) is tolerated up to
    training.max_skipped_iterations, counted over the whole run (resumes included); past it the run stops."""
    if state.skipped_iters - state.overflow_iters > limit:
        raise TrainingDiverged(
            f"iteration {state.iteration}: {state.skipped_iters - state.overflow_iters} iterations skipped for a "
            "NaN/Inf loss or gradient "
            f"norm ({state.nan_iters} with a NaN/Inf loss), more than the limit of {limit} "
            "(training.max_skipped_iterations). The run is diverging: lower the learning rate or check the data, then "
            "resume from the last checkpoint (resume_from_checkpoint: latest); check_for_nan_in_loss_and_grad: false "
            "skips such iterations without limit")


@dataclass
class Interval:
    """Sums over one logging interval, reset after each line (as Megatron's total_loss_dict)."""
    loss: float = 0.0
    extra: Dict[str, float] = field(default_factory=dict)  # router and MTP losses by Megatron's names
    advanced: int = 0
    skipped: int = 0
    nan: int = 0
    seconds: float = 0.0
    iters: int = 0
    samples: int = 0


@dataclass
class Data:
    train: object                 # iterator of this rank's micro-batches
    valid: Optional[object] = None  # an iterator, or [(group name, iterator)] for named validation groups
    test: Optional[object] = None   # the same

    def close(self) -> None:
        """Close the iterators now (their loader workers exit), not whenever they are collected."""
        for batches in (self.train, self.valid, self.test):
            for each in (batches if isinstance(batches, list) else [(None, batches)]):
                if hasattr(each[1], "close"):
                    each[1].close()


@dataclass
class History:
    losses: List[float] = field(default_factory=list)
    grad_norms: List[float] = field(default_factory=list)
    lrs: List[float] = field(default_factory=list)
    global_batches: List[int] = field(default_factory=list)
    valid: List[Dict] = field(default_factory=list)  # {"iteration", "loss"} (and "group" for a named group)
    test_loss: Optional[object] = None  # a float, or {group name: loss} for named test groups
    throughput: Dict = field(default_factory=dict)
    extra_losses: List[Dict[str, float]] = field(default_factory=list)  # per logged line: router / MTP losses


def _metric_names(extra: Dict[str, float]) -> Dict[str, float]:
    """Megatron's names as metric keys ("mtp_1 loss" -> "mtp_1_loss")."""
    return {name.replace(" ", "_"): value for name, value in extra.items()}


def train(ctx: RunContext, state: TrainState, train_iters: int, data: Data, hooks, sink, profiler,
          flops_token: float, peak_tflops: Optional[float], print_fn: Callable[[str], None]) -> History:
    t = ctx.cfg.training
    seq = ctx.cfg.data.cutoff_len
    world = ctx.mesh.dims.world_size
    hist, iv = History(), Interval()
    stop = False
    ctx.device.reset_peak_memory()
    micro_now = ctx.micro_batches(state.consumed_train_samples)
    while state.iteration < train_iters and not stop and not _tokens_reached(t, state, seq):
        micro_before, micro_now = micro_now, ctx.micro_batches(state.consumed_train_samples)
        if micro_now != micro_before and state.iteration != 0:
            _batch_size_changed(hooks, ctx, state)
        profiler.step_begin(state.iteration)
        ctx.device.synchronize()
        start = time.perf_counter()
        batches = [next(data.train) for _ in range(micro_now)]
        r = train_step(ctx, batches)
        ctx.device.synchronize()
        iv.seconds += time.perf_counter() - start
        profiler.step_end(state.iteration, last=state.iteration + 1 == train_iters)
        batch = ctx.samples_per_step(micro_now)
        state.iteration += 1
        state.consumed_train_samples += batch
        iv.iters += 1
        iv.samples += batch
        iv.skipped += r.skipped
        iv.nan += r.nan
        state.skipped_iters += r.skipped
        state.nan_iters += r.nan
        state.overflow_iters += r.overflow
        if ctx.loss_scaler is not None and ctx.loss_scaler.dynamic:
            state.loss_scale = ctx.loss_scaler.state_dict()
        if not r.skipped:
            iv.loss += r.loss
            iv.advanced += 1
            for name, value in r.extra_losses.items():
                iv.extra[name] = iv.extra.get(name, 0.0) + value
        lr = logged_lr(ctx.optimizer)
        hist.losses.append(r.loss)
        hist.grad_norms.append(r.grad_norm)
        hist.lrs.append(lr)
        hist.global_batches.append(batch)

        if state.iteration % max(t.logging_steps, 1) == 0:
            per_iter = iv.seconds / iv.iters
            tp = throughput(iv.samples / iv.iters * seq, per_iter, world, flops_token, peak_tflops)
            loss = iv.loss / max(iv.advanced, 1)
            extra = {name: value / max(iv.advanced, 1) for name, value in iv.extra.items()}
            print_fn(iteration_line(state.iteration, train_iters, state.consumed_train_samples, per_iter * 1000.0,
                                    lr, batch, loss, ctx.loss_scaler.scale if ctx.loss_scaler else 1.0,
                                    r.grad_norm, iv.skipped, iv.nan,
                                    tp["tokens_per_s_per_device"], tp["tflops_per_device"], tp["mfu"],
                                    ctx.device.peak_memory_gb(), extra_losses=extra))
            hist.extra_losses.append(extra)
            sink.write("train", state.iteration, {"lm_loss": loss, **_metric_names(extra), "learning_rate": lr,
                                                  "grad_norm": r.grad_norm,
                                                  "consumed_samples": state.consumed_train_samples,
                                                  "global_batch_size": batch,
                                                  "iteration_ms": per_iter * 1000.0, "skipped": iv.skipped,
                                                  "nan": iv.nan, **tp, "peak_memory_gb": ctx.device.peak_memory_gb()})
            hist.throughput = tp
            iv = Interval()

        if t.eval_interval and data.valid is not None and state.iteration % t.eval_interval == 0:
            _eval(ctx, data.valid, f"iteration {state.iteration}", "valid", state, hist, sink, print_fn)
        if t.check_for_nan_in_loss_and_grad and r.skipped:
            check_skipped(state, t.max_skipped_iterations)
        stop = hooks.after_step(state, ctx.model, ctx.optimizer, ctx.schedule)
        if t.exit_interval and state.iteration % t.exit_interval == 0:
            stop = True

    profiler.stop(state.iteration)
    if t.eval_interval and data.valid is not None and state.iteration % t.eval_interval != 0:
        _eval(ctx, data.valid, f"iteration {state.iteration}", "valid", state, hist, sink, print_fn)
    if data.test is not None:
        hist.test_loss = _eval(ctx, data.test, f"iteration {state.iteration} on test set", "test",
                               state, hist, sink, print_fn)
    hooks.finish(state, ctx.model, ctx.optimizer, ctx.schedule)
    return hist


def _tokens_reached(t, state, seq: int) -> bool:
    """Megatron-DeepSpeed's loop condition: consumed_train_tokens < train_tokens, tokens = samples × seq length."""
    return t.train_tokens is not None and state.consumed_train_samples * seq >= t.train_tokens


def _batch_size_changed(hooks, ctx, state) -> None:
    """Megatron saves a checkpoint before the first iteration with a new number of micro-batches."""
    save = getattr(hooks, "batch_size_changed", None)
    if save is not None:
        save(state, ctx.model, ctx.optimizer, ctx.schedule)


def _eval(ctx, batches, prefix, kind, state, hist, sink, print_fn):
    """Evaluate one split: its loss, or {name: loss} for named groups, each evaluated on its own in order (as
    bigscience's / bigcode's training.py does with --valid-weighted-split-paths)."""
    if not isinstance(batches, list):
        return _eval_one(ctx, batches, prefix, kind, None, state, hist, sink, print_fn)
    return {name: _eval_one(ctx, each, prefix, kind, name, state, hist, sink, print_fn) for name, each in batches}


def _eval_one(ctx, batches, prefix, kind, group, state, hist, sink, print_fn) -> float:
    loss = evaluate(ctx, batches, ctx.cfg.training.eval_iters)
    print_fn(eval_line(prefix, loss, group))
    sink.write(kind if group is None else f"{kind}/{group}", state.iteration, {"lm_loss": loss})
    if kind == "valid":
        hist.valid.append({"iteration": state.iteration, "loss": loss, **({} if group is None else {"group": group})})
    return loss
