"""Parallelisation: device mesh, then tensor parallel → expert parallel → context parallel → recompute → compile
→ FSDP2."""
import logging

import torch.nn as nn
from torch.distributed.fsdp import MixedPrecisionPolicy

from fsdp2_core.config import ConfigError
from fsdp2_core.kernels.compile import apply_compile

from .context_parallel import apply_context_parallel
from .expert_parallel import apply_expert_parallel, shard_experts
from .fsdp import DTYPES, apply_fsdp
from .mesh import Mesh, ParallelDims, build_mesh, forget_meshes, parallel_dims
from .recompute import apply_recompute
from .replicate import use_replicate
from .tensor_parallel import apply_tensor_parallel

log = logging.getLogger(__name__)


def modules_used_twice(model: nn.Module, chunked_head: bool) -> list:
    """Modules whose weights are used more than once a step; FSDP keeps them in the root unit."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    keep = []
    if head is not None and embed is not None and head.weight is embed.weight:
        keep += [head, embed]  # tied weights must live in one unit
    elif getattr(model, "_fsdp2_mtp_layers", None):
        keep += [m for m in (head, embed) if m is not None]  # the MTP depths embed and project again
    elif head is not None and chunked_head:
        keep.append(head)  # called once per loss chunk
    return keep


def nothing_to_shard(mesh: Mesh, p) -> bool:
    """One rank in all, computing and reducing in fp32: FSDP would only copy every parameter into an unsharded
    twin before forward and every gradient into a sharded one after backward (copies a bare loop does not pay).
    The model then stays unwrapped, with the same numbers; checkpoints (DCP) reshard its plain tensors to any
    later layout. With bf16 or fp16 compute FSDP keeps the fp32 master weights and casts, so it still wraps."""
    return mesh.dims.world_size == 1 and p.param_dtype == "fp32" and p.reduce_dtype == "fp32"


def parallelize(model: nn.Module, cfg, mesh: Mesh) -> nn.Module:
    """Apply TP, EP, CP, activation recompute and FSDP2 to `model` in place; return it."""
    p = cfg.parallel
    if mesh.tp is not None:
        apply_tensor_parallel(model, mesh.tp, p.tp_colwise, p.tp_rowwise, p.sequence_parallel)
    experts = mesh.expert_parallel
    if experts:
        apply_expert_parallel(model, mesh, p)
    if mesh.cp is not None:
        apply_context_parallel(model, mesh.cp, mesh.dims.tp)
    # Blocks are compiled before recompute wraps them, so the checkpoint runs the compiled forward (same saved
    # activations: the block inputs). torchtitan compiles the checkpointed region instead, but torch 2.13 cannot
    # trace it under tensor parallelism (it tries to save the DTensors' device mesh for backward), nor through
    # transformers >= 5.25's attention, whose `kernels` wrapper sets a global inside the checkpoint: dynamo then
    # leaves the whole block eager (tests/kernels/test_compile.py).
    if cfg.optimization.compile_blocks:
        apply_compile(model)
    if p.recompute:
        wrapped = apply_recompute(model, p.recompute_modules)
        if not wrapped:
            raise ConfigError(f"recompute is on but no module matches recompute_modules {p.recompute_modules}")
    if experts:
        mp = MixedPrecisionPolicy(param_dtype=DTYPES[p.param_dtype], reduce_dtype=DTYPES[p.reduce_dtype])
        shard_experts(model, mesh, p, mp)
    if nothing_to_shard(mesh, p):
        model._fsdp2_compute_dtype = DTYPES[p.param_dtype]  # what attention masks are built in (models/packed.py)
        log.info("one rank, fp32 parameters and reduction: FSDP has nothing to shard, gather or cast; the model "
                 "is left unwrapped")
        return model
    if use_replicate(mesh, p, model, mesh.device_type):
        model._fsdp2_compute_dtype = DTYPES[p.param_dtype]
        model._fsdp2_replicate_group = mesh.dp_group  # the gradient hooks attach once the weights exist (entry.py)
        log.info("plain fp32 data parallelism over %d ranks: weights replicated, gradients all-reduced in buckets "
                 "during backward (parallel.data_parallel)", mesh.dims.dp)
        return model
    keep = modules_used_twice(model, chunked_head=bool(cfg.training.chunk_loss_size))
    apply_fsdp(model, mesh.fsdp, p, keep_in_root=keep, root_reshard=not getattr(model, "_fsdp2_mtp_layers", None))
    return model


__all__ = ["parallelize", "nothing_to_shard", "build_mesh", "forget_meshes", "parallel_dims", "Mesh", "ParallelDims",
           "DTYPES"]
