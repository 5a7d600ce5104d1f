"""Ranks that lose their launcher stop within seconds.

torchrun starts each rank in a session of its own, so when torchrun itself dies without stopping
them (kill -9, the OOM killer, a crashed agent) no signal reaches the ranks: they would train on
as orphans, holding memory and devices and writing checkpoints into the save directory the next
run resumes from. Under torchrun (TORCHELASTIC_RUN_ID set) a thread of each rank therefore
compares its parent process id with the launcher's, once a second. Once the launcher is gone:

  - a checkpoint being written is finished first (its writer holds `safe_point`), so none is left
    half-written; then the rank exits at once, without saving another (an asynchronous save still
    writing in the background is abandoned: its .partial directory is never loaded);
  - a rank already stopping for a signal (torchrun was told to stop and its ranks are saving, and
    then torchrun died of a second signal) finishes that save and exits by itself, or is ended
    after `grace_s` seconds.

Its data-loader workers die with it (loader_workers). A rank started in another way (python, srun,
a test harness) is not watched: there a parent may legitimately go first (nohup, a shell script).
"""
import os
import threading
import time
from typing import Callable, List

EXIT_ORPHANED = 1
STOPPING = "stopping this rank without saving (resume from the last checkpoint)"
_LAUNCHER = os.getppid()  # when the engine is imported, at the rank's start: torchrun's agent under torchrun
_said = []


def under_torchrun(environ=None) -> bool:
    return "TORCHELASTIC_RUN_ID" in (os.environ if environ is None else environ)


def launcher_gone() -> bool:
    """Under torchrun: the process that started this rank has exited (a collective error is then its echo)."""
    return under_torchrun() and os.getppid() != _LAUNCHER


def say_launcher_gone(what: str) -> None:
    """Once per process, and on one rank per node (every rank of it lost the same launcher)."""
    if _said or os.environ.get("LOCAL_RANK", "0") != "0":
        return
    _said.append(what)
    os.write(2, f"rank {os.environ.get('RANK', '?')}: the launcher (pid {_LAUNCHER}) is gone; {what}\n".encode())


class LauncherWatch:
    def __init__(self, poll_s: float = 1.0, grace_s: float = 300.0, enabled=None):
        self.enabled = under_torchrun() if enabled is None else enabled
        self.launcher = _LAUNCHER
        self.poll_s, self.grace_s = poll_s, grace_s
        self.safe_point = threading.Lock()                 # held while a checkpoint is written
        self.stopping: Callable[[], bool] = lambda: False  # a graceful stop (signal) is under way
        self.on_exit: List[Callable[[], None]] = []       # e.g. releasing the save directory's lock
        self._thread = None

    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="launcher-watch", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while os.getppid() == self.launcher:
            time.sleep(self.poll_s)
        self._stop_orphan()

    def _stop_orphan(self) -> None:
        deadline = time.monotonic() + self.grace_s
        if self.stopping():
            say_launcher_gone("finishing the checkpoint of the signal already received, then exiting")
            while time.monotonic() < deadline:  # the rank exits by itself after its save
                time.sleep(self.poll_s)
        else:
            say_launcher_gone(STOPPING)
            self.safe_point.acquire(timeout=self.grace_s)  # a checkpoint being written is finished first
        for fn in self.on_exit:
            try:
                fn()
            except Exception:  # noqa: BLE001  (exiting regardless)
                pass
        os._exit(EXIT_ORPHANED)

