"""Writing one checkpoint with `torch.distributed.checkpoint`, synchronously or in the background.

Order of a save of iteration N (every step collective unless marked rank 0):
  1. wait for the previous asynchronous save, if any, and finish it (below);
  2. rank 0 clears `iter_N.partial/` and writes the small files (info, HF config, tokenizer);
  3. DCP writes every rank's shards, then its coordinator writes `.metadata`;
     with `save_async` the tensors are first staged (copied) to CPU memory and the
     writing runs in a thread while training goes on;
  4. checksums (checksums.py): at a synchronous save every rank hashes the files it wrote and
     rank 0 gathers them; an asynchronous save is hashed by rank 0 in step 5;
  5. finishing (rank 0, once the write is done on every rank): write `checksums.json`, rename
     `iter_N.partial/` to `iter_N/`, rewrite `latest_checkpointed_iteration.txt`, prune to `save_total_limit`.

A write error at any step (disk full, no permission) reaches every rank as the same
`CheckpointError`, the partial directory is removed, and the tracker still names the
previous checkpoint, which stays loadable.
"""
import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from . import checksums
from .layout import INFO, CheckpointError, describe_failure, iter_dir, partial_dir, read_tracker, write_tracker
from .rotation import drop_unretained, prune

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    future: object
    iteration: int
    finished: bool = False      # rank 0 renamed the directory and wrote the tracker
    error: Optional[str] = None


def _result(future):
    """The upload future of `async_save` (a Future, or an AsyncSaveResponse in newer torch)."""
    return getattr(future, "upload_completion", future)


