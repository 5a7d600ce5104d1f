"""Loader workers are forked on Linux whatever multiprocessing's default start method: a rank started by
multiprocessing's spawn (or Python 3.14's forkserver default) would otherwise spawn them, and each would import
torch and unpickle the dataset again, without the rank's blocked termination signals (train/loader_workers.py)."""
import multiprocessing
import os
import signal
import sys

import numpy as np
import pytest

from fsdp2_core.train.data import micro_batches


class ParentState:
    """Reports what a worker sees of its rank: a value set only in the rank's memory, and the blocked signals."""
    marker = None

    def __len__(self):
        return 8

    def __getitem__(self, i):
        blocked = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        return {"tokens": np.array([i, os.getppid(), int(ParentState.marker == "rank"), int(blocked)])}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_workers_are_forked_even_when_the_default_start_method_is_spawn(monkeypatch):
    monkeypatch.setattr(ParentState, "marker", "rank")  # in this process's memory only
    previous = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("spawn", force=True)
    try:
        batch = next(micro_batches(ParentState(), 0, 2, 0, 1, workers=2))
    finally:
        multiprocessing.set_start_method(previous, force=True)
    for _, parent, sees_marker, blocked in batch["tokens"].tolist():
        assert (parent, sees_marker, blocked) == (os.getpid(), 1, 1)
