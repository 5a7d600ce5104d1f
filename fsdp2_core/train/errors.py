"""How a run that fails ends: one clear message for what the user can fix, a traceback for the rest.

    UserError (ConfigError, CheckpointError, ...)  rank 0 prints `<entry>: error: <message>`, no traceback;
                                                   every rank exits 2
    KeyboardInterrupt (a second Ctrl-C)            rank 0 prints `<entry>: interrupted`; every rank exits 130
    any other exception (a bug, a crashed device)  rank 0 prints its traceback headed with its rank; exit 1.
                                                   Another rank prints its own only when torchrun has no
                                                   error file to hold it (below)
    anything, once torchrun has died               one line per node saying so (launcher_watch), exit 1: the
                                                   error is the echo of a peer rank that stopped

Thousands of ranks hitting the same configuration check would print thousands of copies; rank 0's
is the one the user needs. Under torchrun every failing rank also writes the error file torchrun
names in TORCHELASTIC_ERROR_FILE (the JSON `torch.distributed.elastic` reads), so the failure
summary torchrun prints when it exits (its "ChildFailedError ... FAILED" page, which it prints
whenever a rank exits non-zero, and exits 1 with) shows this message, or the traceback of the rank
that failed first, in place of "error_file: <N/A>". That page follows rank 0's message in the log.
"""
import json
import os
import sys
import time
import traceback
from typing import Callable

from fsdp2_core.errors import UserError

from .launcher_watch import EXIT_ORPHANED, STOPPING, launcher_gone, say_launcher_gone

EXIT_USER_ERROR = 2
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
ERROR_FILE_ENV = "TORCHELASTIC_ERROR_FILE"


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def write_launcher_error_file(message: str, details: str) -> None:
    """torchrun's per-rank error file: its failure summary prints `details` as this rank's traceback."""
    path = os.environ.get(ERROR_FILE_ENV)
    if not path:
        return
    record = {"message": {"message": message,
                          "extraInfo": {"py_callstack": details, "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
    except OSError:  # the summary then says <N/A>; the message is in the log all the same
        pass


def refuse_to_start(text: str) -> int:
    """A problem found before training starts (the flags, the YAML): rank 0 prints it, every rank exits 2.

    Every rank of a launch reads the same flags and finds the same problem; the copies would only bury it.
    """
    write_launcher_error_file(text.strip().splitlines()[-1], text)
    if _rank() == 0:
        print(text, file=sys.stderr, flush=True)
    return EXIT_USER_ERROR


def run_reporting_errors(entry: str, fn: Callable[[], object]) -> int:
    """Call `fn()` and turn how it ended into this process's exit code (0, 1, 2 or 130), reporting once."""
    rank = _rank()
    try:
        fn()
    except KeyboardInterrupt:
        if rank == 0:
            print(f"{entry}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001  (reported below, by kind)
        return _report(entry, rank, exc)
    return 0


def _report(entry: str, rank: int, exc: Exception) -> int:
    if launcher_gone():  # torchrun died and a peer rank stopped: this rank's collective failed in echo
        say_launcher_gone(STOPPING)
        return EXIT_ORPHANED
    if isinstance(exc, UserError):
        text = f"{entry}: error: {exc}"
        write_launcher_error_file(f"{type(exc).__name__}: {exc}", text)
        if rank == 0:
            print(text, file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    # a bug or an environment failure: its traceback is the report
    text = f"{entry}: rank {rank} failed with an unexpected error:\n{traceback.format_exc()}"
    write_launcher_error_file(f"{type(exc).__name__}: {exc}", text)
    if rank == 0 or not os.environ.get(ERROR_FILE_ENV):
        print(text, file=sys.stderr, flush=True)
    return EXIT_UNEXPECTED
