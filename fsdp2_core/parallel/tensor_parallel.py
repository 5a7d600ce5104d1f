"""Tensor parallelism with sequence parallelism and a vocabulary-parallel loss (DTensor).

The plan follows Megatron's and torchtitan's, built per model from its family's layout
(`fsdp2_core/models/tp_layout.py`) and the `tp_colwise` / `tp_rowwise` patterns:

  embedding      split over the vocabulary (row-parallel); its output is reduce-scattered
                 to this rank's slice of the sequence (all-reduced to whole without
                 sequence parallelism)
  decoder layer  norms run on this rank's sequence slice (SequenceParallel, weights
                 replicated); a tensor-parallel block (attention, dense MLP: a block with a
                 column/row-parallel projection as direct child) all-gathers the sequence
                 at its input, its column-parallel projections keep this rank's heads /
                 columns, and its row-parallel output projection reduce-scatters back to the
                 sequence slice. Any other block (MoE routing and experts, linear attention)
                 runs whole on every rank on the gathered sequence and keeps its own slice.
                 Residual adds run on the slices.
  final norm     sequence-parallel
  output layer   column-parallel on the gathered sequence: each rank holds the logits of
                 its vocabulary slice only, [tokens, V/tp], and the loss is the
                 vocabulary-parallel cross entropy (loss_parallel.py). No rank ever holds
                 [tokens, V].

Between blocks the hidden states are DTensors sharded on the sequence (Shard(1)), so
model-level code that reads their shape (masks, positions) sees the whole sequence;
rotary tables are computed from the whole position ids and used inside attention, where
the sequence is whole. With `sequence_parallel: false` the norms and the residual stream
stay whole on every rank (Megatron without --sequence-parallel); the vocabulary-parallel
embedding, output layer and loss stay as they are.
"""
from typing import Dict, List, Optional, Set, Tuple

import torch.nn as nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleOutput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

from fsdp2_core.config import ConfigError
from fsdp2_core.models.tp_layout import TPLayout, tp_layout_for

from .lora_tp import LoraColwise, LoraRowwise, is_lora_layer
from .loss_parallel import VocabShard
from .patterns import matching_modules
from .tp_styles import (
    SEQUENCE,
    ColwiseConv1D,
    FusedColwiseLinear,
    FusedQKVConv1D,
    GatherSequence,
    LocalWidths,
    RowwiseConv1D,
    ShardParams,
    VocabParallelEmbedding,
    WholeOnEveryRank,
)

Plan = List[Tuple[str, ParallelStyle]]
DIVIDED_BY_TP = ("num_attention_heads", "num_key_value_heads", "intermediate_size", "shared_expert_intermediate_size")


def check_tp_divides(model: nn.Module, tp: int) -> None:
    """Heads and the FFN widths must split evenly; say which one does not."""
    cfg = getattr(model, "config", None)
    if cfg is None or tp == 1:
        return
    for key in DIVIDED_BY_TP:
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value % tp:
            raise ConfigError(f"tp_size {tp} does not divide the model's {key} ({value}); choose a tp_size that does")


def is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or type(module).__name__.endswith(("Norm", "LayerNorm"))


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _names(model: nn.Module, patterns) -> List[str]:
    return [name for name, _ in matching_modules(model, patterns)]


