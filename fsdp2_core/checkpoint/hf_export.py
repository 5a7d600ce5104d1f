"""Hugging Face export: safetensors (sharded with an index when large), config, generation config, tokenizer.

    <output_dir>/hf_model/     written at the end of a completed run when save_hf_weights is on
    tools/convert_ckpt.py      the same from any saved iter_XXXXXXX checkpoint

`AutoModelForCausalLM.from_pretrained(<dir>)` loads it. Tensors are streamed: the file
layout (names, shapes, dtypes, byte offsets, shard boundaries) is known from the global
shapes before any data moves, so each safetensors header is written first and every
tensor is appended as soon as it is gathered. A rank never holds more than one full
tensor: FSDP / TP / EP shards (DTensors) are gathered one parameter at a time, rank 0
writes it, and it is dropped before the next one.
"""
import copy
import json
import logging
import os
import shutil
import struct
import warnings
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from fsdp2_core.models.mtp import add_mtp_layers, export_aliases

from . import checksums
from .layout import CheckpointError, completeness

log = logging.getLogger(__name__)

HF_DIR = "hf_model"                       # <output_dir>/hf_model/
DEFAULT_MAX_SHARD_BYTES = 5 * 1024 ** 3   # as transformers' save_pretrained
INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"               # <save>/iter_XXXXXXX/tokenizer/: the run's tokenizer, for conversion later

_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}
for _name, _code in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
    if hasattr(torch, _name):
        _DTYPES[getattr(torch, _name)] = _code

Entry = Tuple[str, Tuple[int, ...], torch.dtype]


def _nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n * torch.empty((), dtype=dtype).element_size()


def plan_shards(entries: Sequence[Entry], max_bytes: int) -> List[List[Entry]]:
    """Consecutive groups of at most `max_bytes` (a single larger tensor gets a shard of its own)."""
    shards, current, size = [], [], 0
    for e in entries:
        n = _nbytes(e[1], e[2])
        if current and size + n > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(e)
        size += n
    if current or not shards:
        shards.append(current)
    return shards


