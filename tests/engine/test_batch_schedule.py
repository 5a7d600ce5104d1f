"""Batch-size ramp-up and step schedules: global batch and micro-batches per iteration as Megatron computes them.

--rampup-batch-size is checked against megatron-core 0.16.1's RampupBatchsizeNumMicroBatchesCalculator over whole
ramps, and the run length against Megatron-LM 0.16.1's update_train_iters (its loop, driven by that calculator).
--step-batch-size-schedule is newer than megatron-core 0.16.1: it is checked against tables computed by hand from
Megatron-LM's megatron/core/num_microbatches_calculator.py (StepBatchsizeNumMicroBatchesCalculator._parse_schedule,
_get_batch_size_for_samples) and megatron/training/training.py update_train_iters (commit 532ad926b4).
"""
import warnings

import pytest

from fsdp2_core.config import ConfigError, build_config
from fsdp2_core.config.batch_schedule import ConstantBatch, RampupBatch, StepBatchSchedule, parse_count

warnings.filterwarnings("ignore", category=UserWarning)
calculators = pytest.importorskip("megatron.core.num_microbatches_calculator")

# (start, increment, ramp-up samples, global batch, micro batch, dp)
RAMPS = [
    (16, 16, 5859375, 1536, 1, 8),   # the GPT-3 175B example's ramp
    (4, 4, 1000, 32, 2, 2),          # 1000 / 7 samples per increment: a float boundary
    (3, 3, 100, 30, 1, 3),
    (8, 8, 1, 64, 4, 2),             # the whole ramp inside the first batch
    (2, 6, 777, 50, 1, 2),
]


def _megatron(start, incr, samples, gbs, micro, dp):
    return calculators.RampupBatchsizeNumMicroBatchesCalculator(gbs, micro, dp, False, 1, start, incr, samples)


@pytest.mark.parametrize("ramp", RAMPS, ids=str)
def test_ramp_equals_megatron_core_over_the_whole_ramp(ramp):
    start, incr, samples, gbs, micro, dp = ramp
    ref, ours = _megatron(*ramp), RampupBatch(start, incr, samples, gbs)
    consumed, seen = 0, set()
    while consumed <= samples + 3 * gbs:
        ref.update(consumed, consistency_check=True)
        assert ours.global_batch(consumed) == ref.get_current_global_batch_size(), consumed
        assert ours.micro_batches(consumed, micro, dp) == ref.get(), consumed
        seen.add(ref.get_current_global_batch_size())
        consumed += ref.get_current_global_batch_size()
    assert gbs in seen and start in seen


def _megatron_train_iters(ramp, train_samples):
    """Megatron-LM 0.16.1 training.update_train_iters with a ramp-up, driven by megatron-core's calculator."""
    start, incr, samples, gbs, micro, dp = ramp
    calc = _megatron(*ramp)
    iterations, consumed = 0, 0
    while consumed <= samples and consumed <= train_samples:
        calc.update(consumed, consistency_check=False)
        consumed += calc.get_current_global_batch_size()
        iterations += 1
    if train_samples > consumed:
        iterations += (train_samples - consumed) // gbs
    return iterations


