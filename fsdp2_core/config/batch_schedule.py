"""Global batch size as a function of consumed samples: constant, Megatron's ramp-up, or a step schedule.

Megatron re-computes the number of micro-batches at the start of every iteration from the samples consumed
so far (`update_num_microbatches(consumed_train_samples)`); the iteration then takes that many micro-batches,
advances consumed samples and the LR schedule by the current global batch, and logs it. A resume needs
nothing but the consumed-samples count, which checkpoints already hold.

    ConstantBatch       --global-batch-size
    RampupBatch         --rampup-batch-size START INCR SAMPLES, as megatron-core 0.16.1's
                        RampupBatchsizeNumMicroBatchesCalculator.update and Megatron-LM 0.16.1's
                        training.update_train_iters compute it
    StepBatchSchedule   --step-batch-size-schedule "0:16 2.4B:320 ...", as Megatron-LM's
                        megatron/core/num_microbatches_calculator.py StepBatchsizeNumMicroBatchesCalculator
                        (_parse_numeric_value, _parse_schedule, _validate_schedule, _get_batch_size_for_samples)
                        and megatron/training/training.py update_train_iters compute it (commit 532ad926b4,
                        April 2026); thresholds count tokens: Megatron always passes --seq-length

Counting iterations jumps over stretches of constant batch size, so a ramp over billions of samples costs
one step per batch-size change, not one per iteration.
"""
import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

from .schema import ConfigError


class BatchSchedule:
    """Global batch after `consumed` samples; `final` is the batch once the schedule is done."""
    source = "training.global_batch_size"  # what to name in errors
    final: int

    def global_batch(self, consumed: int) -> int:
        raise NotImplementedError

    def next_change(self, consumed: int) -> Optional[int]:
        """The smallest consumed-samples count above `consumed` at which the batch may change; None: never."""
        return None

    def train_iters(self, train_samples: int) -> int:
        """Iterations of a run of `train_samples` samples (Megatron's update_train_iters)."""
        raise NotImplementedError

    def micro_batches(self, consumed: int, micro: int, dp: int) -> int:
        """Micro-batches per rank for the iteration starting at `consumed` (Megatron's consistency check)."""
        batch = self.global_batch(consumed)
        if batch % (micro * dp):
            raise ConfigError(
                f"{self.source}: the global batch {batch} (reached at {consumed} consumed samples) is not divisible "
                f"by micro batch {micro} × data-parallel size {dp}; choose batch sizes that are multiples of "
                f"{micro * dp}, or another micro batch or world size")
        return batch // (micro * dp)

    def stretches(self, consumed: int) -> Iterator[Tuple[int, int, Optional[int]]]:
        """(consumed, batch, next change) from `consumed` on, one per stretch of constant batch size."""
        while True:
            batch, change = self.global_batch(consumed), self.next_change(consumed)
            yield consumed, batch, change
            if change is None:
                return
            consumed += _steps_to_reach(change - consumed, batch) * batch

    def samples_after(self, iterations: int, consumed: int = 0) -> int:
        """Consumed samples after `iterations` more iterations from `consumed`."""
        for start, batch, change in self.stretches(consumed):
            steps = iterations if change is None else min(iterations, _steps_to_reach(change - start, batch))
            iterations -= steps
            if iterations == 0:
                return start + steps * batch
        raise AssertionError("unreachable: the last stretch takes every remaining iteration")

    def batches_reached(self, iterations: int, consumed: int = 0) -> List[Tuple[int, int]]:
        """(consumed samples, global batch) where each batch size of the next `iterations` iterations begins."""
        out, done = [], 0
        for start, batch, change in self.stretches(consumed):
            if done >= iterations:
                break
            out.append((start, batch))
            if change is None:
                break
            done += _steps_to_reach(change - start, batch)
        return out

    def check_divisible(self, micro: int, dp: int, iterations: int, consumed: int = 0) -> None:
        """Refuse, before training, a batch size the run would reach that micro × dp does not divide."""
        for start, batch in self.batches_reached(iterations, consumed):
            if batch % (micro * dp):
                raise ConfigError(
                    f"{self.source}: the global batch {batch}, which the run reaches at {start} consumed samples, is "
                    f"not divisible by micro batch {micro} × data-parallel size {dp}; choose batch sizes that are "
                    f"multiples of {micro * dp}, or another micro batch or world size")


