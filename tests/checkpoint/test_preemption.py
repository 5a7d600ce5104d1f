"""Preemption, orphaned ranks, a shared save directory and errors inside the ranks, under the real torchrun
(2 CPU ranks of pretrain_gpt.py with Megatron flags, 2 data-loader workers each, as Megatron's default).

One run's life, compared with an uninterrupted run (0 workers, never saved):
  1. SIGTERM to torchrun alone: its ranks finish the iteration, save, and exit before torchrun's grace period;
  2. resumed, SIGTERM to every process of the job at once (scancel), then once more to torchrun while it
     waits for its ranks: the save in progress is not cut short;
  3. resumed again to the end: iteration by iteration the same losses, bit for bit.
Then: a second run on a live run's save directory is refused; after `kill -9` of torchrun no rank or
loader worker is left; a configuration error raised inside the ranks reads as one message."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from fsdp2_core.checkpoint.layout import completeness, iter_dir, read_tracker
from tests.checkpoint.ckpt_helpers import losses_by_iteration, wait_for_tracker, write_corpus
from tests.checkpoint.torchrun_helpers import (
    ENTRY,
    ITERATION,
    alive,
    environment,
    megatron_flags,
    process_tree,
    rank_error_files,
    read,
    signal_job,
    start_torchrun,
    stop,
    wait_for_log,
)

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

ITERS, SAVE = 16, 4
STOPPED = re.compile(r" exiting program at iteration (\d+) \(SIGTERM received\)")
LOADED = re.compile(r"loaded checkpoint from \S+iter_(\d+) at iteration (\d+)")


def wait_gone(pids, timeout=30.0):
    deadline = time.time() + timeout
    while alive(pids) and time.time() < deadline:
        time.sleep(0.2)
    return alive(pids)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(str(tmp_path_factory.mktemp("corpus") / "corpus_text_document"))


@pytest.fixture(scope="module")
def life(tmp_path_factory, corpus):
    tmp = tmp_path_factory.mktemp("preempt")
    out = str(tmp / "run")
    r = {"out": out}

    def start(name, save, workers=2, *extra):
        log = str(tmp / f"{name}.log")
        proc = start_torchrun(megatron_flags(corpus, save, ITERS, workers, *extra), log, str(tmp / f"{name}.d"),
                              str(tmp))
        return proc, log

    ref, ref_log = start("reference", str(tmp / "ref"), 0, "--save-interval", "1000")
    assert ref.wait(600) == 0, read(ref_log)[-3000:]
    r["reference"] = losses_by_iteration(str(tmp / "ref"))

    proc, log = start("launcher", out, 2, "--save-interval", str(SAVE))
    try:
        wait_for_tracker(out, SAVE, [proc])
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        r["launcher_rc"], r["launcher_s"] = proc.wait(120), time.time() - sent
    finally:
        stop(proc)
    r["launcher_pid"], r["launcher_log"] = proc.pid, read(log)
    r["launcher_tracker"], r["launcher_errors"] = read_tracker(out), rank_error_files(str(tmp / "launcher.d"))

    proc, log = start("job", out, 2, "--save-interval", str(SAVE))
    try:
        wait_for_tracker(out, r["launcher_tracker"] + SAVE, [proc])
        tree = process_tree(proc.pid)
        signal_job(proc, signal.SIGTERM)
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # torchrun, waiting for its ranks, gets a second one
        proc.wait(120)
        r["job_left"] = wait_gone(tree, 120)  # ranks orphaned while saving finish their save, then exit
    finally:
        stop(proc)
    r["job_log"], r["job_tracker"] = read(log), read_tracker(out)
    r["job_errors"], r["job_dir"] = rank_error_files(str(tmp / "job.d")), sorted(os.listdir(out))

    proc, log = start("final", out, 2, "--save-interval", str(SAVE))
    r["final_rc"], r["final_log"] = proc.wait(600), read(log)
    r["losses"] = losses_by_iteration(out)
    return r


def check_graceful_stop(log, tracker, out_errors):
    stopped = int(STOPPED.search(log).group(1))
    assert f" SIGTERM received: saving a checkpoint at iteration {stopped}, then exiting" in log
    assert f" saved checkpoint at iteration {stopped} to " in log
    assert tracker == stopped
    assert "is killed by signal" not in log                 # no data-loader worker died under the rank
    assert "forcefully exiting" not in log                  # torchrun never had to SIGKILL a rank
    assert out_errors == []                                 # no rank ended with an exception
    return stopped


def test_sigterm_to_torchrun_saves_and_exits(life):
    log = life["launcher_log"]
    stopped = check_graceful_stop(log, life["launcher_tracker"], life["launcher_errors"])
    assert SAVE <= stopped < ITERS
    assert [int(m.group(1)) for m in ITERATION.finditer(log)] == list(range(1, stopped + 1))
    # torchrun itself re-raises the signal it got once its ranks have exited (exit 1 with a SignalException
    # traceback: torch/distributed/launcher/api.py); every rank exited 0 after its checkpoint
    assert life["launcher_rc"] == 0 or (
        life["launcher_rc"] == 1 and f"SignalException: Process {life['launcher_pid']} got signal: 15" in log)
    assert life["launcher_s"] < 30                           # within torchrun's default shutdown timeout


def test_sigterm_to_every_process_saves_once_and_completely(life):
    log = life["job_log"]
    loaded = LOADED.search(log)
    assert loaded and int(loaded.group(2)) == life["launcher_tracker"]
    stopped = check_graceful_stop(log, life["job_tracker"], life["job_errors"])
    assert stopped > life["launcher_tracker"]
    assert completeness(iter_dir(life["out"], stopped)) == (True, "")
    assert not [n for n in life["job_dir"] if n.endswith(".partial")]
    assert "run.lock" not in life["job_dir"]                # released by the run that held it
    assert life["job_left"] == set()


def test_resume_after_preemptions_matches_the_uninterrupted_run(life):
    assert life["final_rc"] == 0, life["final_log"][-3000:]
    loaded = LOADED.search(life["final_log"])
    assert loaded and int(loaded.group(2)) == life["job_tracker"]
    done = [int(m.group(1)) for m in ITERATION.finditer(life["final_log"])]
    assert done == list(range(life["job_tracker"] + 1, ITERS + 1))
    assert life["losses"] == life["reference"]              # bit-identical, iteration by iteration


def test_orphaned_ranks_stop_and_a_live_save_dir_is_refused(tmp_path, corpus):
    out = str(tmp_path / "run")
    log = str(tmp_path / "orphan.log")
    proc = start_torchrun(megatron_flags(corpus, out, 5000, 2, "--save-interval", "2"), log,
                          str(tmp_path / "orphan.d"), str(tmp_path))
    try:
        wait_for_log(log, r" iteration +3/", proc)
        ranks = process_tree(proc.pid) - {proc.pid}
        holder = json.load(open(os.path.join(out, "run.lock")))
        assert holder["host"] == socket.gethostname() and holder["pid"] in ranks

        second = subprocess.run([sys.executable, ENTRY, *megatron_flags(corpus, out, 8, 0)], cwd=str(tmp_path),
                                env=environment(), capture_output=True, text=True, timeout=400)
        assert second.returncode == 2, second.stderr[-3000:]
        assert second.stderr.count("pretrain_gpt.py: error:") == 1 and "Traceback" not in second.stderr
        assert (f"output_dir {out} is in use by another live run: host {socket.gethostname()}, "
                f"pid {holder['pid']} (pretrain_gpt.py)") in second.stderr

        ranks = process_tree(proc.pid) - {proc.pid}          # the ranks and their loader workers
        assert len(ranks) >= 4
        proc.kill()
        proc.wait(30)
        left = wait_gone(ranks, 30)
    finally:
        stop(proc)
    assert left == set(), f"alive 30 s after kill -9 of torchrun: {sorted(left)}"
    assert "the launcher (pid" in read(log) and "stopping this rank without saving" in read(log)
    names = os.listdir(out)
    assert not [n for n in names if n.endswith(".partial")] and "run.lock" not in names
    assert completeness(iter_dir(out, read_tracker(out))) == (True, "")


def test_a_configuration_error_inside_the_ranks_reads_as_one_message(tmp_path, corpus):
    """--fp8-format on a CPU: refused when the ranks build the model (after they have started)."""
    log = str(tmp_path / "fp8.log")
    proc = start_torchrun(megatron_flags(corpus, str(tmp_path / "run"), 4, 0, "--fp8-format", "e4m3"), log,
                          str(tmp_path / "fp8.d"), str(tmp_path))
    try:
        assert proc.wait(400) != 0
    finally:
        stop(proc)
    text = read(log)
    printed = re.findall(r"^pretrain_gpt\.py: error: (.*)$", text, re.M)
    assert len(printed) == 1 and printed[0].startswith("--fp8-format e4m3 (model.fp8_format)")
    # no rank printed a traceback; torchrun's own failure page comes after the message and repeats it as
    # the root cause (from the rank's error file) with the rank's exit code
    tracebacks = [m.start() for m in re.finditer(r"Traceback \(most recent call last\)", text)]
    assert len(tracebacks) <= 1 and all(at > text.index(printed[0]) for at in tracebacks)
    assert "fsdp2_core/" not in text
    root = text[text.find("Root Cause"):]
    assert "exitcode  : 2" in root and f"traceback : pretrain_gpt.py: error: {printed[0]}" in root
