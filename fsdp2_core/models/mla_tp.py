"""Tensor parallelism for Multi-Latent Attention (transformers' DeepSeek-V3 attention).

The up-projections (q_b_proj, kv_b_proj; q_proj without a q LoRA rank) are column-parallel by heads and o_proj is
row-parallel, as Megatron splits MLA's linear_q_up_proj / linear_kv_up_proj / linear_proj. The down-projections to the
shared latents (q_a_proj, kv_a_proj_with_mqa) and the latent norms stay whole on every rank, as plain modules: they
take the block's gathered input as a local tensor (`LocalInput`), so the shared rotary key they produce is a plain
tensor beside each rank's heads. Their gradients agree on every rank, since the column-parallel up-projections
all-reduce the gradient of their (replicated) input.
"""
from typing import Dict

import torch.nn as nn
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import ParallelStyle

WHOLE = ("q_a_proj", "q_a_layernorm", "kv_a_proj_with_mqa", "kv_a_layernorm")
# DeepSeek Sparse Attention's indexer (families/dsa.py) also runs whole on every rank: it scores the whole sequence
# for all the heads; its loss sums the main attention over the heads, which each rank holds a share of.
INDEXER = ("wq_b", "wk", "k_norm", "weights_proj")


class LocalInput(ParallelStyle):
    """A module kept whole on every rank: a replicated DTensor input becomes the local (full) tensor."""

    def _apply(self, module: nn.Module, mesh) -> nn.Module:
        def to_local(_module, args):
            return tuple(a.to_local() if isinstance(a, DTensor) else a for a in args)

        module.register_forward_pre_hook(to_local)
        return module


def mla_extra_plan(model: nn.Module, tp_mesh, sequence_parallel: bool) -> Dict[str, ParallelStyle]:
    """The plan entries of the whole-on-every-rank parts of each MLA attention."""
    return {name: LocalInput() for name, _ in model.named_modules() if name.rpartition(".")[2] in WHOLE
            and ".self_attn." in name}


def dsa_extra_plan(model: nn.Module, tp_mesh, sequence_parallel: bool) -> Dict[str, ParallelStyle]:
    """MLA's entries and the indexers' (whole on every rank); each sparse attention learns its tensor-parallel
    group, over which its indexer loss sums the heads' attention."""
    plan = mla_extra_plan(model, tp_mesh, sequence_parallel)
    for name, module in model.named_modules():
        if name.endswith(".self_attn") and hasattr(module, "_fsdp2_indexer_coeff"):
            module._fsdp2_tp_group = tp_mesh.get_group()
        elif name.rpartition(".")[2] in INDEXER and ".self_attn.indexer." in name:
            plan[name] = LocalInput()
    return plan
