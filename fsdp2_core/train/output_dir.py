"""The output directory (Megatron --save) is checked once, before anything is built or written.

Rank 0 creates it if needed and writes and removes a probe file; every rank learns the verdict
and raises the same ConfigError. Without this, a save directory that is a file or read-only made
rank 0 fail alone in its first write (the architecture, metrics, a checkpoint) while the other
ranks waited in a collective and died with the backend's "Connection closed by peer".
"""
import errno
import os
from typing import Optional

import torch.distributed as dist

from fsdp2_core.config import ConfigError

_HINT = "choose a writable directory for training.output_dir (Megatron --save)"


def output_dir_problem(path: str) -> Optional[str]:
    """What keeps this process from writing in `path` (created if missing), or None."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"training.output_dir {path} is a file, not a directory; {_HINT}"
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return f"training.output_dir {path} cannot be created ({_errno_text(exc)}); {_HINT}"
    probe = os.path.join(path, f".write-probe-{os.getpid()}")
    try:
        with open(probe, "w", encoding="utf-8") as fh:
            fh.write("probe")
        os.remove(probe)
    except OSError as exc:
        return f"training.output_dir {path} is not writable ({_errno_text(exc)}); {_HINT}"
    return None


def _errno_text(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno, "")
    return f"{name} {exc.strerror}".strip() if exc.strerror else str(exc)


def check_output_dir(path: Optional[str], rank: int) -> None:
    """Collective: rank 0 probes `path`; every rank raises the same ConfigError when it is unusable."""
    problem = output_dir_problem(path) if rank == 0 and path else None
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem:
        raise ConfigError(problem)
