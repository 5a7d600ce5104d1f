"""Data-loader workers change nothing but speed: the same batches and, bit for bit, the same losses with
0, 1, 2 or 4 workers (persistent or not, any prefetch), before and after an --exit-interval resume.

The model has attention dropout, so anything that drew from the global torch generator when the loader
starts its workers (DataLoader's worker base seed does, unless given a generator of its own) would shift
every dropout mask after it, and the losses with it."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from fsdp2_core.testing.tiny import LLAMA, SyntheticDataset
from fsdp2_core.train.data import micro_batches
from fsdp2_core.train.loader_workers import termination_signals_blocked, worker_init
from tests.checkpoint.ckpt_helpers import spawn_sequence

ITERS, EXIT = 6, 3
DROPOUT = dict(LLAMA, attention_dropout=0.2)


def _take(batches, n):
    return [next(batches) for _ in range(n)]


def _same(a, b):
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")
@pytest.mark.parametrize("workers, persistent, prefetch", [(1, False, None), (2, True, 1), (4, False, 4)])
def test_batches_and_global_generator_do_not_depend_on_workers(workers, persistent, prefetch):
    """Two passes over the data (cyclic, as epochs) and a resume in the second pass: the batches
    of 0 workers; and starting the workers leaves the global generator as it was."""
    ds = SyntheticDataset(12, seq=8)
    reference = _take(micro_batches(ds, 0, 2, rank=1, dp=2, cyclic=True), 7)  # 3 draws a pass: 2 passes and one
    torch.manual_seed(0)
    before = torch.get_rng_state()
    batches = micro_batches(ds, 0, 2, rank=1, dp=2, workers=workers, cyclic=True, persistent_workers=persistent,
                            prefetch_factor=prefetch)
    got = _take(batches, 7)
    assert torch.equal(torch.get_rng_state(), before)
    batches.close()
    assert _same(got, reference)
    resumed = micro_batches(ds, 16, 2, rank=1, dp=2, workers=workers, cyclic=True, persistent_workers=persistent,
                            prefetch_factor=prefetch)  # 16 consumed: the second pass's second draw
    assert _same(_take(resumed, 3), reference[4:7])
    resumed.close()


def _worker(ready, go):
    os.kill(os.getpid(), signal.SIGTERM)  # before worker_init: stays pending (forked with it blocked), not fatal
    worker_init(0)
    ready.set()
    go.wait(60)


def _fork_worker():
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    ready, go = ctx.Event(), ctx.Event()
    with termination_signals_blocked():  # as micro_batches forks its loader's workers
        proc = ctx.Process(target=_worker, args=(ready, go), daemon=True)
        proc.start()
    assert ready.wait(60)
    return proc, go


def test_workers_ignore_termination_signals_but_their_ranks():
    """SIGTERM / SIGINT from anyone but the worker's parent (torchrun, a scheduler, the worker itself) are
    dropped; the parent's terminate() (DataLoader's and multiprocessing's shutdown) still ends it at once."""
    proc, go = _fork_worker()
    for sig in ("-TERM", "-INT", "-TERM"):
        subprocess.run(["kill", sig, str(proc.pid)], check=True)  # sent by another process
    time.sleep(0.5)
    assert proc.is_alive()
    go.set()
    proc.join(60)
    assert proc.exitcode == 0  # it ran to its end

    proc, go = _fork_worker()
    proc.terminate()  # SIGTERM from the parent
    proc.join(10)
    assert proc.exitcode == 0


CRASHING_WORKER = """
import ctypes
from fsdp2_core.train.data import micro_batches

class CrashesOnRead:
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return ctypes.string_at(0)  # reads address 0: a segmentation fault in the worker

next(micro_batches(CrashesOnRead(), 0, 1, 0, 1, workers=1))
"""


@pytest.mark.subprocess
def test_a_crashing_worker_prints_where_it_crashed():
    """The rank only learns "killed by signal: Segmentation fault"; the worker itself prints its Python stack."""
    done = subprocess.run([sys.executable, "-c", CRASHING_WORKER], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert done.returncode != 0
    assert "killed by signal: Segmentation fault" in done.stderr
    assert "Fatal Python error: Segmentation fault" in done.stderr and "in __getitem__" in done.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    base = {"architecture": DROPOUT, "max_steps": ITERS, "save_hf_weights": False, "save_steps": 0}
    seq = [(f"full_w{w}", dict(base, dataloader_num_workers=w), {}, None) for w in (0, 1, 2)]
    # 0 workers: test_resume; persistent workers and prefetching: the batches test above
    loader = {"dataloader_num_workers": 2}
    seq.append(("part_w2", dict(base, exit_interval=EXIT, out="w2", **loader), {}, None))
    seq.append(("rest_w2", dict(base, resume_from_checkpoint="latest", out="w2", **loader), {}, None))
    return spawn_sequence(2, tmp, seq, timeout=600)[0]


@pytest.mark.dist
@pytest.mark.slow
def test_losses_do_not_depend_on_the_worker_count(runs):
    assert all(isinstance(r, dict) for r in runs.values()), {k: v for k, v in runs.items() if not isinstance(v, dict)}
    assert runs["full_w0"]["losses"] == runs["full_w1"]["losses"] == runs["full_w2"]["losses"]
    assert runs["full_w0"]["grad_norms"] == runs["full_w2"]["grad_norms"]


@pytest.mark.dist
@pytest.mark.slow
def test_exit_interval_resume_is_exact_with_workers(runs):
    part, rest = runs["part_w2"], runs["rest_w2"]
    assert part["iteration"] == EXIT and rest["iteration"] == ITERS
    assert part["losses"] + rest["losses"] == runs["full_w2"]["losses"]  # bit-identical, iteration by iteration
