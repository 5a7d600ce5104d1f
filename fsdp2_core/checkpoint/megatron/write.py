"""A Megatron-LM checkpoint from Hugging Face tensors: what `megatron.training` loads with the matching flags.

    OUT/latest_checkpointed_iteration.txt
    OUT/iter_XXXXXXX/  torch_dist: metadata.json, common.pt {args, iteration, checkpoint_version, ...},
                                   .metadata, *.distcp
                       torch:      mp_rank_TT[_PPP]/model_optim_rng.pt per tensor-parallel rank and pipeline stage

Names follow the layer spec Megatron will build (`spec`): Transformer Engine's (Megatron's default
transformer_impl) fuses the layer norms into the next linear layer (`linear_qkv.layer_norm_weight`,
`linear_fc1.layer_norm_weight`, except before experts), the local spec keeps them apart in a legacy
checkpoint; torch_dist checkpoints use the fused names for both, as megatron-core maps them. The
vocabulary is padded as Megatron pads it (a multiple of make_vocab_size_divisible_by x tp, zero rows).
torch_dist tensors are written whole (megatron-core reshards them to any parallel layout), each layer
one chunk, produced when DCP writes it; a legacy checkpoint is written one pipeline stage at a time.
Gated DeltaNet layers (Qwen3-Next) exist only in megatron-core's Transformer Engine spec: their input norm is
always `in_proj.layer_norm_weight`, torch_dist stores in_proj and conv1d as their parts (`in_proj.weight.query`,
...), a legacy rank file each rank's share of every part one after the other.
The weights carry no optimizer state: Megatron continues with --no-load-optim --no-load-rng, or starts
a new run from them with --finetune.
"""
import io
import os
import re
import warnings
from typing import Callable, Dict, List, Tuple

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.default_planner import DefaultSavePlanner, create_default_global_save_plan
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex, TensorProperties
from torch.distributed.checkpoint.planner import SavePlan, TensorWriteData, WriteItem, WriteItemType

from fsdp2_core.config import padded_vocab_size

from ..layout import CheckpointError, iter_name, write_tracker
from .detect import COMMON, DIST, DIST_METADATA, LEGACY
from .hf_source import HfSource
from .layout import EXPERT, GDN_PARTS, LAYER, MTP_LAYER, layer_name, split_tp
from .names import UNGATED, VOCAB_TENSORS, Group, groups_for
from .read_legacy import FILE, rank_dir

CHECKPOINT_VERSION = 3.0
SPECS = ("te", "local")
_LINEARS = ("self_attention.linear_qkv", "self_attention.linear_proj", "mlp.linear_fc1", "mlp.linear_fc2",
            "mlp.shared_experts.linear_fc1", "mlp.shared_experts.linear_fc2", "self_attention.linear_q_proj",
            "self_attention.linear_q_down_proj", "self_attention.linear_q_up_proj",
            "self_attention.linear_kv_down_proj", "self_attention.linear_kv_up_proj", "self_attention.in_proj",
            "self_attention.out_proj")
# Multi-Latent Attention in Transformer Engine's spec: the latent norms fused into the up-projections, the
# down-projections plain TELinear (duplicated on every tensor-parallel rank)
_TE_MLA_NORMS = {"self_attention.q_layernorm.weight": "self_attention.linear_q_up_proj.layer_norm_weight",
                 "self_attention.kv_layernorm.weight": "self_attention.linear_kv_up_proj.layer_norm_weight"}
_TE_DUPLICATED = ("self_attention.linear_q_down_proj.weight", "self_attention.linear_kv_down_proj.weight")


class Conversion:
    """The Megatron tensors (canonical names) of a Hugging Face source, produced group by group on request."""

    def __init__(self, source: HfSource, padded: int):
        self.source, self.padded = source, padded
        # MTP's copies of the embedding and head (alias groups) are not written: Megatron shares the main ones
        self.groups = [g for g in groups_for(source.config, list(source.shapes)) if not g.alias]
        self.group_of: Dict[str, Group] = {n: g for g in self.groups for n in g.mg}
        self.gated = source.config.model_type not in UNGATED

    def names(self) -> List[str]:
        return list(self.group_of)

    def group_tensors(self, group: Group) -> Dict[str, torch.Tensor]:
        out = group.to_mg({n: self._hf(n) for n in group.hf})
        return {n: t.contiguous() for n, t in out.items()}

    def tensor(self, name: str) -> torch.Tensor:
        return self.group_tensors(self.group_of[name])[name]

    def _hf(self, name: str) -> torch.Tensor:
        t = self.source.read(name)
        if name in VOCAB_TENSORS and t.shape[0] < self.padded:  # Megatron's padding rows: zeros
            t = torch.cat([t, t.new_zeros(self.padded - t.shape[0], *t.shape[1:])])
        return t