class StreamingSafetensorsWriter:
    """Writes tensors, in the planned order, straight into safetensors files of known layout."""

    def __init__(self, out_dir: str, entries: Sequence[Entry], max_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        self.out_dir = out_dir
        self.shards = plan_shards(entries, max_bytes)
        n = len(self.shards)
        self.files = [SINGLE] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
        self.order = [e for shard in self.shards for e in shard]
        self.position = 0
        self.total = sum(_nbytes(s, d) for _, s, d in self.order)
        self._shard_of = {e[0]: i for i, shard in enumerate(self.shards) for e in shard}
        self._fh, self._open_shard = None, -1

    def _start_shard(self, i: int) -> None:
        self._close_file()
        header, offset = {}, 0
        for name, shape, dtype in self.shards[i]:
            if dtype not in _DTYPES:
                raise ValueError(f"tensor {name}: dtype {dtype} has no safetensors code")
            n = _nbytes(shape, dtype)
            header[name] = {"dtype": _DTYPES[dtype], "shape": [int(s) for s in shape],
                            "data_offsets": [offset, offset + n]}
            offset += n
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned
        self._fh = open(os.path.join(self.out_dir, self.files[i]), "wb")
        self._fh.write(struct.pack("<Q", len(raw)))
        self._fh.write(raw)
        self._open_shard = i

    def write(self, name: str, tensor: torch.Tensor) -> None:
        expected = self.order[self.position]
        if name != expected[0] or tuple(tensor.shape) != tuple(expected[1]) or tensor.dtype != expected[2]:
            raise ValueError(f"expected tensor {expected[0]} {tuple(expected[1])} {expected[2]}, "
                             f"got {name} {tuple(tensor.shape)} {tensor.dtype}")
        shard = self._shard_of[name]
        if shard != self._open_shard:
            self._start_shard(shard)
        data = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        self._fh.write(data.numpy().data)
        self.position += 1

    def _close_file(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def close(self) -> None:
        if self.position != len(self.order):
            raise ValueError(f"only {self.position} of {len(self.order)} tensors were written")
        if not self.order:
            self._start_shard(0)
        self._close_file()
        if len(self.files) > 1:
            weight_map = {name: self.files[self._shard_of[name]] for name, _, _ in self.order}
            with open(os.path.join(self.out_dir, INDEX), "w", encoding="utf-8") as fh:
                json.dump({"metadata": {"total_size": self.total}, "weight_map": weight_map}, fh, indent=2)


def export_tensors(model: torch.nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """The tensors `save_pretrained` would write: the state dict's persistent entries, a tied weight once;
    with multi-token prediction layers, also the copies of the shared embedding and head DeepSeek-V3 keeps
    beside each of them (models/mtp.py)."""
    seen, out = set(), []
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        out.append((name, tensor))
    return out + export_aliases(model)


def mtp_depths_in(names, num_hidden_layers: int, prefix: str = "") -> int:
    """How many MTP layers (model.layers.<L+k>.eh_proj) a checkpoint's tensor names hold."""
    depth = 0
    while f"{prefix}model.layers.{num_hidden_layers + depth}.eh_proj.weight" in names:
        depth += 1
    return depth


def hf_class_name(model: torch.nn.Module) -> str:
    """The transformers class under FSDP2's dynamic `FSDP<Class>` subclass."""
    for cls in type(model).__mro__:
        if cls.__module__.startswith("transformers"):
            return cls.__name__
    return type(model).__name__


def inference_config(config, class_name: Optional[str], dtype: Optional[torch.dtype]):
    config = copy.deepcopy(config)
    config.use_cache = True  # training turned the cache off; generation wants it
    if class_name:
        config.architectures = [class_name]
    if dtype is not None:
        config.dtype = dtype
    return config


def hf_tokenizer(tokenizer):
    """A tokenizer with `save_pretrained` (a Megatron wrapper's inner HF tokenizer), or None."""
    for cand in (tokenizer, getattr(tokenizer, "tokenizer", None), getattr(tokenizer, "_tokenizer", None)):
        if cand is not None and hasattr(cand, "save_pretrained"):
            return cand
    return None


def write_side_files(out_dir: str, config, generation_config=None, tokenizer=None) -> None:
    """config.json, generation_config.json and the tokenizer files."""
    config.save_pretrained(out_dir)
    if generation_config is None:
        from transformers import GenerationConfig
        generation_config = GenerationConfig.from_model_config(config)
    generation_config.save_pretrained(out_dir)
    tok = hf_tokenizer(tokenizer)
    if tok is not None:
        tok.save_pretrained(out_dir)
    elif tokenizer is not None:
        log.warning("the tokenizer (%s) has no Hugging Face form; %s has no tokenizer files",
                    type(tokenizer).__name__, out_dir)


def _stream(out_dir: str, entries: Sequence[Entry], fetch: Iterable[Tuple[str, Callable[[], torch.Tensor]]],
            writer_rank: bool, max_bytes: int) -> Optional[str]:
    """Run every fetch (collectives included) on all ranks; the writer rank writes. Returns an error text."""
    writer, error = None, None
    if writer_rank:
        try:
            writer = StreamingSafetensorsWriter(out_dir, entries, max_bytes)
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    for name, get in _progress(fetch, len(entries), writer_rank, out_dir):
        full = get()
        if writer is not None and error is None:
            try:
                writer.write(name, full)
            except (OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        del full
    if writer is not None and error is None:
        try:
            writer.close()
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    return error


def _progress(items, total: int, show: bool, out_dir: str):
    """A progress bar (tensors written) on the writer rank; plain iteration elsewhere or without tqdm."""
    if not show:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return items
    return tqdm(items, total=total, desc=f"export {os.path.basename(out_dir.rstrip('/'))}", unit="tensor",
                mininterval=1.0, leave=False)


def _publish(tmp: str, out_dir: str) -> None:
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.rename(tmp, out_dir)


def export_model(model: torch.nn.Module, out_dir: str, tokenizer=None, generation_config=None,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, group=None) -> None:
    """Collective: gather the (sharded) model one tensor at a time; rank 0 writes `out_dir`."""
    rank = dist.get_rank() if dist.is_initialized() else 0
    tensors = export_tensors(model)
    entries = [(name, tuple(t.shape), t.dtype) for name, t in tensors]
    tmp = out_dir.rstrip("/") + ".partial"
    error = None
    if rank == 0:
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"

    def gather(t):
        return lambda: (t.full_tensor() if isinstance(t, DTensor) else t).detach()

    error = _stream(tmp, entries, ((name, gather(t)) for name, t in tensors), rank == 0 and error is None,
                    max_shard_bytes) or error
    if rank == 0 and error is None:
        try:
            dtype = entries[0][2] if entries and entries[0][2].is_floating_point else None
            config = inference_config(model.config, hf_class_name(model), dtype)
            gen = generation_config or getattr(model, "generation_config", None)
            write_side_files(tmp, config, gen, tokenizer)
            _publish(tmp, out_dir)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
    error = shared_error(error, group)
    if error:
        raise CheckpointError(f"Hugging Face export to {out_dir} failed: {error}. The DCP checkpoints are intact; "
                              f"run tools/convert_ckpt.py on one once the cause is fixed")
    if rank == 0:
        log.info("Hugging Face model written to %s", out_dir)


def export_checkpoint(checkpoint_dir: str, out_dir: str, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                      dtype: Optional[torch.dtype] = None) -> Dict[str, object]:
    """One process: a saved DCP checkpoint (with its config.json) into the existing empty directory `out_dir`.

    Reads one tensor at a time from the DCP files; the model is only built on the meta device,
    to learn which tensors `save_pretrained` writes (tied weights once, persistent buffers).
    The caller stages and publishes `out_dir` (checkpoint.output_dir), so nothing is left half-written.
    """
    from transformers import GenerationConfig

    config, entries, read = checkpoint_tensors(checkpoint_dir, dtype)
    error = _stream(out_dir, entries, ((name, read(name)) for name, _, _ in entries), True, max_shard_bytes)
    if error:
        from .layout import CheckpointError
        raise CheckpointError(f"writing {out_dir} failed: {error}")
    gen_path = os.path.join(checkpoint_dir, "generation_config.json")
    gen = GenerationConfig.from_pretrained(checkpoint_dir) if os.path.isfile(gen_path) else None
    out_dtype = entries[0][2] if entries and entries[0][2].is_floating_point else None
    write_side_files(out_dir, inference_config(config, (config.architectures or [None])[0], out_dtype), gen)
    tok_dir = os.path.join(checkpoint_dir, TOKENIZER_DIR)
    if os.path.isdir(tok_dir):
        for name in os.listdir(tok_dir):
            shutil.copy2(os.path.join(tok_dir, name), os.path.join(out_dir, name))
    return {"tensors": len(entries), "files": len(plan_shards(entries, max_shard_bytes)), "output": out_dir}


def checkpoint_tensors(checkpoint_dir: str, dtype: Optional[torch.dtype] = None):
    """(HF config, [(name, shape, dtype)], read(name) -> a callable giving the tensor) of one of our checkpoints."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader
    from transformers import AutoConfig, AutoModelForCausalLM

    ok, why = completeness(checkpoint_dir)
    if not ok:
        raise CheckpointError(f"{checkpoint_dir} is not a complete checkpoint: {why}")
    damaged = checksums.mismatches(checkpoint_dir)
    if damaged:
        raise CheckpointError(f"{checkpoint_dir} is damaged: {'; '.join(damaged)}; export an intact checkpoint")
    if not os.path.isfile(os.path.join(checkpoint_dir, "config.json")):
        raise CheckpointError(f"{checkpoint_dir} has no config.json (the model's Hugging Face config); "
                              "it was not written by this engine's checkpointing")
    config = AutoConfig.from_pretrained(checkpoint_dir)
    metadata = FileSystemReader(checkpoint_dir).read_metadata().state_dict_metadata
    with torch.device("meta"):
        meta_model = AutoModelForCausalLM.from_config(config)
        add_mtp_layers(meta_model, mtp_depths_in(metadata, config.num_hidden_layers, prefix="model."))
    if not config.architectures:
        config.architectures = [type(meta_model).__name__]
    aliases = dict(export_aliases(meta_model))
    keys, entries = {}, []
    for name, expected in export_tensors(meta_model):
        key = keys[name] = "model." + _alias_source(meta_model, name, aliases)
        if key not in metadata:
            raise CheckpointError(f"{checkpoint_dir}: the checkpoint has no tensor {key} that "
                                  f"{type(meta_model).__name__} needs")
        md = metadata[key]
        if tuple(md.size) != tuple(expected.shape):
            raise CheckpointError(f"{checkpoint_dir}: tensor {key} is stored with shape {tuple(md.size)}, but the "
                                  f"model its config.json describes needs {tuple(expected.shape)}")
        stored = md.properties.dtype
        entries.append((name, tuple(md.size), dtype if dtype is not None and stored.is_floating_point else stored))

    def read(name):
        key = keys[name]  # an MTP alias reads the shared embedding or head
        shape, stored = tuple(metadata[key].size), metadata[key].properties.dtype

        def get():
            t = torch.empty(shape, dtype=stored)
            with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
                warnings.simplefilter("ignore", UserWarning)
                dcp.load({key: t}, checkpoint_id=checkpoint_dir, no_dist=True)
            return t.to(dtype) if dtype is not None and stored.is_floating_point else t
        return get
    return config, entries, read


def _alias_source(model, name: str, aliases) -> str:
    """The saved tensor an exported name reads: an MTP alias reads the shared embedding or head."""
    if name not in aliases:
        return name
    target = aliases[name]
    return next(n for n, t in model.state_dict(keep_vars=True).items() if t is target)


def shared_error(error, group=None):
    """Rank 0's write error, on every rank, so all of them stop together (or none does)."""
    if dist.is_initialized() and dist.get_world_size(group) > 1:
        box = [error]
        dist.broadcast_object_list(box, src=0, group=group)
        error = box[0]
    return error
