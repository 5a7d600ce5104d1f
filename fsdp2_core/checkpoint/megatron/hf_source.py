"""The Hugging Face tensors a Megatron checkpoint is written from: a model directory or one of our checkpoints."""
import json
import os
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch

from ..hf_export import INDEX, SINGLE, checkpoint_tensors
from ..layout import CheckpointError, read_info


@dataclass
class HfSource:
    path: str
    config: object                                   # transformers config
    shapes: Dict[str, Tuple[int, ...]]               # name -> shape of every tensor the model stores
    read: Callable[[str], torch.Tensor]
    iteration: int = 0
    consumed_train_samples: int = 0


def from_hf_dir(path: str) -> HfSource:
    """A directory `save_pretrained` wrote: config.json and safetensors (one file, or shards with an index)."""
    from safetensors import safe_open
    from transformers import AutoConfig
    index = os.path.join(path, INDEX)
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as fh:
            files = {name: os.path.join(path, f) for name, f in json.load(fh)["weight_map"].items()}
    elif os.path.isfile(os.path.join(path, SINGLE)):
        with safe_open(os.path.join(path, SINGLE), "pt") as fh:
            files = {name: os.path.join(path, SINGLE) for name in fh.keys()}
    else:
        raise CheckpointError(f"{path} has no {SINGLE} or {INDEX}: only safetensors weights are read; re-save the "
                              "model with save_pretrained(safe_serialization=True)")
    shapes = {}
    for name, file in files.items():
        with safe_open(file, "pt") as fh:
            shapes[name] = tuple(fh.get_slice(name).get_shape())

    def read(name: str) -> torch.Tensor:
        with safe_open(files[name], "pt") as fh:
            return fh.get_tensor(name)
    return HfSource(path, AutoConfig.from_pretrained(path), shapes, read)


def from_our_checkpoint(path: str) -> HfSource:
    """One of this engine's iter_XXXXXXX checkpoints: its config.json and DCP model tensors, and its counters."""
    config, entries, read = checkpoint_tensors(path)
    info = read_info(path)
    return HfSource(path, config, {n: s for n, s, _ in entries}, lambda name: read(name)(),
                    int(info.get("iteration", 0)), int(info.get("consumed_train_samples", 0)))
