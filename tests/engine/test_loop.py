"""The loop as Megatron users see it: log lines, NaN skipping, evaluation, metrics file, profiler traces."""
import json
import os
import re

import pytest

from fsdp2_core.testing.spawn import spawn
from fsdp2_core.train.logging_line import eval_line, iteration_line
from tests.engine.helpers import run_with_nan_and_profile

MEGATRON_RE = re.compile(
    r" iteration +(\d+)/ +(\d+) \| consumed samples: +(\d+) \| elapsed time per iteration \(ms\): ([\d.]+) \|"
    r" learning rate: ([\d.E+-]+) \| global batch size: +(\d+) \|( lm loss: ([\d.E+-]+) \|)? loss scale: ([\d.]+) \|"
    r" grad norm: ([\d.a-z]+) \| number of skipped iterations: +(\d+) \| number of nan iterations: +(\d+) \|")


def test_iteration_line_exact():
    line = iteration_line(12, 1000, 384, 1234.56, 2.5e-4, 32, 3.14159, 1.0, 0.8766, 0, 1, 1500.0, 12.345, 0.4,
                          3.21)
    assert line == (" iteration       12/    1000 | consumed samples:          384 | elapsed time per iteration (ms):"
                    " 1234.6 | learning rate: 2.500000E-04 | global batch size:    32 | lm loss: 3.141590E+00 |"
                    " loss scale: 1.0 | grad norm: 0.877 | number of skipped iterations:   0 |"
                    " number of nan iterations:   1 | tokens/s/device: 1500.0 | TFLOP/s/device: 12.35 |"
                    " MFU: 40.00% | peak memory (GB): 3.21 |")
    assert MEGATRON_RE.match(line)
    assert "MFU: n/a" in iteration_line(1, 2, 3, 4.0, 1e-3, 4, 1.0, 1.0, 1.0, 0, 0, 1.0, 1.0, None, 0.0)


def test_eval_line():
    text = eval_line("iteration 100", 2.0)
    assert " validation loss at iteration 100 | lm loss value: 2.000000E+00 | lm loss PPL: 7.389056E+00 | " in text
    assert text.splitlines()[0] == "-" * len(text.splitlines()[0])


@pytest.fixture(scope="module")
def nan_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    (summary, lines), = spawn(1, run_with_nan_and_profile, str(tmp))
    return tmp, summary, lines


@pytest.mark.dist
def test_nan_iteration_is_skipped_and_counted(nan_run):
    _, summary, lines = nan_run
    assert summary["iteration"] == 6 and summary["consumed_train_samples"] == 24
    assert summary["skipped_iterations"] == 1 and summary["nan_iterations"] == 1
    it_lines = [MEGATRON_RE.match(l) for l in lines if l.startswith(" iteration")]
    assert all(it_lines) and len(it_lines) == 6
    counts = [(int(m.group(11)), int(m.group(12))) for m in it_lines]
    assert counts == [(0, 0), (0, 0), (0, 0), (1, 1), (0, 0), (0, 0)]
    assert it_lines[3].group(7) is None  # no average loss to show for an all-skipped interval
    lrs = summary["learning_rates"]
    assert lrs[3] == lrs[2] and lrs[4] < lrs[3]  # the scheduler did not advance on the skipped update


@pytest.mark.dist
def test_evaluation_lines_and_metrics_file(nan_run):
    tmp, summary, lines = nan_run
    text = "\n".join(lines)
    assert "validation loss at iteration 3 | lm loss value:" in text
    assert "validation loss at iteration 6 | lm loss value:" in text
    assert "validation loss at iteration 6 on test set | lm loss value:" in text
    assert [v["iteration"] for v in summary["valid"]] == [3, 6] and summary["test_loss"] > 0
    records = [json.loads(l) for l in open(os.path.join(tmp, "metrics.jsonl"))]
    assert [r["iteration"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert {"lm_loss", "learning_rate", "grad_norm", "tokens_per_s_per_device", "mfu"} <= set(records[0])


@pytest.mark.dist
def test_profiler_trace_written(nan_run):
    tmp = nan_run[0]
    files = sorted(os.listdir(os.path.join(tmp, "prof")))
    assert files == ["rank0_steps1-3.json", "rank0_steps1-3.txt"]
    assert json.load(open(os.path.join(tmp, "prof", files[0])))["traceEvents"]