class PlanBuilder:
    """Collects (module name, style) pairs for one model; `plan()` returns them in application order."""

    def __init__(self, model: nn.Module, layout: TPLayout, colwise, rowwise, sequence_parallel: bool):
        self.model, self.layout, self.sp = model, layout, sequence_parallel
        special = {n for n in (layout.embedding, layout.head, layout.position_embedding) if n}
        self.colwise = [n for n in _names(model, list(colwise) + list(layout.colwise)) if n not in special]
        self.rowwise = [n for n in _names(model, list(rowwise) + list(layout.rowwise)) if n not in special]
        both = set(self.colwise) & set(self.rowwise)
        if both:
            raise ConfigError(f"module {sorted(both)[0]} matches both tp_colwise and tp_rowwise; remove it from one")
        self.fused = set(_names(model, layout.fused_qkv))
        self.fused_gate_up = set(_names(model, layout.fused_gate_up))
        self.steps: Plan = []

    def add(self, name: str, style: ParallelStyle) -> None:
        self.steps.append((name, style))

    def plan(self) -> Plan:
        self._embeddings()
        sharded_blocks = self._layers()
        self.sharded_blocks = sharded_blocks
        self._projections(sharded_blocks)
        self._head_parts()
        if self.sp and self._find(self.layout.final_norm) is not None:
            self.add(self.layout.final_norm, SequenceParallel())
        self._check_outside_layers()
        return self.steps

    def _find(self, name: Optional[str]) -> Optional[nn.Module]:
        if not name:
            return None
        try:
            return self.model.get_submodule(name)
        except AttributeError:
            return None

    def _embeddings(self) -> None:
        embed = self._find(self.layout.embedding)
        if embed is None:
            raise ConfigError(f"tensor parallelism: no input embedding {self.layout.embedding!r} in "
                              f"{type(self.model).__name__}; add a row for its model_type to models/tp_layout.py")
        out = SEQUENCE if self.sp else Replicate()
        self.add(self.layout.embedding, VocabParallelEmbedding(output_layout=out, use_local_output=not self.sp))
        if self.sp and self._find(self.layout.position_embedding) is not None:
            # Learned positions stay whole on every rank; their output joins the token embeddings' sequence slice.
            self.add(self.layout.position_embedding, PrepareModuleOutput(
                output_layouts=Replicate(), desired_output_layouts=SEQUENCE, use_local_output=False))

    def _layers(self) -> Set[str]:
        """Styles of each decoder layer's norms and blocks; the names of the tensor-parallel blocks."""
        projections = set(self.colwise) | set(self.rowwise)
        sharded: Set[str] = set()
        layers = matching_modules(self.model, [self.layout.layers])
        if not layers:
            raise ConfigError(f"tensor parallelism: no decoder layers match {self.layout.layers!r} in "
                              f"{type(self.model).__name__}; add a row for its model_type to models/tp_layout.py")
        for layer_name, layer in layers:
            own = [n for n, _ in layer.named_parameters(recurse=False)]
            if own and self.sp:
                raise ConfigError(f"sequence_parallel: decoder layer {layer_name} has parameters of its own ({own}); "
                                  "set sequence_parallel false for this model")
            for child_name, child in layer.named_children():
                if not _has_params(child):
                    continue
                name = f"{layer_name}.{child_name}"
                if is_norm(child):
                    if self.sp:
                        self.add(name, SequenceParallel())
                elif any(f"{name}.{c}" in projections for c, _ in child.named_children()):
                    sharded.add(name)
                    if self.sp:
                        self.add(name, GatherSequence())
                elif self.sp:
                    self.add(name, WholeOnEveryRank())
        return sharded

    def _projections(self, sharded_blocks: Set[str]) -> None:
        for name in self.colwise:
            module = self.model.get_submodule(name)
            if is_lora_layer(module):
                self.add(name, self._lora(name, module, LoraColwise()))
            elif name in self.fused:
                self.add(name, FusedQKVConv1D())
            elif name in self.fused_gate_up:
                self.add(name, FusedColwiseLinear(parts=2))
            elif type(module).__name__ == "Conv1D":
                self.add(name, ColwiseConv1D())
            else:
                self.add(name, ColwiseParallel())
        if self.layout.local_width:  # each block that holds a column-parallel projection, once
            for block in sorted({name.rpartition(".")[0] for name in self.colwise}):
                self.add(block, LocalWidths(self.layout.local_width))
        for name in self.rowwise:
            module = self.model.get_submodule(name)
            # A block's own output projection hands its sum back as this rank's sequence slice.
            to_slice = self.sp and name.rpartition(".")[0] in sharded_blocks
            layout = SEQUENCE if to_slice else Replicate()
            if is_lora_layer(module):
                style = LoraRowwise(output_layout=layout, use_local_output=not to_slice)
                self.add(name, self._lora(name, module, style))
            elif type(module).__name__ == "Conv1D":
                self.add(name, RowwiseConv1D(output_layout=layout, use_local_output=not to_slice))
            else:
                self.add(name, RowwiseParallel(output_layouts=layout, use_local_output=not to_slice))

    def _lora(self, name: str, module: nn.Module, style: ParallelStyle) -> ParallelStyle:
        if name in self.fused or type(module.base_layer) is not nn.Linear:
            raise ConfigError(f"LoRA with tensor parallelism: {name} wraps a {type(module.base_layer).__name__}"
                              f"{' with fused q/k/v' if name in self.fused else ''}, which is split differently; "
                              "only nn.Linear projections take split adapters. Leave it out of "
                              "lora_target_modules, or use tp_size 1")
        return style

    def _head_parts(self) -> None:
        for name in _names(self.model, self.layout.head_norms):
            # q_norm / k_norm see [batch, seq, this rank's heads, head_dim]: shard dim 2, weight shared.
            self.add(name, SequenceParallel(sequence_dim=2, use_local_output=True))
        by_module: Dict[str, List[str]] = {}
        for pattern in self.layout.head_params:
            module_pattern, _, param = pattern.rpartition(".")
            for name in _names(self.model, [module_pattern]):
                by_module.setdefault(name, []).append(param)
        if by_module and getattr(self.model, "_fsdp2_cp", None) is None:
            raise ConfigError(f"tensor parallelism: {type(self.model).__name__}'s attention has per-head parameters "
                              f"({', '.join(p for ps in by_module.values() for p in ps)}) that only our attention core "
                              "splits; set model_id for this family (e.g. gpt_oss)")
        for name, params in by_module.items():
            self.add(name, ShardParams(params, dim=0))

    def _check_outside_layers(self) -> None:
        """With sequence parallelism every module outside the layers must be one the plan knows."""
        if not self.sp:
            return
        known = [n for n in (self.layout.embedding, self.layout.position_embedding, self.layout.final_norm,
                             self.layout.head) if n]
        layer_prefix = self.layout.layers.split("{*}")[0]
        for name, module in self.model.named_modules():
            own = list(module.parameters(recurse=False))
            inside = any(name == k or name.startswith(k + ".") for k in known) or name.startswith(layer_prefix)
            if own and not inside:
                raise ConfigError(f"sequence_parallel: {name} ({type(module).__name__}) holds weights outside the "
                                  f"decoder layers that the {type(self.model).__name__} plan does not place; set "
                                  "sequence_parallel false, or add it to the family's row in models/tp_layout.py")


