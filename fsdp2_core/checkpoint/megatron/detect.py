"""Is a directory a Megatron-LM checkpoint, which iteration, and in which format?

    <save>/latest_checkpointed_iteration.txt      "100" or "release"
    <save>/iter_0000100/ or <save>/release/       one checkpoint:
        mp_rank_TT[_PPP][_EEE]/model_optim_rng.pt     format `torch` (legacy: one pickle per model-parallel rank)
        metadata.json, common.pt, .metadata, *.distcp format `torch_dist` (megatron.core.dist_checkpointing)

A save directory or a checkpoint directory may be given. This engine's own checkpoints
share the tracker and iter_ names but hold `checkpoint_info.json` and no `metadata.json`
or `mp_rank_*`: they are not Megatron's.
"""
import json
import os
import re
from dataclasses import dataclass
from typing import Optional

from ..layout import INFO, TRACKER, CheckpointError, iter_name

LEGACY, DIST = "torch", "torch_dist"
RELEASE = "release"
MP_RANK = re.compile(r"^mp_rank_(\d{2})(?:_(\d{3}))?(?:_(\d{3}))?$")
DIST_METADATA = "metadata.json"
COMMON = "common.pt"


@dataclass(frozen=True)
class Located:
    save_dir: Optional[str]   # the directory holding the tracker (None when an iter_ directory was named alone)
    path: str                 # the checkpoint directory: iter_XXXXXXX/ or release/
    iteration: int            # 0 for a release checkpoint
    release: bool
    format: str               # LEGACY or DIST


def _format_of(path: str) -> Optional[str]:
    if os.path.isfile(os.path.join(path, DIST_METADATA)):
        try:
            with open(os.path.join(path, DIST_METADATA), encoding="utf-8") as fh:
                backend = json.load(fh).get("sharded_backend")
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{os.path.join(path, DIST_METADATA)} is unreadable ({exc}); the torch_dist "
                                  "checkpoint is damaged: copy it again") from None
        if backend not in ("torch_dist", "zarr"):
            raise CheckpointError(f"{path}: metadata.json names sharded_backend {backend!r}; only torch_dist "
                                  "checkpoints are read (re-save with --ckpt-format torch_dist)")
        if backend == "zarr":
            raise CheckpointError(f"{path}: zarr distributed checkpoints are not read; convert it with Megatron to "
                                  "--ckpt-format torch_dist first")
        return DIST
    if os.path.isdir(path) and any(MP_RANK.match(n) for n in os.listdir(path)):
        return LEGACY
    return None


def _tracked(save_dir: str):
    with open(os.path.join(save_dir, TRACKER), encoding="utf-8") as fh:
        text = fh.read().strip()
    if text == RELEASE:
        return os.path.join(save_dir, RELEASE), 0, True
    try:
        iteration = int(text)
    except ValueError:
        raise CheckpointError(f"{os.path.join(save_dir, TRACKER)} holds {text!r}, neither an iteration nor "
                              "'release'; name the checkpoint directory (iter_XXXXXXX) instead") from None
    return os.path.join(save_dir, iter_name(iteration)), iteration, False


def locate(path: str) -> Optional[Located]:
    """The Megatron checkpoint `path` names, or None when it is not one (a missing or damaged one is an error)."""
    path = os.path.normpath(path)
    if not os.path.isdir(path):
        return None
    if os.path.isfile(os.path.join(path, TRACKER)):
        target, iteration, release = _tracked(path)
        if not os.path.isdir(target):
            if _looks_like_ours(path):
                return None
            raise CheckpointError(f"{os.path.join(path, TRACKER)} names {os.path.basename(target)}/, which does not "
                                  f"exist in {path}; name an existing iter_XXXXXXX directory instead")
        fmt = _format_of(target)
        if fmt is None:
            if os.path.isfile(os.path.join(target, INFO)):
                return None  # this engine's own checkpoint
            raise CheckpointError(f"{target} is neither a Megatron torch checkpoint (mp_rank_* directories) nor a "
                                  "torch_dist one (metadata.json, common.pt, .metadata)")
        return Located(path, target, iteration, release, fmt)
    name = os.path.basename(path)
    m = re.match(r"^iter_(\d{7,})$", name)
    if m or name == RELEASE:
        fmt = _format_of(path)
        if fmt is None:
            return None
        parent = os.path.dirname(path)
        return Located(parent, path, int(m.group(1)) if m else 0, not m, fmt)
    return None


def _looks_like_ours(save_dir: str) -> bool:
    return any(os.path.isfile(os.path.join(save_dir, n, INFO)) for n in os.listdir(save_dir) if n.startswith("iter_"))


def holds_checkpoint(path: str) -> bool:
    """True when `path` is, or directly holds, a checkpoint of this engine or of Megatron (a tracker, iter_*,
    release/, mp_rank_* or distributed-checkpoint files): a directory a conversion must never replace."""
    if not os.path.isdir(path):
        return False
    names = os.listdir(path)
    marks = (TRACKER, INFO, DIST_METADATA, COMMON, ".metadata")
    return any(n in marks or n == RELEASE or n.startswith("iter_") or MP_RANK.match(n) for n in names)
