"""Tiny training runs for the kernel / quantisation tests, on data a model can learn in 20 steps."""
import os

import numpy as np

from fsdp2_core.testing.spawn import free_port, spawn
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


def run_all(tmp, runs):
    from fsdp2_core.kernels import restore_rotary, select
    from fsdp2_core.train import run_training
    out = []
    for i, (over, port) in enumerate(runs):
        os.environ["MASTER_PORT"] = str(port)
        cfg = tiny_config(os.path.join(str(tmp), f"run{i}"), **over)
        select.reset()
        from torch._dynamo.utils import counters
        counters.clear()
        summary = run_training(cfg, datasets=(CountingDataset(64),), print_fn=lambda s: None)
        summary["kernels_ran"] = {f"{k}:{impl}": n for (k, impl), n in select.RAN.items()}
        summary["compiled_graphs"] = counters["stats"]["unique_graphs"]
        restore_rotary()  # the rotary patch is module-wide: undo it before the next run
        out.append(summary)
    return out


def train_runs(world, tmp, overrides, timeout=400):
    """Rank 0's summaries of one run_training per overrides dict."""
    return spawn(world, run_all, str(tmp), [(o, free_port()) for o in overrides], timeout=timeout)[0]
