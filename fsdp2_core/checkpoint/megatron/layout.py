"""Megatron's tensor names, in one canonical per-layer form, and how tensor parallelism splits them.

Both readers turn what they find into the names megatron-core's GPTModel (local spec) uses
in a legacy checkpoint, with global layer and expert numbers and every tensor whole
(tensor-parallel shards joined):

    embedding.word_embeddings.weight                    [padded vocab, hidden]
    embedding.position_embeddings.weight                [max positions, hidden]   (learned positions)
    decoder.layers.{i}.input_layernorm.{weight,bias}
    decoder.layers.{i}.self_attention.linear_qkv.{weight,bias}    per query group: [q x heads/groups, k, v]
    decoder.layers.{i}.self_attention.{q,k}_layernorm.{weight,bias}
    decoder.layers.{i}.self_attention.core_attention.softmax_offset    [heads] (gpt-oss's sinks), split with the heads
    decoder.layers.{i}.self_attention.linear_proj.{weight,bias}
        with --attention-output-gate linear_qkv is per query group [q x heads/groups, gate x heads/groups, k, v]
    decoder.layers.{i}.self_attention.in_proj.weight.{query,key,value,z,beta,alpha}   Gated DeltaNet (Qwen3-Next):
        the six parts of megatron-core's in_proj, each whole (as torch_dist stores them; a legacy rank file holds
        [query, key, value, z, beta, alpha] of its own heads, see GDN_PARTS)
    decoder.layers.{i}.self_attention.conv1d.weight.{query,key,value}    [channels, 1, kernel], likewise
    decoder.layers.{i}.self_attention.{A_log,dt_bias}   [value heads]
    decoder.layers.{i}.self_attention.out_norm.weight   [value head dim], zero-centred (x·(1 + w))
    decoder.layers.{i}.self_attention.out_proj.weight   row-parallel
    decoder.layers.{i}.pre_mlp_layernorm.{weight,bias}
    decoder.layers.{i}.mlp.linear_fc1.{weight,bias}     gated (SwiGLU): [gate; up], each whole
    decoder.layers.{i}.mlp.linear_fc2.{weight,bias}
    decoder.layers.{i}.mlp.router.{weight,bias}         [experts, hidden]; the bias only with gpt-oss
    decoder.layers.{i}.mlp.experts.{e}.linear_fc{1,2}.{weight,bias}
    decoder.final_layernorm.{weight,bias}
    output_layer.weight                                 untied embeddings only
    mtp.layers.{k}.{enorm,hnorm,final_layernorm}.weight multi-token prediction depth k+1 (last pipeline stage)
    mtp.layers.{k}.eh_proj.weight                       [hidden, 2 x hidden], column-parallel
    mtp.layers.{k}.transformer_layer.<as a decoder layer's name above>   experts: ...mlp.experts.{e}.<name>

Transformer Engine specs store the layer norms inside the following linear layer
(`linear_qkv.layer_norm_weight`, `linear_fc1.layer_norm_weight`); they are renamed here.
"""
import re
from typing import List, Optional

import torch

LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
MTP_LAYER = re.compile(r"^(mtp\.layers\.(\d+)\.transformer_layer\.)(.+)$")  # an MTP depth's decoder layer
EXPERT = re.compile(r"^mlp\.experts\.(\d+)\.(.+)$")

TE_NORMS = {
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "self_attention.linear_qkv.layer_norm_bias": "input_layernorm.bias",
    "mlp.linear_fc1.layer_norm_weight": "pre_mlp_layernorm.weight",
    "mlp.linear_fc1.layer_norm_bias": "pre_mlp_layernorm.bias",
    "self_attention.in_proj.layer_norm_weight": "input_layernorm.weight",   # Gated DeltaNet's fused input norm
    # Multi-Latent Attention: the latent norms fused into the up-projections
    "self_attention.linear_q_up_proj.layer_norm_weight": "self_attention.q_layernorm.weight",
    "self_attention.linear_kv_up_proj.layer_norm_weight": "self_attention.kv_layernorm.weight",
}
_COLUMN = ("word_embeddings.weight", "output_layer.weight", "linear_qkv.weight", "linear_qkv.bias",
           "linear_fc1.weight", "linear_fc1.bias", "linear_q_proj.weight", "linear_q_up_proj.weight",
           "linear_kv_up_proj.weight", "eh_proj.weight", "core_attention.softmax_offset") + (
               "linear_q_down_proj.weight", "linear_kv_down_proj.weight") + tuple(
               f"self_attention.{w}.weight.{p}" for w in ("in_proj", "conv1d") for p in ("query", "key", "value")) + (
               "self_attention.in_proj.weight.z", "self_attention.in_proj.weight.beta",
               "self_attention.in_proj.weight.alpha", "self_attention.A_log", "self_attention.dt_bias")
