"""Real processes through the YAML entry (`train_fsdp2.py`), two ranks joined by env:// as a scheduler
starts them, on a tiny Megatron .bin/.idx corpus. One run's life, compared with an uninterrupted run:

  1. SIGTERM after the first checkpoint: it finishes the iteration, saves, and exits 0;
  2. resumed, it is killed with SIGKILL after a later checkpoint;
  3. resumed again, it finishes with the right iteration count and, iteration by iteration,
     the same losses as the uninterrupted run (bit-identical: fp32 on CPU)."""
import os
import re
import signal

import pytest

from fsdp2_core.checkpoint.layout import completeness, iter_dir, read_tracker
from tests.checkpoint.ckpt_helpers import (
    ROOT,
    launch_ranks,
    losses_by_iteration,
    read_log,
    wait_all,
    wait_for_tracker,
    write_corpus,
    yaml_config,
)

ITERS = 32
SAVE = 4
ENTRY = os.path.join(ROOT, "train_fsdp2.py")
ITER_LINE = re.compile(r" iteration +(\d+)/ +(\d+) \|")
LOADED = re.compile(r"loaded checkpoint from (\S+iter_(\d+)) at iteration (\d+)")


def launch(tmp, name, *argv):
    return launch_ranks(2, [ENTRY, *argv], str(tmp), str(tmp / name))


def interrupt(tmp, name, procs, out_dir, after, sig):
    """Once the tracker names a checkpoint >= `after`, send `sig` to every rank; their exit codes."""
    try:
        wait_for_tracker(out_dir, after, procs)
        for p in procs:
            p.send_signal(sig)
        return wait_all(procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()


@pytest.fixture(scope="module")
def life(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kill")
    corpus = write_corpus(str(tmp / "corpus_text_document"))
    ref = yaml_config(str(tmp / "ref.yaml"), corpus, str(tmp / "ref"), max_steps=ITERS, save_steps=0)
    cfg = yaml_config(str(tmp / "run.yaml"), corpus, str(tmp / "run"), max_steps=ITERS, save_steps=SAVE)
    out = str(tmp / "run")
    r = {}
    assert wait_all(launch(tmp, "ref", ref)) == [0, 0], read_log(str(tmp / "ref"))[-3000:]
    r["reference"] = losses_by_iteration(str(tmp / "ref"))

    r["term_codes"] = interrupt(tmp, "term", launch(tmp, "term", cfg), out, SAVE, signal.SIGTERM)
    r["term_log"] = read_log(str(tmp / "term"))
    r["term_tracker"] = read_tracker(out)
    r["term_complete"] = completeness(iter_dir(out, r["term_tracker"]))

    resume = ("--training.resume_from_checkpoint", "latest")
    r["kill_codes"] = interrupt(tmp, "kill", launch(tmp, "kill", cfg, *resume), out, r["term_tracker"] + SAVE,
                                signal.SIGKILL)
    r["kill_log"] = read_log(str(tmp / "kill"))
    r["kill_tracker"] = read_tracker(out)

    r["final_codes"] = wait_all(launch(tmp, "final", cfg, *resume))
    r["final_log"] = read_log(str(tmp / "final"))
    r["losses"] = losses_by_iteration(out)
    return tmp, r


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.subprocess
def test_sigterm_saves_and_exits_zero(life):
    tmp, r = life
    assert r["term_codes"] == [0, 0], r["term_log"][-3000:]
    stopped = int(re.search(r"exiting program at iteration (\d+) \(SIGTERM received\)", r["term_log"]).group(1))
    assert f" SIGTERM received: saving a checkpoint at iteration {stopped}, then exiting" in r["term_log"]
    assert SAVE <= stopped < ITERS and r["term_tracker"] == stopped   # the signal's own checkpoint is the latest
    assert r["term_complete"] == (True, "")
    assert [int(m.group(1)) for m in ITER_LINE.finditer(r["term_log"])] == list(range(1, stopped + 1))
    m = LOADED.search(r["kill_log"])                                  # and the next run starts from it
    assert m and int(m.group(2)) == stopped and int(m.group(3)) == stopped


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.subprocess
def test_sigkill_after_a_checkpoint_resumes_exactly(life):
    tmp, r = life
    assert r["kill_codes"] == [-signal.SIGKILL, -signal.SIGKILL]
    assert r["term_tracker"] < r["kill_tracker"] < ITERS, "the run ended before it could be killed"
    assert r["final_codes"] == [0, 0], r["final_log"][-3000:]
    assert "taking over a stale run lock (left by host" in r["final_log"]  # the killed run's lock blocks nothing
    resumed_from = int(LOADED.search(r["final_log"]).group(2))
    assert resumed_from >= r["kill_tracker"]
    done = [int(m.group(1)) for m in ITER_LINE.finditer(r["final_log"])]
    assert done == list(range(resumed_from + 1, ITERS + 1))          # nothing skipped, nothing twice
    assert sorted(r["losses"]) == list(range(1, ITERS + 1))
    assert r["losses"] == r["reference"]                              # bit-identical, iteration by iteration
    assert read_tracker(str(tmp / "run")) == ITERS


def test_second_sigint_interrupts_at_once():
    """In-process: the first SIGINT is recorded for a graceful stop, the second raises KeyboardInterrupt."""
    import torch

    from fsdp2_core.checkpoint.signals import ExitSignals
    sigs = ExitSignals(True, None, torch.device("cpu"))
    sigs.install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert sigs.should_exit() == "signal" and sigs.agreed == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        sigs.restore()
    assert ExitSignals(False, 1e-9, torch.device("cpu")).should_exit() == "duration"


def test_repeated_sigterm_never_interrupts_the_save(capfd):
    """In-process: torchrun forwarding a scheduler's SIGTERM that also reached the rank, or a second
    SIGTERM, only notes it; a SIGINT after a SIGTERM is a first SIGINT, also noted."""
    import torch

    from fsdp2_core.checkpoint.signals import ExitSignals
    sigs = ExitSignals(True, None, torch.device("cpu"))
    sigs.install()
    try:
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGTERM, signal.SIGINT):
            os.kill(os.getpid(), sig)
        assert sigs.stopping and sigs.should_exit() == "signal" and sigs.agreed == signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) == sigs._on_signal
    finally:
        sigs.restore()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    err = capfd.readouterr().err
    assert err.count("SIGTERM received while already stopping: the checkpoint save goes on") == 2
    assert err.count("SIGINT received while already stopping") == 1