def spec_name(rest: str, spec: str, fmt: str, moe_layer: bool, mla: bool = False, gdn: bool = False) -> str:
    """A layer-relative canonical name as the target layer spec (and format) stores it (`gdn`: a Gated DeltaNet
    layer)."""
    if mla and spec == "te" and rest in _TE_MLA_NORMS:
        return _TE_MLA_NORMS[rest]
    norm = re.fullmatch(r"(input_layernorm|pre_mlp_layernorm)\.(weight|bias)", rest)
    if not norm:
        return rest
    which, kind = norm.groups()
    if gdn and which == "input_layernorm":
        return f"self_attention.in_proj.layer_norm_{kind}"
    if mla:  # MLA's layer specs map no norm names: only TE's fused dense fc1 takes the pre-MLP norm
        return f"mlp.linear_fc1.layer_norm_{kind}" if which == "pre_mlp_layernorm" and spec == "te" \
            and not moe_layer else rest
    if which == "input_layernorm" and (spec == "te" or fmt == DIST):
        return f"self_attention.linear_qkv.layer_norm_{kind}"
    if which == "pre_mlp_layernorm" and ((spec == "te" and not moe_layer) or (spec == "local" and fmt == DIST)):
        return f"mlp.linear_fc1.layer_norm_{kind}"
    return rest


def _is_mla(names) -> bool:
    return any(n.endswith("self_attention.linear_kv_down_proj.weight") for n in names)


def _split_for_spec(mg: str, full: torch.Tensor, tp: int, gated: bool, spec: str) -> List[torch.Tensor]:
    if spec == "te" and mg.endswith(_TE_DUPLICATED):
        return [full] * tp
    return split_tp(mg, full, tp, gated)


def _moe_layers(names: List[str]) -> set:
    return {int(m.group(1)) for m in map(LAYER.match, names) if m and m.group(2).startswith("mlp.router.")}


def _gdn_layers(names: List[str]) -> set:
    return {int(m.group(1)) for m in map(LAYER.match, names) if m and m.group(2) == "self_attention.A_log"}


def _fuse_gdn_parts(model: dict) -> None:
    """A legacy rank file's in_proj / conv1d: this rank's shard of each part, one after the other."""
    for name in [n for n in model if n.endswith(tuple(f".self_attention.{f}.{GDN_PARTS[f][0]}" for f in GDN_PARTS))]:
        fused = name[:name.rindex(".")]
        parts = GDN_PARTS[fused[fused.index("self_attention.") + len("self_attention."):]]
        model[fused] = torch.cat([model.pop(f"{fused}.{p}") for p in parts], dim=0).contiguous()


# ---------------------------------------------------------------- torch_dist

class _LazyPlanner(DefaultSavePlanner):
    """A save plan of known chunks whose data is produced only when DCP writes it."""

    def __init__(self, items: List[WriteItem], resolve: Callable[[WriteItem], object]):
        super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
        self._items, self._resolve = items, resolve

    def set_up_planner(self, state_dict, storage_meta=None, is_coordinator: bool = False) -> None:
        self.state_dict, self.storage_meta, self.is_coordinator = {}, storage_meta, is_coordinator

    def create_local_plan(self) -> SavePlan:
        self.plan = SavePlan(list(self._items))
        return self.plan

    def create_global_plan(self, all_plans):
        # A stacked key may leave layers out (dense layers of a MoE model): coverage is not checked.
        self.global_plan, self.metadata = create_default_global_save_plan(all_plans)
        return self.global_plan, self.metadata

    def resolve_data(self, write_item: WriteItem):
        return self._resolve(write_item)


