"""Data-loader worker processes that live through a preemption signal and never outlive their rank.

torchrun stops its ranks by signalling each rank's process group, which holds the loader workers
the rank forked; `scancel` or a container stop signals every process. A worker killed by that
SIGTERM makes its rank raise "DataLoader worker (pid N) is killed by signal: Terminated" in the
middle of the iteration it should finish before saving. So in a worker SIGTERM and SIGINT stay
blocked, and a thread takes them with sigwaitinfo, which tells who sent them:

  - from the rank (the worker's parent: DataLoader's or multiprocessing's `terminate()` at shutdown)
    the worker exits at once, as torch's own worker handler does;
  - from anyone else (torchrun, the scheduler, a terminal) it is ignored: the rank saves its
    checkpoint and then shuts its workers down itself.

Workers also have the kernel kill them when their rank goes (PR_SET_PDEATHSIG), so none is left
reading data when a rank is killed outright.

The rank blocks both signals in the thread that forks the workers, so each worker starts with them
blocked: one arriving between the fork and `worker_init` waits for the thread instead of killing
the worker. In the rank the signal is delivered as soon as the fork is done.
"""
import contextlib
import ctypes
import faulthandler
import os
import signal
import sys
import threading

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def set_parent_death_signal(sig: int) -> bool:
    """Linux: the kernel sends `sig` to this process when the thread that forked it exits. False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _take_termination_signals(parent: int) -> None:
    """A worker's thread: exit on the rank's own SIGTERM, drop everyone else's."""
    while True:
        info = signal.sigwaitinfo(TERMINATION_SIGNALS)
        if info.si_pid == parent:
            os._exit(0)


def worker_init(worker_id: int) -> None:
    """`worker_init_fn` of the engine's DataLoaders (runs in each worker before it reads data)."""
    faulthandler.enable(all_threads=True)  # a worker that crashes prints where; its rank only says "killed by signal"
    signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATION_SIGNALS)  # already, when forked by micro_batches
    set_parent_death_signal(signal.SIGKILL)
    threading.Thread(target=_take_termination_signals, args=(os.getppid(),), name="termination-signals",
                     daemon=True).start()


@contextlib.contextmanager
def termination_signals_blocked():
    """Around the fork of loader workers: they start with SIGTERM / SIGINT blocked (see above)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, TERMINATION_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
