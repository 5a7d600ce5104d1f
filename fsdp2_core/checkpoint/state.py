"""What a checkpoint holds, as one DCP state dict, and how it goes back into a run.

    model.<fqn>                    sharded weights (FSDP / TP DTensors, resharded on load)
    optimizer.state.<fqn>.*        sharded AdamW moments and step, keyed by parameter name
    optimizer.param_groups.*       hyperparameters of each group
    scheduler.num_steps            the LR / WD schedule position (in samples, as Megatron)
    train_state.*                  iteration, consumed_train_samples, skipped_iters, nan_iters
    rng.rank<r>                    rank r's python / numpy / torch / device generator states

The data position is `train_state.consumed_train_samples`: the loader is rebuilt from
it, so a resume on any world size reads exactly the samples that come next.
"""
import pickle
import random

import numpy as np
import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

_OPTIONS = StateDictOptions(full_state_dict=False)


def _device_module():
    for name in ("cuda", "npu"):
        mod = getattr(torch, name, None)
        if mod is not None and hasattr(mod, "is_available") and mod.is_available():
            return mod
    return None


def capture_rng() -> bytes:
    """This rank's generator states (python, numpy, torch CPU, accelerator), pickled."""
    mod = _device_module()
    return pickle.dumps({"python": random.getstate(), "numpy": np.random.get_state(),
                         "torch": torch.get_rng_state(),
                         "device": mod.get_rng_state() if mod is not None else None})


def restore_rng(blob: bytes) -> None:
    state = pickle.loads(blob)
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    mod = _device_module()
    if mod is not None and state.get("device") is not None:
        mod.set_rng_state(state["device"])


def rng_key(rank: int) -> str:
    return f"rank{rank}"


def state_to_save(model, optimizer, schedule, train_state, rank: int, with_optimizer: bool, with_rng: bool) -> dict:
    """The state dict handed to DCP: sharded tensors and small picklable values."""
    if with_optimizer:
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
    else:
        model_sd, optim_sd = get_model_state_dict(model, options=_OPTIONS), None
    out = {"model": model_sd, "train_state": dict(train_state.state_dict())}
    if optim_sd is not None:
        out["optimizer"] = optim_sd
        out["scheduler"] = dict(schedule.state_dict())
    if with_rng:
        out["rng"] = {rng_key(rank): capture_rng()}
    return out


def template_to_load(model, optimizer, schedule, train_state, rank: int, with_optimizer: bool,
                     with_rng: bool, with_counters: bool) -> dict:
    """Placeholders DCP fills in place (tensors) or replaces (values), for the parts to restore."""
    if with_optimizer:
        model_sd, optim_sd = get_state_dict(model, optimizer, options=_OPTIONS)
    else:
        model_sd, optim_sd = get_model_state_dict(model, options=_OPTIONS), None
    out = {"model": model_sd}
    if with_counters:
        out["train_state"] = dict(train_state.state_dict())
    if optim_sd is not None:
        out["optimizer"] = optim_sd
        out["scheduler"] = dict(schedule.state_dict())
    if with_rng:
        out["rng"] = {rng_key(rank): b""}
    return out


def apply_loaded(sd: dict, model, optimizer, schedule, train_state, rank: int) -> None:
    """Put a loaded state dict back into the live objects."""
    if "optimizer" in sd:
        set_state_dict(model, optimizer, model_state_dict=sd["model"], optim_state_dict=sd["optimizer"],
                       options=_OPTIONS)
        schedule.load_state_dict(sd["scheduler"])
    else:
        set_model_state_dict(model, sd["model"], options=_OPTIONS)
    if "train_state" in sd:
        train_state.load_state_dict(sd["train_state"])
    if "rng" in sd:
        restore_rng(sd["rng"][rng_key(rank)])


def saved_sections(metadata) -> set:
    """Top-level sections present in a checkpoint's DCP metadata (model, optimizer, rng, ...)."""
    return {key.split(".", 1)[0] for key in metadata.state_dict_metadata}


def has_rng_for(metadata, rank: int) -> bool:
    return f"rng.{rng_key(rank)}" in metadata.state_dict_metadata


def describe(sections: set) -> str:
    return ", ".join(sorted(sections)) or "nothing"

