"""`save_total_limit`: keep the newest N complete checkpoints, never deleting the latest one; and
`save_retain_interval`: keep only the checkpoints whose step is a multiple of N, and the latest.

Runs on rank 0 after the tracker names the new checkpoint. Complete checkpoints beyond the
newest N go (the tracker's checkpoint is always kept, even when a resumed run saved it at
a lower iteration than an abandoned later one); leftover `.partial` directories of saves
older than the latest are removed too. Incomplete `iter_*` directories are left alone:
they are a user's to inspect.
"""
import logging
import os
import shutil
from typing import List, Optional

from .layout import PARTIAL, completeness, iter_dir, iteration_of, list_iterations, read_tracker

log = logging.getLogger(__name__)


def drop_unretained(save_dir: str, previous: Optional[int], current: int, interval: Optional[int]) -> List[str]:
    """`save_retain_interval` (Megatron's --save-retain-interval): once checkpoint `current` is the latest, the one
    before it goes unless its step is a multiple of `interval` (a symbolic link is left alone, as Megatron does)."""
    if not interval or not previous or previous == current or previous % interval == 0:
        return []
    path = iter_dir(save_dir, previous)
    if os.path.islink(path) or not os.path.isdir(path):
        return []
    shutil.rmtree(path)
    log.info("save_retain_interval %d: removed %s", interval, path)
    return [path]


def prune(save_dir: str, limit: Optional[int]) -> List[str]:
    """Delete checkpoints beyond the newest `limit` complete ones; return the removed paths."""
    removed = []
    latest = read_tracker(save_dir)
    if latest is None:
        return removed
    for name in os.listdir(save_dir):
        if name.endswith(PARTIAL):
            it = iteration_of(name[:-len(PARTIAL)])
            if it is not None and it < latest:
                shutil.rmtree(os.path.join(save_dir, name), ignore_errors=True)
                removed.append(os.path.join(save_dir, name))
    if not limit:
        return removed
    complete = [i for i in reversed(list_iterations(save_dir)) if completeness(iter_dir(save_dir, i))[0]]
    keep = set(complete[:limit]) | {latest}
    if len(keep) > limit:  # the tracker's checkpoint displaces the oldest of the newest
        keep = {latest} | set([i for i in complete if i != latest][:limit - 1])
    for it in complete:
        if it not in keep:
            path = iter_dir(save_dir, it)
            shutil.rmtree(path)
            removed.append(path)
            log.info("save_total_limit %d: removed %s", limit, path)
    return removed
