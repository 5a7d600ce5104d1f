"""One live run per save directory: a lock file with a heartbeat.

    <save>/run.lock   {"host", "pid", "command", "started", "heartbeat", "beats", "interval_s", "token"}

Rank 0 takes the lock before any checkpoint is chosen or written, and a thread of its process
rewrites the heartbeat every `interval_s` seconds; the run removes the lock when it ends. Two
runs saving into one directory would overwrite each other's checkpoints, and a resume could
load the other run's, so a run that finds the lock held by a live run refuses to start and
names that run's host and process.

A lock left by a run that is gone is stale and is taken over, with a warning:
  - on this host, at once: its process no longer exists (or it is this very process), or its
    heartbeat is older than `misses` intervals;
  - from another host, after watching it: its heartbeat counter has not advanced for `misses`
    of its intervals (watched here, so the clocks of two hosts are never compared).
A crashed run therefore never blocks the next one: at once on the same host, within about
`misses` intervals from another. Removing the file by hand takes it over at once.

The lock is made with a hard link (atomic on local file systems and on NFS); two runs taking
over the same stale lock at the same moment are told apart by re-reading it before removal.
"""
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Callable, Optional, Tuple

from .layout import CheckpointError

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
HEARTBEAT_S = 10.0
MISSES = 3


def pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError, TypeError):
        return isinstance(pid, int)  # PermissionError: it exists, owned by someone else
    return True


def seconds(value: float) -> str:
    return f"{value:.0f}s" if value >= 10 else f"{value:.2g}s"


def describe(holder: dict) -> str:
    age = time.time() - float(holder.get("heartbeat", 0))
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
    return (f"host {holder.get('host')}, pid {holder.get('pid')} ({holder.get('command', '?')}), started {started}, "
            f"last heartbeat {seconds(age)} ago")


class RunLock:
    def __init__(self, save_dir: str, interval_s: float = HEARTBEAT_S, misses: int = MISSES,
                 warn: Callable[[str], None] = log.warning):
        self.save_dir, self.path = save_dir, os.path.join(save_dir, LOCK_FILE)
        self.interval_s, self.misses, self.warn = float(interval_s), int(misses), warn
        self.host, self.token = socket.gethostname(), uuid.uuid4().hex
        self.started = time.time()
        self.beats = 0
        self.held = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ the file
    def _record(self) -> dict:
        command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
        return {"host": self.host, "pid": os.getpid(), "command": command, "started": self.started,
                "heartbeat": time.time(), "beats": self.beats, "interval_s": self.interval_s, "token": self.token}

    def _write_tmp(self) -> str:
        tmp = f"{self.path}.{self.token}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self._record(), fh)
        return tmp

    def _create(self) -> bool:
        """Atomically create the lock with its full contents; False when it exists."""
        tmp = self._write_tmp()
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def _read(self) -> Optional[dict]:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"unreadable": True}
        return data if isinstance(data, dict) else {"unreadable": True}

    # ------------------------------------------------------------------ taking it
    def acquire(self) -> None:
        """Take the lock or raise CheckpointError naming the live run that holds it."""
        try:
            self._acquire()
        except OSError as exc:
            raise CheckpointError(f"output_dir {self.save_dir}: cannot write its run lock {self.path} "
                                  f"({type(exc).__name__}: {exc}); give an output_dir (Megatron: --save) this "
                                  "run can write to") from None

    def _acquire(self) -> None:
        os.makedirs(self.save_dir, exist_ok=True)
        for _ in range(10):
            if self._create():
                self.held = True
                self._thread = threading.Thread(target=self._heartbeat, name="run-lock-heartbeat", daemon=True)
                self._thread.start()
                return
            holder = self._read()
            if holder is None:  # released between our two looks
                continue
            verdict, why = self._judge(holder)
            if verdict == "live":
                raise CheckpointError(self._in_use(holder))
            if verdict == "stale" and self._remove_if_unchanged(holder):
                self.warn(f"{self.path}: taking over a stale run lock ({why})")
        raise CheckpointError(f"{self.path}: another run is taking this save directory's lock at the same moment; "
                              "start one run per output_dir (Megatron: --save)")

    def _judge(self, holder: dict) -> Tuple[str, str]:
        """('live' | 'stale' | 'changed', why) for the lock's current holder."""
        if holder.get("unreadable"):
            return "stale", "the lock file is unreadable"
        window = float(holder.get("interval_s", self.interval_s)) * self.misses
        if holder.get("host") == self.host:
            pid = holder.get("pid")
            if pid == os.getpid():
                return "stale", "left by an earlier run in this process"
            if not pid_alive(pid):
                return "stale", f"left by {describe(holder)}, a process that no longer exists"
            if time.time() - float(holder.get("heartbeat", 0)) > window:
                return "stale", f"left by {describe(holder)}: no heartbeat for more than {seconds(window)}"
            return "live", ""
        return self._watch(holder, window)

    def _watch(self, holder: dict, window: float) -> Tuple[str, str]:
        """A lock from another host: alive when its heartbeat advances within `window` seconds."""
        self.warn(f"{self.path} is held by {describe(holder)}; watching its heartbeat for up to {seconds(window)}")
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            time.sleep(min(1.0, window / 10))
            now = self._read()
            if now is None or now.get("token") != holder.get("token"):
                return "changed", "the lock changed hands"
            if now.get("beats") != holder.get("beats"):
                return "live", ""
        return "stale", f"left by {describe(holder)}: its heartbeat did not advance for {seconds(window)}"

    def _remove_if_unchanged(self, holder: dict) -> bool:
        now = self._read()
        if now is None or now.get("token") != holder.get("token"):
            return False
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        return True

    def _in_use(self, holder: dict) -> str:
        return (f"output_dir {self.save_dir} is in use by another live run: {describe(holder)}. Two runs saving "
                "into one directory overwrite each other's checkpoints, and a resume could load the other run's. "
                f"Stop that run (kill {holder.get('pid')} on {holder.get('host')}), or give this run another "
                f"output_dir (Megatron: --save). A lock whose run is gone is taken over by the next run; "
                f"removing {self.path} takes it over at once")

    # ------------------------------------------------------------------ holding it
    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval_s):
            current = self._read()
            if current is None or current.get("token") != self.token:
                self.held = False
                self.warn(f"{self.path}: this run's lock was removed or taken over"
                          f"{' by ' + describe(current) if current else ''}; another run may now write here")
                return
            self.beats += 1
            try:
                os.replace(self._write_tmp(), self.path)
            except OSError as exc:  # a full disk: the next beat tries again; a long outage makes the lock stale
                log.warning("%s: heartbeat not written (%s)", self.path, exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self.held:
            self.held = False
            current = self._read()
            if current is not None and current.get("token") == self.token:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
