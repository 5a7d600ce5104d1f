"""One Megatron checkpoint, opened: where it is, its saved args and counters, and its tensors."""
from dataclasses import dataclass
from typing import Any, Optional

from ..layout import CheckpointError
from .detect import DIST, LEGACY, Located, locate
from .read_dist import DistReader
from .read_legacy import LegacyReader, first_file
from .safe_load import load_megatron_pickle


@dataclass
class MegatronCheckpoint:
    located: Located
    args: Any          # the argparse.Namespace Megatron saved
    common: dict       # iteration, opt_param_scheduler, rng_state, checkpoint_version, ...
    reader: Any        # LegacyReader or DistReader: names() and get(name)

    @property
    def path(self) -> str:
        return self.located.path

    @property
    def format(self) -> str:
        return self.located.format

    @property
    def iteration(self) -> int:
        if self.located.release:
            return 0
        return int(self.common.get("iteration", self.common.get("total_iters", self.located.iteration)))

    @property
    def consumed_train_samples(self) -> int:
        """Megatron keeps it in the args; checkpoints older than that imply iteration x global batch."""
        consumed = int(getattr(self.args, "consumed_train_samples", 0) or 0)
        if consumed == 0 and self.iteration > 0 and getattr(self.args, "global_batch_size", None):
            consumed = self.iteration * int(self.args.global_batch_size)
        return consumed

    @property
    def scheduler(self) -> Optional[dict]:
        return self.common.get("opt_param_scheduler") or self.common.get("lr_scheduler")


def open_checkpoint(path: str, trust: bool = False) -> MegatronCheckpoint:
    """Open the Megatron checkpoint `path` names (a save directory or an iter_XXXXXXX / release directory)."""
    located = locate(path)
    if located is None:
        raise CheckpointError(f"{path} is not a Megatron checkpoint: give a save directory holding "
                              "latest_checkpointed_iteration.txt, or an iter_XXXXXXX / release directory holding "
                              "mp_rank_* directories (format torch) or metadata.json and common.pt (torch_dist)")
    if located.format == LEGACY:
        first = load_megatron_pickle(first_file(located.path), trust=trust)
        args = _args(first, first_file(located.path))
        reader = LegacyReader(located.path, args, trust=trust, first=first)
    elif located.format == DIST:
        reader = DistReader(located.path, trust=trust)
        args = _args(reader.common(), f"{located.path}/common.pt")
        layers = reader.layers()
        if layers is not None and getattr(args, "num_layers", layers) != layers:
            raise CheckpointError(f"{located.path}: the stored layers are stacked {layers} deep but the saved args say "
                                  f"num_layers {args.num_layers}")
    else:  # locate() returns only the two
        raise CheckpointError(f"{located.path}: unknown format {located.format}")
    return MegatronCheckpoint(located, args, reader.common(), reader)


def _args(state: dict, where: str):
    args = state.get("args")
    if args is None:
        raise CheckpointError(f"{where} holds no saved args, so the model's architecture is unknown; it was not "
                              "written by Megatron-LM's training (megatron.training.checkpointing)")
    return args
