"""Graceful exits: SIGTERM / SIGINT, a wall-clock budget, agreed on by every rank.

A caught signal only sets a flag (and puts the previous handler back, so a second
Ctrl-C interrupts at once). After each iteration the ranks all-reduce the flags: if any
rank was signalled or ran past `exit_duration_in_mins`, all of them save and stop
together, as Megatron's DistributedSignalHandler and exit-duration check do.
"""
import signal
import time
from typing import Optional

import torch
import torch.distributed as dist

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class ExitSignals:
    def __init__(self, handle_signals: bool, duration_mins: Optional[float], device: torch.device):
        self.handle = handle_signals
        self.duration_s = duration_mins * 60.0 if duration_mins else None
        self.device = device
        self.start = time.monotonic()
        self.received: Optional[int] = None
        self._previous = {}

    @property
    def active(self) -> bool:
        return self.handle or self.duration_s is not None

    def install(self) -> None:
        if not self.handle:
            return
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave the process's handlers alone
                pass

    def _on_signal(self, signum, frame) -> None:
        self.received = signum
        previous = self._previous.pop(signum, None)
        if previous is not None:
            signal.signal(signum, previous)

    def restore(self) -> None:
        for sig, previous in list(self._previous.items()):
            signal.signal(sig, previous)
        self._previous.clear()

    def should_exit(self) -> Optional[str]:
        """Collective: why every rank stops now ('signal', 'duration'), or None."""
        if not self.active:
            return None
        flags = torch.tensor([1.0 if self.received is not None else 0.0,
                              1.0 if self.duration_s is not None and time.monotonic() - self.start > self.duration_s
                              else 0.0], device=self.device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if flags[0] > 0:
            return "signal"
        if flags[1] > 0:
            return "duration"
        return None
