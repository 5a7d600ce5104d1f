"""Resuming: which checkpoint, which parts of it, and putting them back.

    resume_from_checkpoint: latest   the newest complete checkpoint in output_dir (Megatron --load == --save);
                                     incomplete ones are skipped with a warning; no checkpoint at all starts
                                     fresh (a first run), only incomplete ones is an error
    resume_from_checkpoint: <path>   that iter_XXXXXXX directory, or the tracker's checkpoint in a save
                                     directory; missing or incomplete is an error
    either way the files are verified against the checksums recorded at save (checksums.py): with
    `latest` a damaged checkpoint is skipped for the previous one with a warning naming the file; a
    named one is an error naming it
    load_optim false (--no-load-optim)  weights and counters; the LR schedule is placed at the consumed
                                     samples of the advanced iterations instead of being read
    load_rng false (--no-load-rng)   generators keep the run's seed
    finetune (--finetune)            weights only; iteration, samples and schedule start at zero

Model and optimizer state are keyed by parameter name and resharded by DCP, so a checkpoint
saved by N ranks (any FSDP / TP layout) loads on M. RNG states are per rank: restored when
the world size matches, otherwise the run keeps its seeded generators (with a warning).
"""
import logging
from typing import Optional

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.api import CheckpointException

from . import checksums
from .layout import (
    CheckpointError,
    complete_checkpoints,
    describe_failure,
    list_iterations,
    read_info,
    read_tracker,
    resolve_explicit,
)
from .state import apply_loaded, describe, has_rng_for, saved_sections, template_to_load

log = logging.getLogger(__name__)


def resolve(request: Optional[str], output_dir: str, rank: int, group=None, warn=None) -> Optional[str]:
    """The checkpoint to load, or None to start fresh; the same answer on every rank.

    Rank 0 proposes candidates (complete ones, newest first); every rank verifies its share of the
    proposal's checksums (collective), so a damaged `latest` falls back to the one before it."""
    if not request:
        return None
    warn = warn or log.warning
    world = dist.get_world_size() if dist.is_initialized() else 1
    proposals = _proposals(request, output_dir, warn) if rank == 0 else None
    while True:
        path, error = None, None
        if rank == 0:
            try:
                path = next(proposals, None)
            except CheckpointError as exc:
                error = str(exc)
        path, error = _from_rank0((path, error), group)
        if error:
            raise CheckpointError(error)
        if path is None:
            return None
        damaged = checksums.verify(path, rank, world, group)
        if not damaged:
            return path
        if request != "latest":
            raise CheckpointError(
                f"resume_from_checkpoint {path} is damaged: {'; '.join(damaged)}. Restore the file from a copy, name "
                "another iter_XXXXXXX directory, or set resume_from_checkpoint: latest to fall back to the newest "
                "intact checkpoint in output_dir")
        if rank == 0:
            warn(f"skipping checkpoint {path}: {'; '.join(damaged)}; trying the previous one")


def _proposals(request: str, output_dir: str, warn):
    """Rank 0: the candidates to verify, in order; raises CheckpointError when there is nothing left to try."""
    if request != "latest":
        yield resolve_explicit(request)
        return
    yield from complete_checkpoints(output_dir, warn)
    if read_tracker(output_dir) is not None or list_iterations(output_dir):
        raise CheckpointError(
            f"resume_from_checkpoint latest: {output_dir} holds checkpoints, but none is complete and intact (see the "
            "warnings above). Restore or remove them, name one with resume_from_checkpoint, or unset "
            "resume_from_checkpoint (Megatron: drop --load) to start from scratch")
    log.info("resume_from_checkpoint latest: no checkpoint in %s yet; starting from scratch", output_dir)


def _from_rank0(value, group):
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [value]
        dist.broadcast_object_list(box, src=0, group=group)
        return box[0]
    return value