class Saver:
    """`guard`: a lock held while a checkpoint is written and published, so that whoever must stop this
    process at once (a rank whose launcher is gone) waits for the checkpoint to be whole first."""

    def __init__(self, save_dir: str, group, rank: int, async_save: bool, total_limit: Optional[int],
                 guard=None, retain_interval: Optional[int] = None):
        self.save_dir, self.group, self.rank = save_dir, group, rank
        self.async_save, self.total_limit, self.retain_interval = async_save, total_limit, retain_interval
        self.guard = guard if guard is not None else contextlib.nullcontext()
        self.pending: Optional[_Pending] = None

    # ------------------------------------------------------------------ collective helpers
    def _agree(self, error: Optional[str]) -> Optional[str]:
        """Every rank learns rank 0's error (or its own)."""
        if not dist.is_initialized() or dist.get_world_size(self.group) == 1:
            return error
        box = [error if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return error or box[0]

    def _fail(self, iteration: int, cause: str) -> CheckpointError:
        previous = read_tracker(self.save_dir)
        prev_text = (f"{iter_dir(self.save_dir, previous)} stays the latest checkpoint and loads"
                     if previous is not None else "no earlier checkpoint exists")
        if self.rank == 0:
            shutil.rmtree(partial_dir(self.save_dir, iteration), ignore_errors=True)
        return CheckpointError(
            f"saving checkpoint iteration {iteration} to {iter_dir(self.save_dir, iteration)} failed: {cause}. "
            f"The previous checkpoint is untouched: {prev_text}. Free disk space or fix the permissions of "
            f"{self.save_dir}, then resume with resume_from_checkpoint: latest (Megatron: --load equal to --save)")

    # ------------------------------------------------------------------ save
    def save(self, iteration: int, state_dict: dict, write_extras: Callable[[str], None], info: dict) -> None:
        self.wait()
        with self.guard:
            self._save(iteration, state_dict, write_extras, info)

    def _save(self, iteration: int, state_dict: dict, write_extras: Callable[[str], None], info: dict) -> None:
        partial = partial_dir(self.save_dir, iteration)
        error = None
        if self.rank == 0:
            try:
                shutil.rmtree(partial, ignore_errors=True)
                os.makedirs(partial)
                write_extras(partial)
                with open(os.path.join(partial, INFO), "w", encoding="utf-8") as fh:
                    json.dump(dict(info, iteration=iteration, saved_at=time.time()), fh, indent=1)
            except OSError as exc:
                error = f"rank 0: {type(exc).__name__}: {exc}"
        error = self._agree(error)
        if error:
            raise self._fail(iteration, error)
        start = time.perf_counter()
        try:
            if self.async_save:
                future = dcp.async_save(state_dict, checkpoint_id=partial, process_group=self.group)
                self.pending = _Pending(future, iteration)
                log.info("checkpoint iteration %d: staged in %.2fs, writing in the background",
                         iteration, time.perf_counter() - start)
                return
            dcp.save(state_dict, checkpoint_id=partial, process_group=self.group)
        except (Exception, CheckpointException) as exc:  # DCP gathers every rank's failure, raises it on all
            raise self._fail(iteration, describe_failure(exc)) from exc
        known, error = self._checksums_of_own_files(partial)
        error = self._agree(error or (self._finish(iteration, known) if self.rank == 0 else None))
        if error:
            raise self._fail(iteration, error)
        log.info("saved checkpoint %s in %.2fs", iter_dir(self.save_dir, iteration), time.perf_counter() - start)

    def _checksums_of_own_files(self, partial: str):
        """Collective: each rank hashes the DCP files it wrote; rank 0 gets ({file: sum}, error text or None)."""
        try:
            sums, error = checksums.checksum_files(partial, checksums.own_files(partial, self.rank)), None
        except OSError as exc:
            sums, error = {}, f"rank {self.rank} summing its files: {type(exc).__name__}: {exc}"
        if not dist.is_initialized() or dist.get_world_size(self.group) == 1:
            return sums, error
        parts = [None] * dist.get_world_size(self.group) if self.rank == 0 else None
        dist.gather_object((sums, error), parts, dst=0, group=self.group)
        if self.rank != 0:
            return {}, None
        errors = [e for _, e in parts if e]
        return {k: v for part, _ in parts for k, v in part.items()}, ("; ".join(errors) or None)

    def _finish(self, iteration: int, known: Optional[dict] = None) -> Optional[str]:
        """Rank 0, after every rank has written: publish the checkpoint. Returns an error text or None."""
        final, partial = iter_dir(self.save_dir, iteration), partial_dir(self.save_dir, iteration)
        try:
            start = time.perf_counter()
            total = checksums.record(partial, known)
            log.info("checksums of %s: %.1f MB, %.2fs on rank 0", final, total / 1e6, time.perf_counter() - start)
            if os.path.isdir(final):  # the same iteration saved again by a run resumed from earlier
                shutil.rmtree(final)
            os.rename(partial, final)
            previous = read_tracker(self.save_dir)
            write_tracker(self.save_dir, iteration)
            drop_unretained(self.save_dir, previous, iteration, self.retain_interval)
            prune(self.save_dir, self.total_limit)
        except OSError as exc:
            return f"rank 0 publishing {final}: {type(exc).__name__}: {exc}"
        return None

    # ------------------------------------------------------------------ asynchronous completion
    def poll(self) -> None:
        """Not collective: rank 0 publishes a finished background save as soon as it sees it."""
        p = self.pending
        if p is None or p.finished or self.rank != 0:
            return
        future = _result(p.future)
        if future.done() and future.exception() is None:  # a failure is raised by wait(), on every rank
            with self.guard:
                p.error = self._finish(p.iteration)
                p.finished = True

    def wait(self) -> None:
        """Collective: block until the background save is written and published; raise its error."""
        p, self.pending = self.pending, None
        if p is None:
            return
        with self.guard:
            self._wait(p)

    def _wait(self, p: _Pending) -> None:
        start = time.perf_counter()
        try:
            _result(p.future).result()
        except (Exception, CheckpointException) as exc:  # CheckpointException is a BaseException
            raise self._fail(p.iteration, describe_failure(exc)) from exc
        error = None
        if self.rank == 0:
            error = p.error if p.finished else self._finish(p.iteration)
        error = self._agree(error)
        if error:
            raise self._fail(p.iteration, error)
        log.info("checkpoint %s written in the background (waited %.2fs)", iter_dir(self.save_dir, p.iteration),
                 time.perf_counter() - start)