def _tensor_item(fqn, offsets, sizes, size, dtype) -> WriteItem:
    chunk = ChunkStorageMetadata(offsets=torch.Size(offsets), sizes=torch.Size(sizes))
    return WriteItem(index=MetadataIndex(fqn, torch.Size(offsets)), type=WriteItemType.SHARD,
                     tensor_data=TensorWriteData(chunk=chunk, properties=TensorProperties(dtype=dtype),
                                                 size=torch.Size(size)))


def _bytes_item(fqn) -> WriteItem:
    return WriteItem(index=MetadataIndex(fqn), type=WriteItemType.BYTE_IO)


def _dist_plan(conv: Conversion, spec: str, layers: int, dtype) -> Tuple[List[WriteItem], Dict]:
    """Write items (one chunk per layer, all of a layer's experts in one) and, per item, how to make its data."""
    names = conv.names()
    moe, mla, gdn = _moe_layers(names), _is_mla(names), _gdn_layers(names)
    # megatron-core stores layers that differ (dense and MoE; linear and full attention) one key per layer, others
    # stacked; MTP layers always have their own keys (mtp.layers.<k>.transformer_layer.*)
    own_keys = 0 < len(moe) < layers or bool(gdn)
    shapes = {n: _shape_of(conv, n) for n in names}
    items, makers = [], {}
    stacked: Dict[str, List[Tuple[int, List[str]]]] = {}
    prefix_of: Dict[str, Tuple[str, bool]] = {}  # key -> (its layer's prefix, whether the key is the layer's own)
    for name in names:
        m, mtp = LAYER.match(name), MTP_LAYER.match(name)
        if not m and not mtp:
            items.append(_tensor_item(name, (0,) * len(shapes[name]), shapes[name], shapes[name], dtype))
            makers[(name, (0,) * len(shapes[name]))] = (lambda n=name: conv.tensor(n))
            if name.endswith(".eh_proj.weight"):  # MTP's projection is a linear layer with FP8 metadata
                items.append(_bytes_item(name[:-len("weight")] + "_extra_state/shard_0_1"))
                makers[(items[-1].index.fqn, None)] = _none_bytes
            continue
        if m:
            i, rest, own = int(m.group(1)), m.group(2), own_keys
            prefix = f"decoder.layers.{i}." if own else "decoder.layers."
            moe_layer = i in moe
        else:
            i, prefix, rest, own = -1 - int(mtp.group(2)), mtp.group(1), mtp.group(3), True
            moe_layer = f"{prefix}mlp.router.weight" in conv.group_of
        x = EXPERT.match(rest)
        key = (prefix + "mlp.experts.experts." + x.group(2)) if x else prefix + spec_name(rest, spec, DIST, moe_layer,
                                                                                          mla, i in gdn)
        prefix_of[key] = (prefix, own)
        stacked.setdefault(key, [])
        if not stacked[key] or stacked[key][-1][0] != i:
            stacked[key].append((i, []))
        stacked[key][-1][1].append(name)
    for key, per_layer in stacked.items():
        prefix, own = prefix_of[key]
        experts = ".mlp.experts.experts." in key
        inner = shapes[per_layer[0][1][0]]
        size = (layers, len(per_layer[0][1])) + inner if experts else (layers,) + inner
        if own:
            size = size[1:]
        for i, members in per_layer:
            offsets = (0,) * len(size) if own else (i,) + (0,) * (len(size) - 1)
            sizes = tuple(size) if own else (1,) + tuple(size[1:])
            items.append(_tensor_item(key, offsets, sizes, size, dtype))
            makers[(key, offsets)] = (lambda ms=members, sz=sizes: torch.stack([conv.tensor(n) for n in ms])
                                      .reshape(sz) if len(ms) > 1 else conv.tensor(ms[0]).reshape(sz))
            for fqn in _extra_state_keys(key, prefix, None if own else (i, layers), len(members) if experts else 0):
                items.append(_bytes_item(fqn))
                makers[(fqn, None)] = _none_bytes
    return items, makers