def _check_param_groups(metadata, optimizer, path: str) -> None:
    """A checkpoint with fewer optimizer parameter groups than this run cannot fill them (decoupled_lr adds one)."""
    saved = {key.split(".")[2] for key in metadata.state_dict_metadata if key.startswith("optimizer.param_groups.")}
    if len(saved) < len(optimizer.param_groups):
        raise CheckpointError(
            f"{path} holds optimizer state for {len(saved)} parameter groups and this run has "
            f"{len(optimizer.param_groups)}; the usual cause: it was saved without decoupled_lr (--decoupled-lr), "
            "which gives the embedding and output layer a group of their own. Resume without decoupled_lr, or with "
            "it and load_optim: false (--no-load-optim) to restore the weights and start fresh optimizer moments")


def _keep_saved_counters(sd: dict, metadata) -> None:
    """Training counters a checkpoint does not hold (one written before they existed, or a bf16 run's, which has
    no fp16 loss-scale state) keep their current values instead of failing the load."""
    if "train_state" not in sd:
        return
    saved = [key.split(".", 1)[1] for key in metadata.state_dict_metadata if key.startswith("train_state.")]
    sd["train_state"] = {k: v for k, v in sd["train_state"].items()
                         if any(key == k or key.startswith(k + ".") for key in saved)}


def load_checkpoint(path: str, t, model, optimizer, schedule, state, rank: int, world: int, global_batch: int,
                    group=None, warn=None) -> dict:
    """Restore what the config asks for from checkpoint `path`; returns what was restored."""
    warn = warn or log.warning
    metadata = FileSystemReader(path).read_metadata()
    sections = saved_sections(metadata)
    info = read_info(path)
    finetune = bool(t.finetune)
    want_optim = bool(t.load_optim) and not finetune
    want_rng = bool(t.load_rng) and not finetune
    if want_optim and "optimizer" not in sections:
        raise CheckpointError(f"{path} holds no optimizer state (it has {describe(sections)}; saved with "
                              "save_only_model or --no-save-optim). Resume with load_optim: false (--no-load-optim), "
                              "or start a new run from its weights with finetune: true (--finetune)")
    if want_rng and "rng" not in sections:
        raise CheckpointError(f"{path} holds no RNG state (saved with save_only_model or --no-save-rng). Resume with "
                              "load_rng: false (--no-load-rng), or finetune: true (--finetune)")
    saved_world = info.get("world_size")
    if want_rng and (saved_world != world or not has_rng_for(metadata, rank)):
        if rank == 0:
            warn(f"{path} was saved by {saved_world} ranks and is resumed on {world}: per-rank RNG states are not "
                 "restored; generators keep the run's seed")
        want_rng = False
    if want_optim:
        _check_param_groups(metadata, optimizer, path)
    sd = template_to_load(model, optimizer, schedule, state, rank, with_optimizer=want_optim, with_rng=want_rng,
                          with_counters=not finetune)
    _keep_saved_counters(sd, metadata)
    try:
        dcp.load(sd, checkpoint_id=path, process_group=group)
    except (Exception, CheckpointException) as exc:  # CheckpointException is a BaseException; its text lists ranks only
        raise CheckpointError(f"loading checkpoint {path} failed: {describe_failure(exc)}") from exc
    apply_loaded(sd, model, optimizer, schedule, state, rank)
    if not finetune and not want_optim:
        schedule.num_steps = max(state.consumed_train_samples - state.skipped_iters * global_batch, 0)
    restored = ["model"] + (["optimizer", "scheduler"] if want_optim else []) + (["rng"] if want_rng else []) \
        + ([] if finetune else ["counters"])
    if rank == 0:
        log.info("loaded checkpoint %s (saved by %s ranks): %s; iteration %d, consumed samples %d", path, saved_world,
                 ", ".join(restored), state.iteration, state.consumed_train_samples)
    return {"path": path, "restored": restored, "iteration": state.iteration, "saved_world_size": saved_world}
