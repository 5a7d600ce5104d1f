"""Graceful exits: SIGTERM / SIGINT, a wall-clock budget, agreed on by every rank.

A caught signal only sets a flag. After each iteration the ranks all-reduce the flags: if any
rank was signalled or ran past `exit_duration_in_mins`, all of them save and stop together, as
Megatron's DistributedSignalHandler and exit-duration check do.

A signal often arrives twice: torchrun passes its SIGTERM on to each rank's process group, and a
scheduler that signals every process of a job (scancel, a container stop) reaches the rank
directly as well. So every further SIGTERM is only noted and the checkpoint being written is
finished. A second SIGINT is a person at a terminal insisting: it interrupts at once
(KeyboardInterrupt), as Ctrl-C twice does elsewhere.
"""
import os
import signal
import time
from typing import Optional

import torch
import torch.distributed as dist

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class ExitSignals:
    def __init__(self, handle_signals: bool, duration_mins: Optional[float], device: torch.device, rank: int = 0):
        self.handle = handle_signals
        self.duration_s = duration_mins * 60.0 if duration_mins else None
        self.device = device
        self.rank = rank
        self.start = time.monotonic()
        self.received: Optional[int] = None      # the first signal this rank caught
        self.agreed: Optional[int] = None        # the signal every rank stops for (the highest number caught)
        self.counts = {sig: 0 for sig in SIGNALS}
        self._previous = {}

    @property
    def active(self) -> bool:
        return self.handle or self.duration_s is not None

    @property
    def stopping(self) -> bool:
        """A signal was caught here or on another rank: this rank saves after the current iteration and exits."""
        return self.received is not None or self.agreed is not None

    def install(self) -> None:
        if not self.handle:
            return
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave the process's handlers alone
                pass

    def _on_signal(self, signum, frame) -> None:
        self.counts[signum] = self.counts.get(signum, 0) + 1
        if self.received is None:
            self.received = signum
            return
        if signum == signal.SIGINT and self.counts[signum] > 1:
            self.restore()
            raise KeyboardInterrupt
        if self.rank == 0:  # os.write: no buffered stream is entered from a signal handler
            os.write(2, f"{signal_name(signum)} received while already stopping: the checkpoint save goes on "
                        "(a second SIGINT interrupts at once)\n".encode())

    def restore(self) -> None:
        for sig, previous in list(self._previous.items()):
            signal.signal(sig, previous)
        self._previous.clear()

    def should_exit(self) -> Optional[str]:
        """Collective: why every rank stops now ('signal', 'duration'), or None."""
        if not self.active:
            return None
        flags = torch.tensor([float(self.received or 0),
                              1.0 if self.duration_s is not None and time.monotonic() - self.start > self.duration_s
                              else 0.0], device=self.device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if flags[0] > 0:
            self.agreed = int(flags[0])
            return "signal"
        if flags[1] > 0:
            return "duration"
        return None