def check_blocks_placed(model: nn.Module, blocks: Set[str], steps: Plan) -> None:
    """Under sequence parallelism a tensor-parallel block's input is a DTensor: every weight inside it must be
    placed by the plan (a plain weight meeting a DTensor fails deep inside torch, so say it here)."""
    placed = {name for name, _ in steps}
    shard_params = {name: set(style.names) for name, style in steps if isinstance(style, ShardParams)}
    for block in sorted(blocks):
        prefix = block + "."
        for name, module in model.get_submodule(block).named_modules(prefix=block):
            own = {n for n, _ in module.named_parameters(recurse=False)}
            if not own:
                continue
            if name == block:
                loose = own - shard_params.get(block, set())
            else:
                parts = name[len(prefix):].split(".")
                covered = any(prefix + ".".join(parts[:i]) in placed for i in range(1, len(parts) + 1))
                loose = set() if covered else own
            if loose:
                raise ConfigError(f"sequence_parallel: {name}.{sorted(loose)[0]} inside the tensor-parallel block "
                                  f"{block} is placed by no rule of the plan; name its module in tp_colwise / "
                                  "tp_rowwise or in the family's row of fsdp2_core/models/tp_layout.py (extra_plan "
                                  "for anything else), or set sequence_parallel false")


def check_lora_placed(model: nn.Module, steps: Plan) -> None:
    """A LoRA layer must be placed by a LoRA style (its weights split with the base's); any other style would split
    the wrapper as if it were the linear, or not at all."""
    for name, style in steps:
        module = model.get_submodule(name)
        if is_lora_layer(module) and not isinstance(style, (LoraColwise, LoraRowwise)):
            raise ConfigError(f"LoRA with tensor parallelism: {name} is placed by {type(style).__name__}, which does "
                              "not split LoRA adapters; leave it out of lora_target_modules, or use tp_size 1")


def tensor_parallel_plan(model: nn.Module, tp_mesh: Optional[DeviceMesh], colwise, rowwise, sequence_parallel: bool,
                         layout: Optional[TPLayout] = None) -> Plan:
    layout = layout or tp_layout_for(model)
    builder = PlanBuilder(model, layout, colwise, rowwise, sequence_parallel)
    steps = builder.plan()
    if layout.extra_plan is not None:
        steps += list(layout.extra_plan(model, tp_mesh, sequence_parallel).items())
    if sequence_parallel:
        check_blocks_placed(model, builder.sharded_blocks, steps)
    check_lora_placed(model, steps)
    return steps


def _output_layer(model: nn.Module) -> nn.Module:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not isinstance(head, nn.Linear):
        raise ConfigError(f"tensor parallelism: {type(model).__name__} has no linear output layer to split over the "
                          "vocabulary")
    return head


def apply_tensor_parallel(model: nn.Module, tp_mesh: DeviceMesh, colwise, rowwise, sequence_parallel: bool = True,
                          layout: Optional[TPLayout] = None) -> Plan:
    """Split `model` over `tp_mesh` in place; return the applied (module name, style) pairs."""
    layout = layout or tp_layout_for(model)
    check_tp_divides(model, tp_mesh.size())
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = _output_layer(model)
    tied = embed is not None and head.weight is embed.weight
    steps = tensor_parallel_plan(model, tp_mesh, colwise, rowwise, sequence_parallel, layout)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}  # LoRA's base weights
    for name, style in steps:
        parallelize_module(model.get_submodule(name), tp_mesh, style)
    # Column-parallel output layer: logits stay split over the vocabulary for the loss. They are left a
    # DTensor, so the model's own forward (`model(ids).logits`) says what they are: `.full_tensor()` gathers.
    head_style = ColwiseParallel(input_layouts=Replicate(), output_layouts=Shard(-1), use_local_output=False)
    parallelize_module(head, tp_mesh, head_style)
    if tied:
        head.weight = embed.weight  # both split the vocabulary rows (Shard(0)): one parameter again
    for name, p in model.named_parameters():  # torch's styles make every parameter they place trainable
        if name in frozen:
            p.requires_grad_(False)
    model._fsdp2_vocab_shard = VocabShard(tp_mesh.get_group(), head.out_features, tp_mesh.get_local_rank(),
                                          tp_mesh.size())
    return steps + [(layout.head, head_style)]
