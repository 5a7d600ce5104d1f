"""Resuming: which checkpoint, which parts of it, and putting them back.

    resume_from_checkpoint: latest   the newest complete checkpoint in output_dir (Megatron --load == --save);
                                     incomplete ones are skipped with a warning; no checkpoint at all starts
                                     fresh (a first run), only incomplete ones is an error
    resume_from_checkpoint: <path>   that iter_XXXXXXX directory, or the tracker's checkpoint in a save
                                     directory; missing or incomplete is an error
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

from .layout import CheckpointError, latest_complete, list_iterations, read_info, read_tracker, resolve_explicit
from .state import apply_loaded, describe, has_rng_for, saved_sections, template_to_load

log = logging.getLogger(__name__)


def resolve(request: Optional[str], output_dir: str, rank: int, group=None, warn=None) -> Optional[str]:
    """The checkpoint to load (rank 0 decides, every rank gets the same answer), or None to start fresh."""
    if not request:
        return None
    decision, error = None, None
    if rank == 0:
        try:
            if request == "latest":
                decision = latest_complete(output_dir, warn=warn or log.warning)
                if decision is None and (read_tracker(output_dir) is not None or list_iterations(output_dir)):
                    raise CheckpointError(
                        f"resume_from_checkpoint latest: {output_dir} holds checkpoints, but none is complete (see "
                        "the warnings above). Restore or remove them, name one with resume_from_checkpoint, or "
                        "unset resume_from_checkpoint (Megatron: drop --load) to start from scratch")
                if decision is None:
                    log.info("resume_from_checkpoint latest: no checkpoint in %s yet; starting from scratch",
                             output_dir)
            else:
                decision = resolve_explicit(request)
        except CheckpointError as exc:
            error = str(exc)
    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [(decision, error)]
        dist.broadcast_object_list(box, src=0, group=group)
        decision, error = box[0]
    if error:
        raise CheckpointError(error)
    return decision


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
    sd = template_to_load(model, optimizer, schedule, state, rank, with_optimizer=want_optim, with_rng=want_rng,
                          with_counters=not finetune)
    dcp.load(sd, checkpoint_id=path, process_group=group)
    apply_loaded(sd, model, optimizer, schedule, state, rank)
    if not finetune and not want_optim:
        schedule.num_steps = max(state.consumed_train_samples - state.skipped_iters * global_batch, 0)
    restored = ["model"] + (["optimizer", "scheduler"] if want_optim else []) + (["rng"] if want_rng else []) \
        + ([] if finetune else ["counters"])
    if rank == 0:
        log.info("loaded checkpoint %s (saved by %s ranks): %s; iteration %d, consumed samples %d", path, saved_world,
                 ", ".join(restored), state.iteration, state.consumed_train_samples)
    return {"path": path, "restored": restored, "iteration": state.iteration, "saved_world_size": saved_world}