def _extra_state_keys(key: str, prefix: str, stacked_at, experts: int) -> List[str]:
    """The `_extra_state` objects megatron-core's linear layers ask for when loading (empty: no FP8 metadata);
    `stacked_at` (layer, layers) for a stacked key; a layer with its own keys has no layer axis in the objects'
    offsets (megatron-core's shard_0_1 when none)."""
    where = "0_1" if stacked_at is None else f"{stacked_at[0]}_{stacked_at[1]}"
    for linear in _LINEARS:
        if key == f"{prefix}{linear}.weight" or key == f"{prefix}{linear}.weight.query":  # GDN: in_proj's first part
            return [f"{prefix}{linear}._extra_state/shard_{where}"]
    m = re.fullmatch(re.escape(prefix) + r"mlp\.experts\.experts\.(linear_fc[12])\.weight", key)
    if m:
        return [f"{prefix}mlp.experts.experts.{m.group(1)}._extra_state/shard_" +
                (f"{e}_{experts}" if stacked_at is None else f"{stacked_at[0]}.{e}_{stacked_at[1]}.{experts}")
                for e in range(experts)]
    return []


def _none_bytes():
    buf = io.BytesIO()
    torch.save([None], buf)  # megatron-core stores a list of the local objects
    buf.seek(0)
    return buf


def _shape_of(conv: Conversion, name: str) -> Tuple[int, ...]:
    """A Megatron tensor's shape without reading it: from the Hugging Face shapes its group is made of."""
    group = conv.group_of[name]
    meta = group.to_mg({n: torch.empty(_padded_shape(conv, n), device="meta") for n in group.hf})
    return tuple(meta[name].shape)


def _padded_shape(conv, name):
    shape = conv.source.shapes[name]
    return (max(shape[0], conv.padded),) + tuple(shape[1:]) if name in VOCAB_TENSORS else shape


def write_dist(conv: Conversion, path: str, spec: str, layers: int, dtype, common: dict) -> None:
    items, makers = _dist_plan(conv, spec, layers, dtype)

    def resolve(item: WriteItem):
        if item.type == WriteItemType.BYTE_IO:
            return makers[(item.index.fqn, None)]()
        t = makers[(item.index.fqn, tuple(item.index.offset))]()
        return t.to(dtype) if t.is_floating_point() else t

    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({}, storage_writer=FileSystemWriter(path, single_file_per_rank=True, thread_count=1),
                 planner=_LazyPlanner(items, resolve), no_dist=True)
    torch.save(dict(common, content_metadata={"singleton_local_shards": False, "chained_optim_avoid_prefix": True}),
               os.path.join(path, COMMON))
    with open(os.path.join(path, DIST_METADATA), "w", encoding="utf-8") as fh:
        fh.write('{"sharded_backend": "torch_dist", "sharded_backend_version": 1, "common_backend": "torch", '
                 '"common_backend_version": 1}')


# ---------------------------------------------------------------- torch (legacy)

def write_legacy(conv: Conversion, path: str, spec: str, layers: int, tp: int, pp: int, dtype, common: dict,
                 tied: bool, whole_experts: bool = False) -> None:
    """One file per (tensor, pipeline) rank; `whole_experts` (expert tensor parallel size 1) puts every expert whole
    into each tensor-parallel rank's file."""
    if layers % pp:
        raise CheckpointError(f"--target-pp {pp}: the model's {layers} layers do not split evenly into {pp} stages")
    per_stage = layers // pp
    names = conv.names()
    moe, mla, gdn = _moe_layers(names), _is_mla(names), _gdn_layers(names)
    mtp = any(MTP_LAYER.match(n) for n in names)
    for p in range(pp):
        models = [dict() for _ in range(tp)]
        done = set()
        for name in names:
            m = LAYER.match(name)
            stage = int(m.group(1)) // per_stage if m else None
            wanted = (stage == p) if m else _on_stage(name, p, pp, mtp)
            if not wanted or name in done:
                continue
            group = conv.group_of[name]
            for mg, full in conv.group_tensors(group).items():
                done.add(mg)
                local = _legacy_name(mg, spec, per_stage, moe, mla, conv.group_of, gdn)
                whole = whole_experts and ".mlp.experts." in mg
                shards = [full] * tp if whole else _split_for_spec(mg, full, tp, conv.gated, spec)
                for t, shard in enumerate(shards):
                    models[t][local] = shard.to(dtype) if shard.is_floating_point() else shard
        if tied and pp > 1 and p == pp - 1:  # the last stage keeps its copy of the embedding as output_layer
            for t, shard in enumerate(split_tp("output_layer.weight", conv.tensor("embedding.word_embeddings.weight"),
                                               tp, conv.gated)):
                models[t]["output_layer.weight"] = shard.to(dtype)
        for t in range(tp):
            _fuse_gdn_parts(models[t])
            _add_extra_states(models[t])
            file = os.path.join(path, rank_dir(t, p, 0, pp, 1), FILE)
            os.makedirs(os.path.dirname(file), exist_ok=True)
            torch.save(dict(common, model=models[t]), file)


