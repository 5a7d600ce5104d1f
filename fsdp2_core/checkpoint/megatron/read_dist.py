"""The `torch_dist` format: megatron.core.dist_checkpointing on top of torch.distributed.checkpoint.

    iter_XXXXXXX/metadata.json     {"sharded_backend": "torch_dist", ...}
    iter_XXXXXXX/common.pt         what is not sharded: args, iteration, opt_param_scheduler, ...
    iter_XXXXXXX/.metadata         DCP's index: every tensor's global shape and where its chunks lie
    iter_XXXXXXX/__R_N.distcp      the chunks

Tensors are stored whole (global shapes), so tensor and pipeline parallelism leave no trace
in the names. Layers are stacked along a leading dimension (`decoder.layers.<name>`
[layers, ...]) and experts along a second one (`decoder.layers.mlp.experts.experts.<name>`
[layers, experts, ...]); a gated fc1 is [gate; up]. Each layer (and expert) is its own
chunk, so one layer is read at a time through DCP's reader, never the whole stack.
Layers that differ (dense and MoE layers of one model, `--moe-layer-freq` lists) are stored
one key per layer instead: `decoder.layers.<i>.<name>`, its experts stacked
(`decoder.layers.<i>.mlp.experts.experts.<name>` [experts, ...]).
"""
import os
import re
from dataclasses import replace
from typing import Dict, List, Optional, Tuple

