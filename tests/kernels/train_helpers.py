"""Tiny training runs for the kernel / quantisation tests, on data a model can learn in 20 steps."""
import os

import numpy as np

from fsdp2_core.testing.spawn import spawn_runs
from fsdp2_core.testing.tiny import SEQ, tiny_config


class CountingDataset:
    """Each sample counts upward modulo 16 from a random start: the next token is learnable."""

    def __init__(self, n: int, seq: int = SEQ, seed: int = 0):
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, 16, size=(n, 1))
        self.text = ((starts + np.arange(seq + 1)) % 16).astype(np.int64)
        self.seq = seq

    def __len__(self):
        return len(self.text)

    def __getitem__(self, i):
        return {"tokens": self.text[i, :-1], "labels": self.text[i, 1:], "loss_mask": np.ones(self.seq, np.float32),
                "position_ids": np.arange(self.seq, dtype=np.int64)}


def run_one(run):
    """On every rank: one run_training (no checkpoints), with the kernels that ran and the graphs compiled."""
    from torch._dynamo.utils import counters

    from fsdp2_core.kernels import restore_rotary, select
    from fsdp2_core.train import CheckpointHooks, run_training
    out_dir, over = run
    cfg = tiny_config(out_dir, **over)
    select.reset()
    counters.clear()
    summary = run_training(cfg, datasets=(CountingDataset(64),), checkpoint=CheckpointHooks(), print_fn=lambda s: None)
    summary["kernels_ran"] = {f"{k}:{impl}": n for (k, impl), n in select.RAN.items()}
    summary["compiled_graphs"] = counters["stats"]["unique_graphs"]
    restore_rotary()  # the rotary patch is module-wide: undo it before the next run
    return summary


def train_runs(world, tmp, overrides, timeout=400):
    """Rank 0's summaries of one run_training per overrides dict."""
    runs = [(os.path.join(str(tmp), f"run{i}"), over) for i, over in enumerate(overrides)]
    return spawn_runs(world, run_one, runs, timeout=timeout)[0]
