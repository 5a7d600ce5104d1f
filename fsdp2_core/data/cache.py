"""Index cache files and rank coordination.

Indices are built once by one rank, written under a temporary name and renamed into place, then
memory-mapped by every rank. A cache entry is named by the MD5 of a JSON description of
everything that determines its contents, so a changed configuration never reads a stale entry.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np


def description_hash(description: dict) -> str:
    text = json.dumps(description, indent=4, sort_keys=False, default=str)
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def atomic_save_npy(path: str, array: np.ndarray) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as stream:
        np.save(stream, array, allow_pickle=False)
    os.replace(tmp, path)


def atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(tmp, path)


def cached_arrays(cache_dir: Optional[str], base: str, description: dict, names: Sequence[str],
                  build: Callable[[], Dict[str, np.ndarray]]) -> Dict[str, np.ndarray]:
    """Load `names` from `cache_dir` (memory-mapped) or build, save and then map them.

    The description file is written last, so its presence marks a complete entry.
    """
    if cache_dir is None:
        return build()
    paths = {name: os.path.join(cache_dir, f"{base}-{name}.npy") for name in names}
    description_path = os.path.join(cache_dir, f"{base}-description.txt")
    if not (os.path.isfile(description_path) and all(map(os.path.isfile, paths.values()))):
        arrays = build()
        try:
            os.makedirs(cache_dir, exist_ok=True)
            for name in names:
                atomic_save_npy(paths[name], arrays[name])
            atomic_write_text(description_path, json.dumps(description, indent=4, default=str))
        except OSError as error:
            raise OSError(
                f"cannot write the dataset index cache in {cache_dir} ({error}); pass a writable "
                "directory as cache_dir (--data-cache-path)"
            ) from error
    return {name: np.load(paths[name], mmap_mode="r", allow_pickle=False) for name in names}


def cached_json(cache_dir: Optional[str], description: dict, name: str, compute: Callable[[], object]):
    """A small JSON-able value computed once per `description` and kept in `cache_dir` (when writable)."""
    if cache_dir is None:
        return compute()
    path = os.path.join(cache_dir, f"{description_hash(description)}-{name}.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as stream:
                return json.load(stream)["value"]
        except (OSError, ValueError, KeyError):
            pass  # a damaged entry is computed again
    value = compute()
    try:
        os.makedirs(cache_dir, exist_ok=True)
        atomic_write_text(path, json.dumps({"description": description, "value": value}, default=str))
    except OSError:
        pass  # an unwritable cache costs time, not correctness
    return value


# ---------------------------------------------------------------- rank coordination
def _dist():
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return dist if dist.is_available() and dist.is_initialized() else None


def is_cache_builder(no_shared_storage: bool = False) -> bool:
    """Global rank 0 builds caches; with no shared storage, local rank 0 of every node."""
    dist = _dist()
    if dist is None:
        return True
    if no_shared_storage:
        return int(os.environ.get("LOCAL_RANK", dist.get_rank())) == 0
    return dist.get_rank() == 0


def build_then_share(fn: Callable[[], object], no_shared_storage: bool = False):
    """Run `fn` on the builder rank(s) first, barrier, then on the others (cache hits)."""
    dist = _dist()
    if dist is None:
        return fn()
    builder = is_cache_builder(no_shared_storage)
    result = None
    error = None
    if builder:
        try:
            result = fn()
        except Exception as exc:  # still reach the barrier so other ranks do not hang
            error = exc
    dist.barrier()
    if error is not None:
        raise error
    if not builder:
        result = fn()
    return result