def _steps_to_reach(distance: int, batch: int) -> int:
    """Iterations of `batch` samples until at least `distance` more samples are consumed."""
    return max(1, -(-distance // batch))


@dataclass
class ConstantBatch(BatchSchedule):
    final: int

    def global_batch(self, consumed: int) -> int:
        return self.final

    def train_iters(self, train_samples: int) -> int:
        return train_samples // self.final


class RampupBatch(BatchSchedule):
    """--rampup-batch-size START INCR SAMPLES up to global batch `final`, step for step as megatron-core 0.16.1."""
    source = "training.rampup_batch_size (--rampup-batch-size)"

    def __init__(self, start: int, increment: int, ramp_samples: int, final: int) -> None:
        if start <= 0 or increment <= 0 or ramp_samples <= 0:
            raise ConfigError(f"{self.source}: start batch {start}, increment {increment} and ramp-up samples "
                              f"{ramp_samples} must all be positive")
        diff = final - start
        if diff <= 0 or diff % increment:
            raise ConfigError(
                f"{self.source}: the ramp goes from {start} to the global batch {final} in steps of {increment}; "
                f"the global batch must be above the start batch and {final} - {start} a multiple of {increment} "
                "(with no ramp to make, drop --rampup-batch-size)")
        self.start, self.increment, self.ramp_samples, self.final = start, increment, ramp_samples, final
        self.per_increment = ramp_samples / (diff // increment)  # a float, as megatron-core divides

    def _step(self, consumed: int) -> int:
        return int(consumed / self.per_increment)

    def global_batch(self, consumed: int) -> int:
        if consumed > self.ramp_samples:
            return self.final
        return self.start + self._step(consumed) * self.increment

    def next_change(self, consumed: int) -> Optional[int]:
        if consumed > self.ramp_samples:
            return None
        step = self._step(consumed) + 1
        edge = max(consumed + 1, math.ceil(step * self.per_increment))  # then corrected to the float rule
        while edge - 1 > consumed and self._step(edge - 1) >= step:
            edge -= 1
        while self._step(edge) < step and edge <= self.ramp_samples:
            edge += 1
        return min(edge, self.ramp_samples + 1)

    def train_iters(self, train_samples: int) -> int:
        """Megatron-LM 0.16.1 update_train_iters: iterate while consumed <= ramp samples and <= train samples,
        then whole global batches of the rest (a partial last batch is dropped)."""
        limit = min(self.ramp_samples, train_samples)
        iterations, consumed = 0, 0
        for start, batch, change in self.stretches(0):
            if start > limit:
                break
            steps = (limit - start) // batch + 1
            if change is not None:
                steps = min(steps, _steps_to_reach(change - start, batch))
            iterations += steps
            consumed = start + steps * batch
            if change is None or consumed > limit:
                break
        if train_samples > consumed:
            iterations += (train_samples - consumed) // self.final
        return iterations


SUFFIXES = {"T": 1_000_000_000_000, "B": 1_000_000_000, "M": 1_000_000, "K": 1_000}


def parse_count(text: str) -> int:
    """'2.4B' -> 2400000000: K, M, B, T suffixes, computed as int(float(number) * multiplier) as Megatron does."""
    text = text.strip().upper()
    multiplier = SUFFIXES.get(text[-1:], 1)
    if text[-1:] in SUFFIXES:
        text = text[:-1]
    return int(float(text) * multiplier)


class StepBatchSchedule(BatchSchedule):
    """--step-batch-size-schedule "THRESHOLD:BS ...": the batch of the last threshold reached; thresholds in
    tokens become samples by integer division by the sequence length."""
    source = "training.step_batch_size_schedule (--step-batch-size-schedule)"

    def __init__(self, text: str, seq_length: Optional[int]) -> None:
        self.text = text
        self.entries = self._parse(text, seq_length)
        self.final = self.entries[-1][1]

    def _parse(self, text: str, seq_length: Optional[int]) -> List[Tuple[int, int]]:
        entries = []
        for entry in text.strip().replace(",", " ").split():
            threshold, sep, batch = entry.partition(":")
            try:
                if not sep:
                    raise ValueError
                pair = (parse_count(threshold), parse_count(batch))
            except (ValueError, OverflowError):
                raise ConfigError(f"{self.source}: entry {entry!r} of {text!r} is not THRESHOLD:BATCH_SIZE "
                                  "(numbers, optionally with K, M, B or T, e.g. '0:16 2.4B:320')") from None
            entries.append((pair[0] // seq_length if seq_length else pair[0], pair[1]))
        entries.sort(key=lambda e: e[0])
        self._check(text, entries)
        return entries

    def _check(self, text: str, entries: Sequence[Tuple[int, int]]) -> None:
        problem = None
        if not entries:
            problem = "it has no entry"
        elif entries[0][0] != 0:
            problem = f"the first threshold must be 0, got {entries[0][0]} samples"
        elif any(b[0] <= a[0] for a, b in zip(entries, entries[1:])):
            problem = "thresholds must be strictly increasing (after conversion to samples)"
        elif any(batch <= 0 for _, batch in entries):
            problem = "batch sizes must be positive"
        elif any(b[1] < a[1] for a, b in zip(entries, entries[1:])):
            problem = "batch sizes must not decrease (Megatron stops: 'Number of microbatches should not decrease')"
        if problem:
            raise ConfigError(f"{self.source}: {text!r}: {problem}")

    def global_batch(self, consumed: int) -> int:
        batch = self.entries[0][1]
        for threshold, size in self.entries:
            if consumed < threshold:
                break
            batch = size
        return batch

    def next_change(self, consumed: int) -> Optional[int]:
        return next((threshold for threshold, _ in self.entries if threshold > consumed), None)

    def train_iters(self, train_samples: int) -> int:
        """Megatron-LM's update_train_iters with a step schedule: iterate while consumed < train samples (the
        last iteration may pass it)."""
        iterations = 0
        for start, batch, change in self.stretches(0):
            if start >= train_samples:
                break
            end = train_samples if change is None else min(change, train_samples)
            iterations += _steps_to_reach(end - start, batch)
            if change is None or change >= train_samples:
                break
        return iterations


def build_batch_schedule(training, global_batch: Optional[int], seq_length: Optional[int]) -> BatchSchedule:
    """The run's schedule from the training config; `global_batch` is the batch after any ramp-up."""
    if training.step_batch_size_schedule:
        return StepBatchSchedule(training.step_batch_size_schedule, seq_length)
    if training.rampup_batch_size:
        start, increment, samples = training.rampup_batch_size
        if global_batch is None:
            raise ConfigError("training.rampup_batch_size needs global_batch_size (--global-batch-size): the batch "
                              "the ramp ends at")
        return RampupBatch(start, increment, samples, global_batch)
    if global_batch is None:
        raise ConfigError("training: the global batch is not known before the world size (set global_batch_size)")
    return ConstantBatch(global_batch)


def has_batch_schedule(training) -> bool:
    return bool(training.step_batch_size_schedule or training.rampup_batch_size)
