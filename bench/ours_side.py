#!/usr/bin/env python
"""Our side of bench/bench_llamafactory.py: one SFT job through `run_training`, as train_fsdp2.py runs it, timed.

    [torchrun --nproc-per-node N] python bench/ours_side.py JOB.json OUT.json

JOB.json holds the flat config values (`fsdp2_core.config.build_config`); checkpoint hooks that save nothing
record, on the first rank, the end time of every optimizer step (time.time()) beside the per-step losses.
"""
import json
import os
import sys
import time

from fsdp2_core.config import build_config
from fsdp2_core.train import CheckpointHooks, run_training


class StepTimes(CheckpointHooks):
    """No checkpoints; the wall-clock end of each iteration."""

    def __init__(self):
        self.step_end = []

    def after_step(self, state, model, optimizer, schedule) -> bool:
        self.step_end.append(time.time())
        return False


def main() -> int:
    job_path, out_path = sys.argv[1], sys.argv[2]
    with open(job_path) as fh:
        values = json.load(fh)
    timer = StepTimes()
    lines = []
    summary = run_training(build_config(values), checkpoint=timer, print_fn=lines.append)
    if int(os.environ.get("RANK", "0")) == 0:
        chosen = [line for line in lines if line.startswith("optimizer:")]
        with open(out_path, "w") as fh:
            json.dump({"step_end": timer.step_end, "losses": summary["losses"],
                       "optimizer": chosen[0] if chosen else None}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
