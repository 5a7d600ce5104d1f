"""Flags that shape the schedule beyond one learning rate and one batch size: --decoupled-min-lr (with
--decoupled-lr), --rampup-batch-size and --step-batch-size-schedule. Group handlers of groups.py.

--rampup-batch-size follows Megatron-LM 0.16 (megatron-core's RampupBatchsizeNumMicroBatchesCalculator);
--step-batch-size-schedule follows Megatron-LM's later StepBatchsizeNumMicroBatchesCalculator, which reads the
thresholds as tokens (it is handed --seq-length) and refuses --global-batch-size beside it.
"""
from typing import Any, Dict

from fsdp2_core.config import ConfigError
from fsdp2_core.config.batch_schedule import StepBatchSchedule

from .registry import rule_for
from .report import ReportLine

ITERATION_RAMP_WARNING = (
    "WARNING: --rampup-batch-size with --train-iters: Megatron-LM 0.16 refuses this pair ('expected no batch-size "
    "rampup for iteration-based training'). Here the run takes --train-iters iterations, each with the ramp's "
    "current global batch, and the LR schedule's iteration counts are × the global batch after the ramp (what "
    "Megatron-LM computes for iteration-based --step-batch-size-schedule runs since it dropped that check). For "
    "Megatron's own sample-based ramp-up give --train-samples (and --lr-*-samples) instead")


def _line(t, flag, text=None, status="mapped"):
    t.lines.append(ReportLine(flag, t.given[flag], status, text or rule_for(flag).target))


def decoupled_min_lr(t) -> None:
    """Megatron applies --decoupled-min-lr only together with --decoupled-lr."""
    g = t.given
    if "--decoupled-min-lr" not in g:
        return
    if "--decoupled-lr" in g:
        t.set("decoupled_min_lr", g["--decoupled-min-lr"])
        t.origin["decoupled_min_lr"] = "--decoupled-min-lr"
        _line(t, "--decoupled-min-lr")
    else:
        _line(t, "--decoupled-min-lr", "without --decoupled-lr Megatron gives no parameter a separate learning "
                                       "rate, so this has no effect", status="absorbed")


def derive_batch_schedule(t, values: Dict[str, Any], dialect: str) -> None:
    """The global batch as a function of consumed samples; run after the batch and step arithmetic."""
    g = t.given
    ramp, schedule = g.get("--rampup-batch-size"), g.get("--step-batch-size-schedule")
    if ramp is None and schedule is None:
        return
    if ramp is not None and schedule is not None:
        raise ConfigError("--rampup-batch-size and --step-batch-size-schedule exclude each other; keep one "
                          "(Megatron-LM with --step-batch-size-schedule ignores --rampup-batch-size)")
    # Every sample holds --seq-length tokens, so token counts are sample counts whatever the batch: the LR
    # schedule (which advances by consumed samples) and a --train-tokens stop beside --train-samples stay exact.
    # Only --train-tokens as the run's length needs a constant batch per step.
    if "--train-tokens" in g and not values.get("train_samples"):
        raise ConfigError("--train-tokens as the run's length counts steps of a constant global batch; with a "
                          "batch-size ramp-up give the run in samples (--train-samples; --train-tokens beside it "
                          "stops the run by tokens, as Megatron-DeepSpeed's loop does)")
    if ramp is not None:
        values["rampup_batch_size"] = list(ramp)
        t.origin["rampup_batch_size"] = "--rampup-batch-size"
        _line(t, "--rampup-batch-size", f"training.rampup_batch_size = {list(ramp)}: from {ramp[0]} by {ramp[1]} over "
                                        f"{ramp[2]} samples to the global batch {values.get('global_batch_size')}")
        if "--train-iters" in g:
            t.notes.append(ITERATION_RAMP_WARNING)
        return
    _step_schedule(t, values, schedule)


def _step_schedule(t, values, text) -> None:
    g, seq = t.given, values.get("cutoff_len")
    final = StepBatchSchedule(text, seq).final  # refuses a malformed schedule, naming it
    values["step_batch_size_schedule"] = text
    t.origin["step_batch_size_schedule"] = "--step-batch-size-schedule"
    _line(t, "--step-batch-size-schedule", f"training.step_batch_size_schedule (thresholds in tokens ÷ --seq-length "
                                           f"{seq} = samples), ending at global batch {final}")
    if "--global-batch-size" in g:
        if g["--global-batch-size"] != final:
            raise ConfigError(f"--global-batch-size {g['--global-batch-size']} and --step-batch-size-schedule "
                              f"(ending at {final}) disagree; Megatron-LM refuses the two together: drop "
                              "--global-batch-size")
        t.notes.append(f"--global-batch-size {final} beside --step-batch-size-schedule: Megatron-LM refuses the two "
                       "together; accepted here because it equals the schedule's last batch (evaluation and the LR "
                       "schedule's iteration counts use it)")
    else:
        t.notes.append("--step-batch-size-schedule without --global-batch-size: as in Megatron-LM, evaluation and the "
                       "LR schedule's iteration counts use the default global batch (micro batch × data-parallel "
                       "size); training steps take the schedule's batch")

