"""Where checkpoints live and which one is complete: Megatron's directory layout.

    <save>/iter_0000100/                      one checkpoint (DCP files, `.metadata` last)
    <save>/iter_0000100/checkpoint_info.json  iteration, world size, contents
    <save>/iter_0000100/config.json           the Hugging Face config (for tools/convert_ckpt.py)
    <save>/latest_checkpointed_iteration.txt  the newest complete checkpoint, written last

A save writes into `iter_0000100.partial/` and renames it when every rank has finished,
so an `iter_*` directory is normally complete; the tracker is rewritten only after the
rename. `completeness` still checks what a resume relies on (metadata, every data file
it names, at full length), because directories get copied, pruned or damaged by hand.
"""
import errno
import json
import logging
import os
import re
from typing import Iterator, List, Optional, Tuple

from fsdp2_core.errors import UserError

log = logging.getLogger(__name__)

TRACKER = "latest_checkpointed_iteration.txt"
INFO = "checkpoint_info.json"
METADATA = ".metadata"  # written by DCP's coordinator after every rank's data files
PARTIAL = ".partial"
_ITER_RE = re.compile(r"^iter_(\d{7,})$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be found, read or written; the message says which and what to do."""


def describe_failure(exc: BaseException) -> str:
    """The root cause of a DCP failure, per rank when DCP gathered them (its own text is only the rank list)."""
    failures = getattr(exc, "failures", None)
    if failures:
        parts = []
        for rank, wrapped in sorted(failures.items()):
            inner = wrapped[0] if isinstance(wrapped, tuple) else wrapped
            parts.append(f"rank {rank}: {_one_failure(inner)}")
        return "; ".join(parts)
    return _one_failure(exc)


def _one_failure(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in errno.errorcode:  # e.g. ENOSPC: [Errno 28] No space left ...: 'file'
        return f"{type(exc).__name__} {errno.errorcode[exc.errno]}: {exc}"
    return f"{type(exc).__name__}: {exc}"


def iter_name(iteration: int) -> str:
    return f"iter_{iteration:07d}"


def iter_dir(save_dir: str, iteration: int) -> str:
    return os.path.join(save_dir, iter_name(iteration))


def partial_dir(save_dir: str, iteration: int) -> str:
    return iter_dir(save_dir, iteration) + PARTIAL


def iteration_of(path: str) -> Optional[int]:
    m = _ITER_RE.match(os.path.basename(os.path.normpath(path)))
    return int(m.group(1)) if m else None


def read_tracker(save_dir: str) -> Optional[int]:
    path = os.path.join(save_dir, TRACKER)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read(64).strip()
    except UnicodeDecodeError:
        text = "<not text>"
    if not re.fullmatch(r"\d+", text):  # e.g. -5, or Megatron's "release"
        log.warning("%s: unreadable tracker contents %r (not an iteration number); looking for checkpoints by "
                    "directory name", path, text)
        return None
    return int(text)


def write_tracker(save_dir: str, iteration: int) -> None:
    """Atomically: a crash leaves the old tracker or the new one, never a torn file."""
    path = os.path.join(save_dir, TRACKER)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(str(iteration))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def list_iterations(save_dir: str) -> List[int]:
    """Iterations of the `iter_*` directories in `save_dir` (complete or not), ascending."""
    if not os.path.isdir(save_dir):
        return []
    found = [iteration_of(n) for n in os.listdir(save_dir) if os.path.isdir(os.path.join(save_dir, n))]
    return sorted(i for i in found if i is not None)


def completeness(path: str) -> Tuple[bool, str]:
    """(True, "") when `path` is a loadable checkpoint, else (False, what is missing)."""
    if not os.path.isdir(path):
        return False, "no such directory"
    if not os.path.isfile(os.path.join(path, METADATA)):
        return False, f"no {METADATA} file (the save did not finish, or the metadata was removed)"
    if not os.path.isfile(os.path.join(path, INFO)):
        return False, f"no {INFO}"
    try:
        read_info(path)
    except CheckpointError as exc:
        return False, str(exc)
    try:
        from torch.distributed.checkpoint import FileSystemReader
        metadata = FileSystemReader(path).read_metadata()
    except Exception as exc:  # a truncated or foreign metadata file
        return False, f"unreadable {METADATA} ({type(exc).__name__}: {exc})"
    problem = missing_data(path, metadata)
    return (False, problem) if problem else (True, "")


def missing_data(path: str, metadata) -> Optional[str]:
    """What is wrong with the DCP data files `metadata` names (absent or short), or None."""
    needed = {}
    for info in (metadata.storage_data or {}).values():
        rel = str(info.relative_path)
        needed[rel] = max(needed.get(rel, 0), info.offset + info.length)
    for rel, size in sorted(needed.items()):
        file = os.path.join(path, rel)
        if not os.path.isfile(file):
            return f"missing data file {rel}"
        if os.path.getsize(file) < size:
            return f"data file {rel} is truncated ({os.path.getsize(file)} of {size} bytes)"
    return None


def read_info(path: str) -> dict:
    file = os.path.join(path, INFO)
    try:
        with open(file, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"unreadable {file} ({type(exc).__name__}: {exc})") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"unreadable {file} (a JSON object was expected, found {type(info).__name__})")
    return info


def complete_checkpoints(save_dir: str, warn=log.warning) -> Iterator[str]:
    """The complete checkpoints of `save_dir`, newest first: the tracker's, then older ones.

    Incomplete candidates are skipped with a warning naming what is missing. Directories newer
    than the tracker (a save that crashed before the tracker was written) are not considered.
    """
    tracked = read_tracker(save_dir)
    candidates = [i for i in reversed(list_iterations(save_dir)) if tracked is None or i <= tracked]
    if tracked is not None and tracked not in candidates:
        warn(f"{os.path.join(save_dir, TRACKER)} names iteration {tracked}, but {iter_name(tracked)}/ does not exist")
    for it in candidates:
        ok, why = completeness(iter_dir(save_dir, it))
        if ok:
            yield iter_dir(save_dir, it)
        else:
            warn(f"skipping checkpoint {iter_dir(save_dir, it)}: {why}; trying the previous one")


def latest_complete(save_dir: str, warn=log.warning) -> Optional[str]:
    """The newest complete checkpoint in `save_dir` (see complete_checkpoints), or None."""
    return next(complete_checkpoints(save_dir, warn), None)


def resolve_explicit(path: str) -> str:
    """A checkpoint the user named: an `iter_*` directory, or a save directory (its tracker's checkpoint).

    Anything missing is an error: the user asked for this checkpoint (Megatron's --exit-on-missing-checkpoint).
    """
    if not os.path.exists(path):
        raise CheckpointError(f"resume_from_checkpoint {path}: no such file or directory; give an iter_XXXXXXX "
                              "checkpoint directory, a save directory holding latest_checkpointed_iteration.txt, "
                              "or `latest` to resume the newest checkpoint in output_dir")
    if os.path.isfile(os.path.join(path, TRACKER)) or (iteration_of(path) is None and list_iterations(path)):
        tracked = read_tracker(path)
        if tracked is None:
            newest = iter_dir(path, list_iterations(path)[-1])
            raise CheckpointError(f"resume_from_checkpoint {path}: no readable {TRACKER}; name the checkpoint "
                                  f"directory itself (e.g. {newest}) or use `latest`")
        path = iter_dir(path, tracked)
    ok, why = completeness(path)
    if not ok:
        raise CheckpointError(f"resume_from_checkpoint {path} is not a complete checkpoint: {why}. Name another "
                              "iter_XXXXXXX directory, or set resume_from_checkpoint: latest to fall back to the "
                              "newest complete checkpoint in output_dir")
    return path
