"""Where a conversion writes: never over a checkpoint, never over a user's files unasked, never half.

    staging = claim_output(out, sources, overwrite)   # refuses, or returns an empty sibling directory
    ... write everything into `staging` ...
    publish(staging, out)                              # one rename; a replaced folder goes only after it
    discard(staging)                                   # on failure: only what the conversion created

`out` is refused when it is, or holds, a checkpoint (this engine's or Megatron's) or one
of the sources, when it lies inside a source, and when it is a non-empty directory that
`overwrite` does not name for replacing.
"""
import os
import shutil
import tempfile
from typing import Sequence

from .layout import CheckpointError
from .megatron.detect import holds_checkpoint


def _inside(path: str, parent: str) -> bool:
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip(os.sep) + os.sep)


def claim_output(out: str, sources: Sequence[str], overwrite: bool = False) -> str:
    """Check `out` and return a fresh staging directory beside it (same file system, so publishing is a rename)."""
    out = os.path.abspath(out)
    for source in sources:
        if _inside(source, out):
            raise CheckpointError(f"--output {out} is or contains the checkpoint being read ({source}); choose a new "
                                  "directory")
        if _inside(out, source) and holds_checkpoint(out):
            raise CheckpointError(f"--output {out} lies inside {source} and holds checkpoint files; choose a new "
                                  "directory")
    if os.path.exists(out) and not os.path.isdir(out):
        raise CheckpointError(f"--output {out} is a file; choose a directory")
    if os.path.isdir(out):
        if holds_checkpoint(out) or _holds_checkpoint_below(out):
            raise CheckpointError(f"--output {out} holds checkpoints (latest_checkpointed_iteration.txt, iter_*, "
                                  "mp_rank_* or distributed-checkpoint files); a conversion never replaces them. "
                                  "Choose a new directory")
        if os.listdir(out) and not overwrite:
            raise CheckpointError(f"--output {out} is not empty; choose a new or empty directory, or pass --overwrite "
                                  "to replace its contents")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-", dir=parent)


def _holds_checkpoint_below(path: str, depth: int = 2) -> bool:
    """A checkpoint a level or two down (a run's output directory holding its save directory)."""
    if depth == 0:
        return False
    for name in os.listdir(path):
        sub = os.path.join(path, name)
        if os.path.isdir(sub) and not os.path.islink(sub) and (holds_checkpoint(sub) or
                                                               _holds_checkpoint_below(sub, depth - 1)):
            return True
    return False


def publish(staging: str, out: str) -> None:
    """Put the finished `staging` in place of `out` (an existing `out` was checked by claim_output)."""
    out = os.path.abspath(out)
    replaced = None
    if os.path.isdir(out):
        replaced = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.replaced-", dir=os.path.dirname(out))
        os.rmdir(replaced)
        os.rename(out, replaced)
    os.rename(staging, out)
    if replaced is not None:
        shutil.rmtree(replaced)


def discard(staging: str) -> None:
    shutil.rmtree(staging, ignore_errors=True)