import torch
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import (
    BytesStorageMetadata,
    ChunkStorageMetadata,
    MetadataIndex,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import LoadItemType, LoadPlan, ReadItem
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

from ..layout import CheckpointError, missing_data
from .detect import COMMON
from .layout import MTP_LAYER, canonical_rest, expert_name, is_extra_state, layer_name
from .safe_load import load_megatron_bytes, load_megatron_pickle

STACKED = "decoder.layers."
EXPERTS = "decoder.layers.mlp.experts.experts."
PER_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
LAYER_EXPERTS = "mlp.experts.experts."
NOT_MODEL = ("optimizer.", "rng_state", "rerun_state_machine")

Part = Tuple[str, Tuple[int, ...], Tuple[int, ...]]  # (key, offsets, sizes) of one slice of a stored tensor


class _Targets:
    """The planner side of FileSystemReader.read_data: where each read chunk (or object) lands."""

    def __init__(self, targets: Dict[str, Tuple[Tuple[int, ...], torch.Tensor]]):
        self.targets = targets
        self.objects: Dict[str, bytes] = {}

    def resolve_tensor(self, item):
        return narrow_tensor_by_index(self.targets[item.dest_index.fqn][1], item.dest_offsets, item.lengths)

    def commit_tensor(self, item, tensor) -> None:
        pass

    def load_bytes(self, item, value) -> None:
        self.objects[item.dest_index.fqn] = value.read()


class DistReader:
    """Whole per-layer tensors under canonical names, read slice by slice."""

    def __init__(self, path: str, trust: bool = False, prefix: str = "", base: "DistReader" = None):
        self.path, self.prefix = path, prefix
        self.sources: Dict[str, List[Part]] = {}
        self.stacked: Dict[str, int] = {}  # name -> how many leading dims of its parts are stacking (layer, expert)
        self._layer_cache: Tuple[Optional[int], Dict[str, torch.Tensor]] = (None, {})
        if base is not None:  # a view of the same files: the tensors stored under `prefix` (optimizer state)
            self.reader, self.metadata, self._common = base.reader, base.metadata, base._common
            self._index()
            return
        self.reader = FileSystemReader(path)
        try:
            self.metadata = self.reader.read_metadata()
        except Exception as exc:  # noqa: BLE001  (missing, truncated or foreign .metadata)
            raise CheckpointError(f"{os.path.join(path, '.metadata')} is unreadable ({type(exc).__name__}: {exc}); "
                                  "the torch_dist checkpoint is incomplete or damaged: copy it again") from None
        problem = missing_data(path, self.metadata)
        if problem:
            raise CheckpointError(f"{path}: {problem}; the torch_dist checkpoint is incomplete: copy it again")
        self.reader.set_up_storage_reader(self.metadata, True)
        self._common = load_megatron_pickle(os.path.join(path, COMMON), trust=trust)
        self._index()

    def view(self, prefix: str) -> "DistReader":
        """The tensors stored under `prefix` + a model key (e.g. `optimizer.state.exp_avg.`), by canonical name."""
        return DistReader(self.path, prefix=prefix, base=self)

    # ---------------------------------------------------------------- index
    def tensors(self) -> Dict[str, TensorStorageMetadata]:
        return {k: v for k, v in self.metadata.state_dict_metadata.items() if isinstance(v, TensorStorageMetadata)}

    def _index(self) -> None:
        tensors = self.tensors()
        for stored, md in tensors.items():
            if not stored.startswith(self.prefix) or is_extra_state(stored):
                continue
            key = stored[len(self.prefix):]
            if key.startswith(NOT_MODEL):
                continue
            base, part = _split_glu(key)
            base_stored = self.prefix + base
            if base_stored in tensors and part:
                raise CheckpointError(f"{self.path}: both {base_stored} and {stored} are stored")
            per_layer, mtp = PER_LAYER.match(base), MTP_LAYER.match(base)
            if per_layer:
                self._add_layer(stored, layer_name(int(per_layer.group(1)), ""), per_layer.group(2), md, part)
            elif mtp:  # an MTP depth's decoder layer: its own keys, as a layer that differs
                self._add_layer(stored, mtp.group(1), mtp.group(3), md, part)
            elif key.startswith(EXPERTS):
                self._add_experts(stored, base[len(EXPERTS):], md, part)
            elif key.startswith(STACKED):
                self._add_layers(stored, canonical_rest(base[len(STACKED):]), md, part)
            else:
                self._add(base, (stored, (0,) * len(md.size), tuple(md.size)), part)

    def _add(self, name: str, source: Part, part: str, stacked: int = 0) -> None:
        parts = self.sources.setdefault(name, [])
        parts.insert(0 if part == "w" else len(parts), source)
        self.stacked[name] = stacked

    def _add_layers(self, key, rest, md, part) -> None:
        inner = tuple(md.size[1:])
        for i in _covered(md, 0):
            self._add(layer_name(i, rest), (key, (i,) + (0,) * len(inner), (1,) + inner), part, stacked=1)

    def _add_experts(self, key, rest, md, part) -> None:
        inner = tuple(md.size[2:])
        for i in _covered(md, 0):
            for e in _covered(md, 1, only_at=(0, i)):
                self._add(expert_name(i, e, rest), (key, (i, e) + (0,) * len(inner), (1, 1) + inner), part,
                          stacked=2)

    def _add_layer(self, key, prefix: str, rest: str, md, part) -> None:
        """One layer's own key (layers that differ are not stacked, nor MTP layers); its experts stacked along the
        first dim. `prefix`: the layer's canonical prefix (decoder.layers.<i>. or mtp.layers.<k>.transformer_layer.)."""
        if rest.startswith(LAYER_EXPERTS):
            inner = tuple(md.size[1:])
            for e in _covered(md, 0):
                self._add(f"{prefix}mlp.experts.{e}.{rest[len(LAYER_EXPERTS):]}", (key, (e,) + (0,) * len(inner),
                                                                                   (1,) + inner), part, stacked=1)
        else:
            self._add(prefix + canonical_rest(rest), (key, (0,) * len(md.size), tuple(md.size)), part)

    def layers(self) -> Optional[int]:
        sizes = set()
        for k, md in self.tensors().items():
            if not k.startswith(STACKED) or is_extra_state(k):
                continue
            own = PER_LAYER.match(k)
            sizes.add(int(own.group(1)) + 1 if own else md.size[0])
        return max(sizes) if sizes else None

    def shape(self, name: str) -> Tuple[int, ...]:
        """The whole tensor's shape, from the metadata alone."""
        parts = self.sources[name]
        stacked = self.stacked[name]
        inner = [tuple(sizes[stacked:]) for _, _, sizes in parts]
        return (sum(s[0] for s in inner),) + inner[0][1:] if len(inner) > 1 else inner[0]

    # ---------------------------------------------------------------- access
    def names(self) -> List[str]:
        return list(self.sources)

    def get(self, name: str) -> torch.Tensor:
        if name.startswith(STACKED):
            i = int(name.split(".")[2])
            if self._layer_cache[0] != i:  # one read for every tensor of the layer
                prefix = f"{STACKED}{i}."
                self._layer_cache = (i, self._read([n for n in self.sources if n.startswith(prefix)]))
            return self._layer_cache[1][name]
        return self._read([name])[name]

    def _read(self, names: List[str]) -> Dict[str, torch.Tensor]:
        targets, plan_items, pieces = {}, [], {}
        tensors = self.tensors()
        for name in names:
            pieces[name] = []
            for j, (key, offsets, sizes) in enumerate(self.sources[name]):
                fqn = key  # one slice per key and read: a name's parts come from distinct keys
                buf = torch.empty(sizes, dtype=tensors[key].properties.dtype)
                tag = f"{fqn}@{offsets}"
                targets[tag] = (offsets, buf)
                chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes))
                for item in create_read_items_for_chunk_list(fqn, tensors[key], [chunk]):
                    plan_items.append(_retag(item, tag))
                pieces[name].append(buf)
        plan = self.reader.prepare_local_plan(LoadPlan(plan_items))
        plan = self.reader.prepare_global_plan([plan])[0]
        self.reader.read_data(plan, _Targets(targets)).wait()
        out = {}
        for name, bufs in pieces.items():
            squeezed = [b.reshape(b.shape[self.stacked[name]:]) for b in bufs]
            out[name] = squeezed[0] if len(squeezed) == 1 else torch.cat(squeezed, dim=0)
        return out

    def common(self) -> dict:
        return dict(self._common)

    def read_object(self, key: str, trust: bool = False):
        """Rank (0, 0)'s part of a sharded object megatron-core stored as `<key>/shard_...` (e.g. rng_state)."""
        shards = sorted(k for k, md in self.metadata.state_dict_metadata.items()
                        if k.startswith(f"{key}/shard_") and isinstance(md, BytesStorageMetadata))
        if not shards:
            return None
        zero = torch.Size((0,))
        item = ReadItem(type=LoadItemType.BYTE_IO, dest_index=MetadataIndex(shards[0]), dest_offsets=zero,
                        storage_index=MetadataIndex(shards[0]), storage_offsets=zero, lengths=zero)
        plan = self.reader.prepare_global_plan([self.reader.prepare_local_plan(LoadPlan([item]))])[0]
        targets = _Targets({})
        self.reader.read_data(plan, targets).wait()
        objects = load_megatron_bytes(targets.objects[shards[0]], f"{self.path}: {shards[0]}", trust)
        return objects[0] if isinstance(objects, list) and objects else None  # megatron-core saves [local object]


def name_is_expert(name: str) -> bool:
    return ".mlp.experts." in name


def _split_glu(key: str) -> Tuple[str, str]:
    """`..._w` / `..._v`: the gate and up halves of a gated fc1 saved as two tensors (singleton_local_shards)."""
    for part in ("w", "v"):
        if key.endswith(f"linear_fc1.weight_{part}") or key.endswith(f"linear_fc1.bias_{part}"):
            return key[:-2], part
    return key, ""


def _covered(md: TensorStorageMetadata, dim: int, only_at: Tuple[int, int] = None) -> List[int]:
    """Indices along `dim` that some stored chunk covers (a stacked key may miss layers: dense vs MoE layers)."""
    found = set()
    for chunk in md.chunks:
        if only_at is not None:
            d, at = only_at
            if not chunk.offsets[d] <= at < chunk.offsets[d] + chunk.sizes[d]:
                continue
        found.update(range(chunk.offsets[dim], chunk.offsets[dim] + chunk.sizes[dim]))
    return sorted(found)


def _retag(item, tag):
    """The same read, addressed to our slice buffer `tag` (dest offsets are already relative to the slice)."""
    return replace(item, dest_index=MetadataIndex(tag, item.dest_index.offset, item.dest_index.index))
