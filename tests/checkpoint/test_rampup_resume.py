"""Batch-size ramp-up on two gloo ranks: the micro-batches each iteration takes, the log line, Megatron's checkpoint
at every change of the number of micro-batches, and a bit-identical resume from the middle of the ramp.

--rampup-batch-size 2 2 12 with --global-batch-size 8 and --train-samples 40 (micro batch 1, dp 2): the batch is
2, 2, 4, 6 while consumed samples are 0, 2, 4, 8 (<= 12), then 8; Megatron's update_train_iters gives 4 ramp
iterations (14 samples) + (40 - 14) // 8 = 3 more, 7 in all, 38 samples.
"""
import os
import re

import pytest

from fsdp2_core.testing.spawn import spawn_runs
from fsdp2_core.testing.tiny import SyntheticDataset, datasets, tiny_config
from fsdp2_core.train.lr_schedule import build_schedule

pytestmark = [pytest.mark.dist, pytest.mark.slow]

BATCHES = [2, 2, 4, 6, 8, 8, 8]
RAMP = dict(max_steps=-1, train_samples=40, global_batch_size=8, rampup_batch_size=[2, 2, 12], decoupled_lr=3e-3,
            save_steps=0, save_total_limit=None, save_hf_weights=False, eval_interval=2, eval_iters=1)


class Recorded(SyntheticDataset):
    """A split that notes which samples this rank reads, in order."""

    def __init__(self, n=64, seed=0):
        super().__init__(n, seed=seed)
        self.read = []

    def __getitem__(self, i):
        self.read.append(int(i))
        return super().__getitem__(i)


def run(args):
    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.train import run_training
    out_dir, over = args
    cfg = tiny_config(out_dir, **over)
    train, valid = Recorded(), Recorded(16, seed=1)
    lines = []
    summary = run_training(cfg, datasets=(train, valid, datasets()[2]), checkpoint=Checkpointer(cfg),
                           print_fn=lines.append)
    summary["valid_read"] = valid.read
    return summary, lines, train.read


@pytest.fixture(scope="module")
def ramp_runs(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("ramp"))
    runs = [(os.path.join(tmp, "full"), RAMP),
            (os.path.join(tmp, "res"), dict(RAMP, exit_interval=3)),                       # stops inside the ramp
            (os.path.join(tmp, "res"), dict(RAMP, resume_from_checkpoint="latest"))]
    per_rank = spawn_runs(2, run, runs, timeout=500)
    return tmp, per_rank


def test_each_iteration_takes_the_ramps_micro_batches(ramp_runs):
    _, per_rank = ramp_runs
    (full, _, read0), (_, _, read1) = per_rank[0][0], per_rank[1][0]
    assert full["global_batch_sizes"] == BATCHES and full["train_iters"] == 7
    assert full["iteration"] == 7 and full["consumed_train_samples"] == sum(BATCHES) == 38
    assert sorted(read0 + read1) == list(range(38))                    # every sample once, none beyond
    # rank r reads sample consumed + 2k + r for its k-th micro-batch: 1, 1, 2, 3, then 4 micro-batches per step
    starts = [sum(BATCHES[:i]) for i in range(len(BATCHES))]
    assert read0 == [s + 2 * k for s, b in zip(starts, BATCHES) for k in range(b // 2)]
    assert read1 == [s + 2 * k + 1 for s, b in zip(starts, BATCHES) for k in range(b // 2)]


def test_lr_schedule_advances_by_each_iterations_batch(ramp_runs, tmp_path):
    full = ramp_runs[1][0][0][0]
    schedule = build_schedule(tiny_config(tmp_path, **RAMP).training, 7, 8)
    expected = []
    for batch in BATCHES:
        schedule.num_steps += batch
        expected.append(schedule.lr())
    assert full["learning_rates"] == pytest.approx(expected, rel=1e-12)
    assert schedule.decay_steps == 40  # the run's samples: Megatron's sample-based decay


def test_evaluation_takes_the_global_batch_after_the_ramp(ramp_runs):
    full = ramp_runs[1][0][0][0]
    assert [v["iteration"] for v in full["valid"]] == [2, 4, 6, 7]
    assert len(full["valid_read"]) == 4 * 8 // 2                          # 4 evaluations of 8 samples, 2 ranks


def test_log_line_shows_the_current_global_batch(ramp_runs):
    _, per_rank = ramp_runs
    lines = [l for l in per_rank[0][0][1] if l.startswith(" iteration")]
    shown = [int(re.search(r"global batch size: +(\d+) \|", l).group(1)) for l in lines]
    consumed = [int(re.search(r"consumed samples: +(\d+) \|", l).group(1)) for l in lines]
    assert shown == BATCHES and consumed == [sum(BATCHES[:i + 1]) for i in range(7)]
    assert lines[0].startswith(" iteration        1/       7 |")


def test_checkpoint_at_every_change_of_micro_batches(ramp_runs):
    tmp, _ = ramp_runs
    # before iterations 3, 4 and 5 (1 -> 2 -> 3 -> 4 micro-batches), and at the end
    assert sorted(n for n in os.listdir(os.path.join(tmp, "full")) if n.startswith("iter_")) == [
        "iter_0000002", "iter_0000003", "iter_0000004", "iter_0000007"]


def test_resume_inside_the_ramp_is_bit_identical(ramp_runs):
    _, per_rank = ramp_runs
    for rank in (0, 1):
        (full, _, read_full), (part, _, read_part), (rest, _, read_rest) = per_rank[rank]
        assert part["iteration"] == 3 and rest["iteration"] == 7
        assert part["global_batch_sizes"] + rest["global_batch_sizes"] == BATCHES
        assert part["losses"] + rest["losses"] == full["losses"]
        assert part["grad_norms"] + rest["grad_norms"] == full["grad_norms"]
        assert part["learning_rates"] + rest["learning_rates"] == full["learning_rates"]
        assert read_part + read_rest == read_full                         # the data resumes at consumed samples 8
