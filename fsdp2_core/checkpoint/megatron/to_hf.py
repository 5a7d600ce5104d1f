"""A Megatron checkpoint to a Hugging Face model directory, one layer in memory at a time."""
from typing import Dict, List, Optional

import torch

from fsdp2_core.models.mtp import add_mtp_layers

from ..hf_export import (
    DEFAULT_MAX_SHARD_BYTES,
    StreamingSafetensorsWriter,
    export_tensors,
    inference_config,
    plan_shards,
    write_side_files,
)
from ..layout import CheckpointError
from .checkpoint import MegatronCheckpoint
from .names import Group, groups_for, is_vocab_tensor


def meta_model(config):
    """The Hugging Face model of `config` on the meta device, with its MTP layers (num_nextn_predict_layers)."""
    from transformers import AutoModelForCausalLM
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
        add_mtp_layers(model, int(getattr(config, "num_nextn_predict_layers", 0) or 0))
    return model


def plan_groups(config, available: List[str], where: str):
    """The Hugging Face model's tensors (name -> shape), the groups making them, checked against `available`."""
    model = meta_model(config)
    shapes = {name: tuple(t.shape) for name, t in export_tensors(model)}
    groups = groups_for(config, list(shapes))
    needed = {n for g in groups for n in g.mg}
    missing = sorted(needed - set(available))
    if missing:
        raise CheckpointError(f"{where} lacks {_some(missing)}, which the {config.model_type} model needs; the saved "
                              "args and the stored tensors disagree")
    unplaced = sorted(set(available) - needed)
    if unplaced:
        raise CheckpointError(f"{where} holds {_some(unplaced)}, which has no place in the {config.model_type} model "
                              "the saved args describe; the architecture is not one the engine builds")
    return model, shapes, groups


def _some(names: List[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f" (and {len(names) - n} more)" if len(names) > n else "")


def megatron_to_hf(ckpt: MegatronCheckpoint, config, out_dir: str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                   dtype: Optional[torch.dtype] = None, trim_vocab: Optional[int] = None) -> Dict[str, object]:
    """Write `config`'s model, filled from `ckpt`, into the existing empty directory `out_dir`."""
    reader = ckpt.reader
    padded = config.vocab_size
    if trim_vocab is not None:
        if not 0 < trim_vocab <= padded:
            raise CheckpointError(f"--trim-vocab {trim_vocab}: the checkpoint's vocabulary has {padded} rows; give a "
                                  f"size from 1 to {padded} (the tokenizer's)")
        config.vocab_size = trim_vocab
    model, shapes, groups = plan_groups(config, reader.names(), ckpt.path)
    stored = reader.get("embedding.word_embeddings.weight").dtype
    out_dtype = dtype or stored
    entries = [(name, shapes[name], out_dtype if out_dtype.is_floating_point else stored)
               for g in groups for name in g.hf]
    writer = StreamingSafetensorsWriter(out_dir, entries, max_shard_bytes)
    for group in groups:
        for name, tensor in _convert(group, reader, trim_vocab).items():
            if tuple(tensor.shape) != shapes[name]:
                raise CheckpointError(f"{ckpt.path}: {name} comes out {tuple(tensor.shape)} from "
                                      f"{', '.join(group.mg[:2])}, but the {config.model_type} model needs "
                                      f"{shapes[name]}")
            writer.write(name, tensor.to(out_dtype) if tensor.is_floating_point() else tensor)
    writer.close()
    class_name = type(model).__name__
    write_side_files(out_dir, inference_config(config, class_name, out_dtype))
    return {"tensors": len(entries), "files": len(plan_shards(entries, max_shard_bytes)),
            "padding_rows_dropped": padded - config.vocab_size}


def _convert(group: Group, reader, trim_vocab: Optional[int]) -> Dict[str, torch.Tensor]:
    out = group.to_hf({n: reader.get(n) for n in group.mg})
    if trim_vocab is not None:
        out = {n: (t[:trim_vocab] if is_vocab_tensor(n) else t) for n, t in out.items()}
    return {n: out[n] for n in group.hf}