# MLA's down-projections: column-parallel in the local spec, duplicated on every rank in Transformer Engine's
_COLUMN_OR_DUPLICATED = ("linear_q_down_proj.weight", "linear_kv_down_proj.weight")
_ROW = ("linear_proj.weight", "linear_fc2.weight", "self_attention.out_proj.weight")
# Gated DeltaNet's fused tensors (megatron-core's GatedDeltaNet): the parts each rank holds, in order
GDN_PARTS = {"in_proj.weight": ("query", "key", "value", "z", "beta", "alpha"),
             "conv1d.weight": ("query", "key", "value")}


def gdn_part_sizes(args, fused: str) -> List[int]:
    """The whole sizes of a fused GDN tensor's parts (GDN_PARTS order), from the saved args."""
    qk = args.linear_key_head_dim * args.linear_num_key_heads
    v = args.linear_value_head_dim * args.linear_num_value_heads
    heads = args.linear_num_value_heads
    return [qk, qk, v, v, heads, heads] if fused == "in_proj.weight" else [qk, qk, v]


def layer_name(i: int, rest: str) -> str:
    return f"decoder.layers.{i}.{rest}"


def expert_name(i: int, e: int, rest: str) -> str:
    return f"decoder.layers.{i}.mlp.experts.{e}.{rest}"


def mtp_name(k: int, rest: str) -> str:
    """A name of MTP depth k+1 outside its decoder layer (enorm, hnorm, eh_proj, final_layernorm)."""
    return f"mtp.layers.{k}.{rest}"


def mtp_layer_prefix(k: int) -> str:
    return f"mtp.layers.{k}.transformer_layer."


def canonical_rest(rest: str) -> str:
    """A layer-relative name in local-spec form (Transformer Engine's fused norm names renamed)."""
    return TE_NORMS.get(rest, rest)


def is_extra_state(name: str) -> bool:
    return name.endswith("._extra_state") or "._extra_state/" in name


def tp_dim(name: str) -> Optional[int]:
    """0 for column-parallel tensors, 1 for row-parallel weights, None when every rank holds all of it."""
    if name.endswith(_COLUMN):
        return 0
    if name.endswith(_ROW):
        return 1
    return None


def is_fc1(name: str) -> bool:
    return name.endswith(("linear_fc1.weight", "linear_fc1.bias"))


def merge_tp(name: str, shards: List[torch.Tensor], gated: bool) -> torch.Tensor:
    """The whole tensor from its tensor-parallel shards (rank order).

    A gated fc1 shard holds [gate part; up part] of that rank, so the gates are joined, then the ups."""
    if len(shards) == 1:
        return shards[0]
    dim = tp_dim(name)
    if dim is None:
        return shards[0]
    if name.endswith(_COLUMN_OR_DUPLICATED) and all(torch.equal(s, shards[0]) for s in shards[1:]):
        return shards[0]
    if gated and is_fc1(name):
        halves = [torch.chunk(s, 2, dim=0) for s in shards]
        return torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
    return torch.cat(shards, dim=dim)


def split_tp(name: str, full: torch.Tensor, tp: int, gated: bool) -> List[torch.Tensor]:
    """The inverse of `merge_tp`: rank r's shard of each tensor-parallel tensor (replicated ones whole)."""
    dim = tp_dim(name)
    if tp == 1 or dim is None:
        return [full] * tp
    if full.shape[dim] % tp:
        raise ValueError(f"{name}: dimension {dim} ({full.shape[dim]}) does not divide by tensor-parallel size {tp}")
    if gated and is_fc1(name):
        gate, up = torch.chunk(full, 2, dim=0)
        return [torch.cat([g, u], dim=0).contiguous() for g, u in zip(gate.chunk(tp, 0), up.chunk(tp, 0))]
    return [s.contiguous() for s in full.chunk(tp, dim=dim)]
