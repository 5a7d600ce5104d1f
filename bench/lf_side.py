#!/usr/bin/env python
"""LLaMA-Factory's side of bench/bench_llamafactory.py: one SFT job through its own `run_exp`, timed.

    [torchrun --nproc-per-node N] python bench/lf_side.py JOB.json OUT.json

Runs under the Python that has `llamafactory` (it imports nothing of this project). JOB.json holds
LLaMA-Factory's arguments; a trainer callback writes, on the first rank, the end time of every
optimizer step (time.time(), so the parent can relate it to the process start) and the logged losses.
"""
import importlib.machinery
import json
import os
import sys
import time
import types


def _torchaudio_stand_in() -> None:
    """LLaMA-Factory's multimodal plugin imports torchaudio at module level; text SFT never calls it, and no
    torchaudio wheel may match the installed torch, so an empty module stands in when the real one cannot load."""
    try:
        import torchaudio  # noqa: F401
    except Exception:
        stand_in = types.ModuleType("torchaudio")
        stand_in.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stand_in


def main() -> int:
    job_path, out_path = sys.argv[1], sys.argv[2]
    with open(job_path) as fh:
        args = json.load(fh)
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    _torchaudio_stand_in()
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    record = {"step_end": [], "losses": [], "optimizer": None}

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            record["optimizer"] = str(args.optim)

        def on_step_end(self, args, state, control, **kwargs):
            record["step_end"].append(time.time())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                record["losses"].append(float(logs["loss"]))

    run_exp(args, callbacks=[Timer()])
    if int(os.environ.get("RANK", "0")) == 0:
        with open(out_path, "w") as fh:
            json.dump(record, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
