"""Continuing a Megatron-LM run from its checkpoint, as Megatron's load_checkpoint would.

    weights        every tensor of the model, mapped and sharded into this run's layout
    iteration      the saved iteration (the loop logs iteration + 1 first); 0 with --finetune
    samples        args.consumed_train_samples: the data continues where Megatron's sampler stopped
    LR schedule    opt_param_scheduler.num_steps, after checking the run's schedule equals the saved one
                   (Megatron asserts the same); not read with --no-load-optim or --finetune, so the
                   schedule starts from step 0 then, as in Megatron
    moments        Adam's exp_avg / exp_avg_sq from a torch_dist checkpoint of Megatron's distributed
                   optimizer saved per parameter (--dist-ckpt-optim-fully-reshardable); otherwise the
                   run starts with fresh moments and says so
    generators     python / numpy / torch states of rank 0 (Megatron's rng_state[0]); not with
                   --no-load-rng or --finetune
"""
import math
import random
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from fsdp2_core.models.build import copy_full_into

from ..layout import CheckpointError
from .checkpoint import MegatronCheckpoint, open_checkpoint
from .moments import restore_moments
from .to_hf import plan_groups

# OptimizerParamScheduler.state_dict() field -> the schedule's attribute (samples, as Megatron counts them)
_SCHEDULE_FIELDS = {"max_lr": "max_lr", "min_lr": "min_lr", "lr_warmup_steps": "warmup_steps",
                    "lr_decay_steps": "decay_steps", "lr_decay_style": "style", "start_wd": "start_wd",
                    "end_wd": "end_wd", "wd_incr_steps": "wd_incr_steps", "wd_incr_style": "wd_incr_style"}


def load_megatron(path: str, t, model, optimizer, schedule, state, rank: int,
                  print_fn: Callable[[str], None]) -> dict:
    """Restore what the config asks for from the Megatron checkpoint `path`; returns what was restored."""
    ckpt = open_checkpoint(path, trust=bool(getattr(t, "trust_megatron_pickle", False)))
    groups = load_weights(ckpt, model)
    restored = ["model"]
    finetune = bool(t.finetune)
    if not finetune:
        state.iteration = ckpt.iteration
        state.consumed_train_samples = ckpt.consumed_train_samples
        restored.append("counters")
    if t.load_optim and not finetune:
        _load_schedule(ckpt, schedule)
        restored.append("scheduler")
        why = restore_moments(ckpt, model, optimizer, groups)
        if why is None:
            restored.append("optimizer moments")
        elif rank == 0:
            print_fn(f" optimizer moments start fresh: {why}")
    elif rank == 0:
        print_fn(" --no-load-optim/--finetune: Megatron's optimizer and LR schedule are not read; the schedule "
                 "starts at step 0, as in Megatron")
    if t.load_rng and not finetune and _restore_rng(ckpt, bool(getattr(t, "trust_megatron_pickle", False))):
        restored.append("rng")
    return {"path": ckpt.path, "restored": restored, "iteration": state.iteration, "format": ckpt.format,
            "consumed_train_samples": state.consumed_train_samples}


def load_weights(ckpt: MegatronCheckpoint, model):
    """Every tensor of `model` (sharded or not) from the checkpoint, one layer read at a time; returns the groups."""
    _, shapes, groups = plan_groups(model.config, ckpt.reader.names(), ckpt.path)
    params = dict(model.state_dict(keep_vars=True))
    for group in groups:
        if group.alias:  # an export-only copy (MTP's embedding and head): the model shares the main ones
            continue
        converted = group.to_hf({n: ckpt.reader.get(n) for n in group.mg})
        for name in group.hf:
            full, target = converted[name], params[name]
            if tuple(full.shape) != tuple(target.shape):
                raise CheckpointError(f"{ckpt.path}: tensor {name} (from {', '.join(group.mg[:2])}) has shape "
                                      f"{tuple(full.shape)} but the model's is {tuple(target.shape)}; the "
                                      "architecture flags and the checkpoint disagree")
            copy_full_into(target, full)
    return groups


def _load_schedule(ckpt: MegatronCheckpoint, schedule) -> None:
    saved = ckpt.scheduler
    if not saved:
        raise CheckpointError(f"{ckpt.path} holds no opt_param_scheduler (saved with --no-save-optim?); resume with "
                              "--no-load-optim, or start a new run from its weights with --finetune")
    diffs = _schedule_differences(saved, schedule)
    if diffs:
        raise CheckpointError(f"{ckpt.path}: the run's learning-rate schedule differs from the one Megatron saved "
                              f"({'; '.join(diffs)}); Megatron refuses this too. Give the flags the checkpoint was "
                              "trained with (--lr, --min-lr, --lr-warmup-*, --lr-decay-*, --train-iters, "
                              "--global-batch-size, --weight-decay), or --no-load-optim to start the schedule afresh")
    schedule.num_steps = saved["num_steps"]


def _schedule_differences(saved: dict, schedule) -> List[str]:
    out = []
    for key, attr in _SCHEDULE_FIELDS.items():
        if key not in saved or saved[key] is None:
            continue
        ours, theirs = getattr(schedule, attr), saved[key]
        same = (str(ours) == str(theirs)) if isinstance(theirs, str) else \
            math.isclose(float(ours), float(theirs), rel_tol=1e-9, abs_tol=1e-12)
        if not same:
            out.append(f"{key}: run {ours}, checkpoint {theirs}")
    return out


def _restore_rng(ckpt: MegatronCheckpoint, trust: bool) -> bool:
    states = rng_states(ckpt, trust)
    if not states:
        return False
    s = states[0]
    random.setstate(s["random_rng_state"])
    np.random.set_state(s["np_rng_state"])
    torch.set_rng_state(s["torch_rng_state"])
    return True


def rng_states(ckpt: MegatronCheckpoint, trust: bool = False) -> Optional[List[Dict]]:
    """Megatron's rng_state list (one dict per data-parallel rank when data_parallel_random_init), rank 0's."""
    value = ckpt.common.get("rng_state")
    if value is None and hasattr(ckpt.reader, "read_object"):
        value = ckpt.reader.read_object("rng_state", trust)
    if isinstance(value, list) and value and isinstance(value[0], dict) and "random_rng_state" in value[0]:
        return value
    return None