@pytest.mark.parametrize("ramp", RAMPS, ids=str)
def test_ramp_train_iters_equal_megatron(ramp):
    start, incr, samples, gbs = ramp[:4]
    ours = RampupBatch(start, incr, samples, gbs)
    for train_samples in (1, start, samples // 3, samples, samples + 1, samples + gbs * 10 + 7, 3 * samples + 5):
        assert ours.train_iters(train_samples) == _megatron_train_iters(ramp, train_samples), train_samples


@pytest.mark.parametrize("ramp", RAMPS, ids=str)
def test_samples_after_iterations_follow_the_ramp(ramp):
    start, incr, samples, gbs = ramp[:4]
    ours = RampupBatch(start, incr, samples, gbs)
    consumed, totals = 0, [0]
    for _ in range(400):
        consumed += ours.global_batch(consumed)
        totals.append(consumed)
    for iterations in (0, 1, 2, 17, 150, 399):
        assert ours.samples_after(iterations) == totals[iterations]
        assert ours.samples_after(iterations - 1 if iterations else 0, totals[1]) == totals[max(iterations, 1)]


def test_ramp_refusals_name_the_flag():
    with pytest.raises(ConfigError, match=r"--rampup-batch-size.*1536 - 16 a multiple of 100"):
        RampupBatch(16, 100, 5000, 1536)
    with pytest.raises(ConfigError, match="no ramp to make"):
        RampupBatch(32, 16, 5000, 32)
    with pytest.raises(ConfigError, match="must all be positive"):
        RampupBatch(16, 16, 0, 64)
    with pytest.raises(ConfigError, match=r"--rampup-batch-size.*global batch 3, which the run reaches at 0 .*micro "
                                          r"batch 2"):
        RampupBatch(3, 3, 100, 30).check_divisible(2, 1, iterations=1000)
    RampupBatch(4, 4, 1000, 32).check_divisible(2, 2, iterations=1000)
    # from a resumed position only the batches still to come count
    RampupBatch(3, 6, 100, 27).check_divisible(3, 1, iterations=10, consumed=101)


GPT3_SCHEDULE = "0:16 2.4B:320 4.8B:624 7.2B:928 9.6B:1232 12B:1536"


def test_step_schedule_parses_tokens_into_samples_as_megatron():
    s = StepBatchSchedule(GPT3_SCHEDULE, 2048)
    # thresholds // 2048: 2.4e9 // 2048 = 1171875, ..., 12e9 // 2048 = 5859375 (the old ramp's length)
    assert s.entries == [(0, 16), (1171875, 320), (2343750, 624), (3515625, 928), (4687500, 1232), (5859375, 1536)]
    assert s.final == 1536
    assert [s.global_batch(c) for c in (0, 1171874, 1171875, 5859374, 5859375, 10**12)] == [16, 16, 320, 1232,
                                                                                          1536, 1536]
    assert StepBatchSchedule("0:4, 160:8  , 400:16", 4).entries == [(0, 4), (40, 8), (100, 16)]  # commas, tokens
    assert StepBatchSchedule("400:16 0:4 40:8", None).entries == [(0, 4), (40, 8), (400, 16)]  # sorted; samples
    assert [parse_count(x) for x in ("2.4B", "12b", "1.5K", "3M", "1T", "16")] == [
        2_400_000_000, 12_000_000_000, 1500, 3_000_000, 10**12, 16]


def test_step_schedule_iterations_hand_table():
    """'0:4 40:8 100:16' in samples: 10 iterations of 4 reach 40; 8 of 8 reach 104 (>= 100); 6 of 16 reach 200."""
    s = StepBatchSchedule("0:4 40:8 100:16", None)
    per_iteration, consumed = [], 0
    for _ in range(24):
        per_iteration.append(s.global_batch(consumed))
        consumed += per_iteration[-1]
    assert per_iteration == [4] * 10 + [8] * 8 + [16] * 6 and consumed == 200
    assert s.train_iters(200) == 24
    assert s.train_iters(201) == 25    # while consumed < train samples: the last iteration passes it
    assert s.train_iters(41) == 11     # 40 after 10 iterations, one more of 8
    assert s.train_iters(40) == 10
    assert s.samples_after(24) == 200 and s.samples_after(11) == 48 and s.samples_after(3, 36) == 56
    assert s.micro_batches(104, 2, 2) == 4


def test_step_schedule_gpt3_train_iters_hand_computed():
    """146484375 samples (GPT-3's --train-samples) with the 175B schedule, stretch by stretch:
    ⌈1171875/16⌉ = 73243 → 1171888; ⌈1171862/320⌉ = 3663 → 2344048; ⌈1171577/624⌉ = 1878 → 3515920;
    ⌈1171580/928⌉ = 1263 → 4687984; ⌈1171391/1232⌉ = 951 → 5859616; ⌈140624759/1536⌉ = 91553 → past the end."""
    s = StepBatchSchedule(GPT3_SCHEDULE, 2048)
    assert s.train_iters(146484375) == 73243 + 3663 + 1878 + 1263 + 951 + 91553
    assert s.samples_after(73243 + 3663) == 2344048


@pytest.mark.parametrize("text,problem", [
    ("4096:4 8192:8", "first threshold must be 0"),
    ("0:4 0:8", "strictly increasing"),
    ("0:4 1000:8", "strictly increasing"),        # 1000 tokens // 2048 = 0 samples
    ("0:8 4096:4", "must not decrease"),
    ("0:0", "must be positive"),
    ("0-4", "not THRESHOLD:BATCH_SIZE"),
    ("0:x", "not THRESHOLD:BATCH_SIZE"),
])
def test_step_schedule_refusals(text, problem):
    with pytest.raises(ConfigError, match=problem):
        StepBatchSchedule(text, 2048)


def _cfg(**over):
    return build_config({"architecture": {"model_type": "llama"}, "output_dir": "/tmp/x", "cutoff_len": 16,
                         "per_device_train_batch_size": 1, **over})


def test_train_samples_set_max_steps():
    assert _cfg(train_samples=1000, global_batch_size=16).training.max_steps == 62    # 1000 // 16
    ramp = _cfg(train_samples=1000, global_batch_size=32, rampup_batch_size=[4, 4, 500]).training
    assert ramp.max_steps == RampupBatch(4, 4, 500, 32).train_iters(1000) > 1000 // 32
    step = _cfg(train_samples=200, step_batch_size_schedule="0:4 640:8 1600:16").training  # tokens / 16
    assert step.max_steps == 24
    assert _cfg(train_samples=1000, global_batch_size=16, max_steps=62).training.max_steps == 62


@pytest.mark.parametrize("over,problem", [
    (dict(train_samples=1000, global_batch_size=16, max_steps=50), "max_steps 50 disagrees with train_samples"),
    (dict(train_samples=1000), "set global_batch_size"),
    (dict(train_samples=8, global_batch_size=16), "less than one global batch"),
    (dict(max_steps=10, rampup_batch_size=[4, 4, 100]), "set global_batch_size"),
    (dict(max_steps=10, global_batch_size=16, rampup_batch_size=[4, 4]), "three integers"),
    (dict(max_steps=10, global_batch_size=16, rampup_batch_size=[4, 4, 100], step_batch_size_schedule="0:4"),
     "exclude each other"),
    (dict(global_batch_size=16, rampup_batch_size=[4, 4, 100], num_train_epochs=1.0), "not epochs"),
    (dict(max_steps=10, step_batch_size_schedule="0:4 64:2"), "must not decrease"),
])
def test_schedule_config_refusals(over, problem):
    with pytest.raises(ConfigError, match=problem):
        _cfg(**over)


def test_constant_schedule_is_the_plain_global_batch():
    c = ConstantBatch(32)
    assert c.global_batch(10**9) == 32 and c.next_change(0) is None and c.train_iters(1000) == 31
    assert c.micro_batches(64, 2, 4) == 4 and c.samples_after(5, 10) == 170


def test_sample_based_run_decays_over_its_samples():
    """Megatron's get_optimizer_param_scheduler for --train-samples: lr_decay_samples defaults to train_samples,
    warmup = fraction × that, weight decay increments over train_samples (not iterations × batch)."""
    from fsdp2_core.train.lr_schedule import build_schedule
    t = _cfg(train_samples=1000, global_batch_size=16, warmup_ratio=0.01, weight_decay_incr_style="linear",
             start_weight_decay=0.0, end_weight_decay=0.1).training
    s = build_schedule(t, t.max_steps, 16)
    assert (s.decay_steps, s.warmup_steps, s.wd_incr_steps) == (1000, 10, 1000) and t.max_steps * 16 == 992
    ramp = _cfg(train_samples=1000, global_batch_size=32, rampup_batch_size=[4, 4, 500], lr_decay_steps=25).training
    assert build_schedule(ramp, ramp.max_steps, 32).decay_steps == 800 and build_schedule(
        ramp, ramp.max_steps, 32).wd_incr_steps == 1000