def _on_stage(name: str, p: int, pp: int, mtp: bool = False) -> bool:
    """The first stage holds the embedding, the last the rest (and the MTP layers, which embed tokens too)."""
    if name.startswith("embedding."):
        return p == 0 or (mtp and p == pp - 1)
    return p == pp - 1


def _legacy_name(name: str, spec: str, per_stage: int, moe: set, mla: bool = False, names=(), gdn=()) -> str:
    m, mtp = LAYER.match(name), MTP_LAYER.match(name)
    if not m and not mtp:
        return name
    i = -1
    if m:
        i, rest = int(m.group(1)), m.group(2)
        prefix, moe_layer = layer_name(i % per_stage, ""), i in moe
    else:
        prefix, rest = mtp.group(1), mtp.group(3)
        moe_layer = f"{prefix}mlp.router.weight" in names
    x = EXPERT.match(rest)
    if x:
        return f"{prefix}mlp.experts.local_experts.{x.group(1)}.{x.group(2)}"
    return prefix + spec_name(rest, spec, LEGACY, moe_layer, mla, i in gdn)


def _add_extra_states(model: dict) -> None:
    """The `_extra_state` entries every Megatron linear layer has in its state dict (None: no FP8 metadata)."""
    for name in list(model):
        if name.endswith(".weight") and (any(f".{lin}.weight" in name for lin in _LINEARS) or
                                         name == "output_layer.weight" or ".local_experts." in name or
                                         name.endswith(".eh_proj.weight")):
            model[name[:-len(".weight")] + "._extra_state"] = None


# ---------------------------------------------------------------- entry

def write_megatron(source: HfSource, out_dir: str, args, fmt: str = DIST, spec: str = "te",
                   dtype: torch.dtype = None) -> Dict[str, object]:
    """Write OUT (an existing empty directory): tracker and iter_XXXXXXX for `source`'s weights, `args` saved."""
    if fmt not in (DIST, LEGACY):
        raise CheckpointError(f"--format {fmt}: choose torch_dist or torch")
    if spec not in SPECS:
        raise CheckpointError(f"--megatron-spec {spec}: choose {' or '.join(SPECS)}")
    config = source.config
    vocab = config.vocab_size
    padded = padded_vocab_size(vocab, int(args.make_vocab_size_divisible_by), int(args.tensor_model_parallel_size))
    args.padded_vocab_size = padded
    conv = Conversion(source, padded)
    if spec == "local" and _gdn_layers(conv.names()):
        raise CheckpointError(f"--megatron-spec local: the {config.model_type} model's Gated DeltaNet layers exist "
                              "only in megatron-core's Transformer Engine spec (Megatron-LM builds them with "
                              "--transformer-impl transformer_engine); use --megatron-spec te")
    iteration = int(source.iteration)
    dtype = dtype or torch.float32
    common = {"args": args, "checkpoint_version": CHECKPOINT_VERSION, "iteration": iteration,
              "num_floating_point_operations_so_far": 0}
    path = os.path.join(out_dir, iter_name(iteration))
    os.makedirs(path)
    layers = int(args.num_layers)
    if fmt == DIST:
        write_dist(conv, path, spec, layers, dtype, common)
    else:
        write_legacy(conv, path, spec, layers, int(args.tensor_model_parallel_size),
                     int(args.pipeline_model_parallel_size), dtype, common,
                     not getattr(args, "untie_embeddings_and_output_weights", False),
                     getattr(args, "expert_tensor_parallel_size", None) == 1)
    write_tracker(out_dir, iteration)
    return {"iteration": iteration, "padded_vocab_size": padded, "padding_rows_added": padded - vocab,
            "tensors": len(conv.names()), "path": path}
