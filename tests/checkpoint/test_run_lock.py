"""<save>/run.lock: one live run per save directory; a lock whose run is gone is taken over."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from fsdp2_core.checkpoint.layout import CheckpointError
from fsdp2_core.checkpoint.run_lock import LOCK_FILE, RunLock


def write_lock(save_dir, **fields):
    record = {"host": socket.gethostname(), "pid": os.getpid(), "command": "pretrain_gpt.py",
              "started": time.time() - 60, "heartbeat": time.time(), "beats": 7, "interval_s": 10.0,
              "token": "theirs"}
    record.update(fields)
    with open(os.path.join(save_dir, LOCK_FILE), "w") as fh:
        json.dump(record, fh)


def read_lock(save_dir):
    with open(os.path.join(save_dir, LOCK_FILE)) as fh:
        return json.load(fh)


@pytest.fixture
def other_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_held_with_a_heartbeat_and_released(tmp_path):
    lock = RunLock(str(tmp_path / "out"), interval_s=0.05)
    lock.acquire()
    first = read_lock(str(tmp_path / "out"))
    assert (first["host"], first["pid"], first["token"]) == (socket.gethostname(), os.getpid(), lock.token)
    time.sleep(0.4)
    later = read_lock(str(tmp_path / "out"))
    assert later["beats"] > first["beats"] and later["heartbeat"] > first["heartbeat"]
    lock.release()
    assert not os.path.exists(tmp_path / "out" / LOCK_FILE)


def test_a_live_run_on_this_host_is_refused(tmp_path, other_process):
    write_lock(str(tmp_path), pid=other_process)
    with pytest.raises(CheckpointError, match=rf"is in use by another live run: host {socket.gethostname()}, "
                                              rf"pid {other_process} \(pretrain_gpt.py\), started .*last heartbeat"):
        RunLock(str(tmp_path)).acquire()
    assert read_lock(str(tmp_path))["token"] == "theirs"  # untouched


@pytest.mark.parametrize("why, fields", [
    ("no longer exists", {"pid": None}),                                # a crashed run (pid filled in below)
    ("no heartbeat for more than 30s", {"heartbeat": time.time() - 3600}),  # a hung or reused pid
    ("left by an earlier run in this process", {}),
])
def test_a_stale_lock_on_this_host_is_taken_over_at_once(tmp_path, other_process, why, fields):
    if fields.get("pid", 0) is None:
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        fields = {"pid": gone.pid}
    elif fields:
        fields = dict(fields, pid=other_process)
    write_lock(str(tmp_path), **fields)
    warnings = []
    lock = RunLock(str(tmp_path), warn=warnings.append)
    start = time.monotonic()
    lock.acquire()
    try:
        assert time.monotonic() - start < 2
        assert read_lock(str(tmp_path))["token"] == lock.token
        assert len(warnings) == 1 and "taking over a stale run lock" in warnings[0] and why in warnings[0]
    finally:
        lock.release()


def test_a_lock_from_another_host_is_judged_by_its_heartbeat(tmp_path):
    write_lock(str(tmp_path), host="node-7", pid=4242, interval_s=0.1)
    stop = threading.Event()

    def beat():  # node-7's run is alive: its heartbeat advances
        beats = 7
        while not stop.wait(0.05):
            beats += 1
            write_lock(str(tmp_path), host="node-7", pid=4242, interval_s=0.1, beats=beats)
    alive = threading.Thread(target=beat)
    alive.start()
    try:
        with pytest.raises(CheckpointError, match="host node-7, pid 4242"):
            RunLock(str(tmp_path), warn=lambda _: None).acquire()
    finally:
        stop.set()
        alive.join()

    # the same lock with a heartbeat that no longer moves (node-7 crashed): taken over after 3 intervals
    warnings = []
    lock = RunLock(str(tmp_path), warn=warnings.append)
    lock.acquire()
    try:
        assert read_lock(str(tmp_path))["token"] == lock.token
        assert "its heartbeat did not advance for 0.3s" in warnings[-1]
    finally:
        lock.release()


def test_a_lock_taken_over_is_noticed_by_its_former_holder(tmp_path):
    warnings = []
    lock = RunLock(str(tmp_path), interval_s=0.05, warn=warnings.append)
    lock.acquire()
    write_lock(str(tmp_path), token="someone else")
    time.sleep(0.3)
    assert not lock.held and "this run's lock was removed or taken over" in warnings[-1]
    lock.release()
    assert read_lock(str(tmp_path))["token"] == "someone else"  # not ours to remove


def test_an_unwritable_save_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CheckpointError, match=r"cannot write its run lock .*give an output_dir"):
        RunLock(str(blocker / "out")).acquire()
