"""Where tensor parallelism finds each role among a family's modules: one row per transformers model_type.

The plan itself (`fsdp2_core/parallel/tensor_parallel.py`) is built from this row and the
config's `tp_colwise` / `tp_rowwise` patterns. A row names, as module-name patterns
(`{*}` one name component):

  embedding           the input embedding, split over the vocabulary
  position_embedding  learned positions (GPT-2), kept whole on every rank
  layers              the decoder layers. Their norm children run sequence-parallel; every
                      other child holding weights is a block (attention, MLP, MoE, linear
                      attention), tensor-parallel when a column/row-parallel projection is
                      its direct child, otherwise run whole on every tensor-parallel rank
  final_norm          the norm after the last layer (sequence-parallel)
  head                the output layer: column-parallel, its logits left split over the vocabulary
  head_norms          norms applied per attention head after a column-parallel projection (Qwen3's
                      q_norm / k_norm): each rank normalises its own heads with the shared weight
  head_params         per-head parameters of an attention module (gpt-oss's sinks), split like its heads
  colwise / rowwise   the family's own projections, used beside the config's patterns (GPT-2's
                      Conv1D layers, which the Llama-style default patterns do not name)
  fused_qkv           column-parallel projections whose output is [q | k | v] (GPT-2's c_attn):
                      each rank takes its heads of each of the three
  fused_gate_up       column-parallel nn.Linear projections whose output is [gate | up] (GLM's
                      gate_up_proj): each rank takes its columns of both
  local_width         attributes of a tensor-parallel block that hold a full width its forward
                      reshapes by (GPT-2's split_size): divided by tp_size on the block

Adding a family: add a row keyed by its model_type (or reuse DECODER when its modules are
named like Llama's). A family with a projection layout of its own (e.g. MLA's low-rank
query/key-value projections) adds its projections to colwise / rowwise, and anything the
roles above cannot say goes in `extra_plan`: a function (model, tp_mesh, sequence_parallel)
-> {module name: ParallelStyle} merged into the plan.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch.nn as nn

from fsdp2_core.config import ConfigError

from .mla_tp import dsa_extra_plan, mla_extra_plan


@dataclass(frozen=True)
class TPLayout:
    embedding: str = "model.embed_tokens"
    layers: str = "model.layers.{*}"
    final_norm: str = "model.norm"
    head: str = "lm_head"
    position_embedding: Optional[str] = None
    head_norms: Tuple[str, ...] = ("model.layers.{*}.self_attn.q_norm", "model.layers.{*}.self_attn.k_norm")
    head_params: Tuple[str, ...] = ()
    colwise: Tuple[str, ...] = ()
    rowwise: Tuple[str, ...] = ()
    fused_qkv: Tuple[str, ...] = ()
    fused_gate_up: Tuple[str, ...] = ()
    local_width: Tuple[str, ...] = ()
    extra_plan: Optional[Callable] = None


DECODER = TPLayout()

GPT_OSS = TPLayout(head_params=("model.layers.{*}.self_attn.sinks",))

GPT2 = TPLayout(embedding="transformer.wte", position_embedding="transformer.wpe", layers="transformer.h.{*}",
                final_norm="transformer.ln_f", head_norms=(),
                colwise=("transformer.h.{*}.attn.c_attn", "transformer.h.{*}.mlp.c_fc"),
                rowwise=("transformer.h.{*}.attn.c_proj", "transformer.h.{*}.mlp.c_proj"),
                fused_qkv=("transformer.h.{*}.attn.c_attn",), local_width=("split_size",))

# Multi-Latent Attention (DeepSeek-V3, models/mla_tp.py): the up-projections split by heads, the down-projections to
# the shared latents and their norms whole on every rank, o_proj row-parallel (the default patterns)
DEEPSEEK_V3 = TPLayout(colwise=("model.layers.{*}.self_attn.q_b_proj", "model.layers.{*}.self_attn.kv_b_proj"),
                       extra_plan=mla_extra_plan)

# GPT-NeoX fuses q/k/v per head ([heads, 3, head_dim] rows), so a plain column split gives each rank whole heads
GPT_NEOX = TPLayout(embedding="gpt_neox.embed_in", layers="gpt_neox.layers.{*}", final_norm="gpt_neox.final_layer_norm",
                    head_norms=(), colwise=("gpt_neox.layers.{*}.attention.query_key_value",
                                            "gpt_neox.layers.{*}.mlp.dense_h_to_4h"),
                    rowwise=("gpt_neox.layers.{*}.attention.dense", "gpt_neox.layers.{*}.mlp.dense_4h_to_h"))

# ... with DeepSeek Sparse Attention's indexer whole on every rank too (DeepSeek-V3.2, GLM-5)
DSA = TPLayout(colwise=DEEPSEEK_V3.colwise, extra_plan=dsa_extra_plan)

# GLM (ChatGLM3, GLM-4): Llama's names but one gate_up_proj, [gate | up]
GLM = TPLayout(colwise=("model.layers.{*}.mlp.gate_up_proj",), fused_gate_up=("model.layers.{*}.mlp.gate_up_proj",))

# StableLM: Llama's names, but its attention reshapes by the whole model's head counts
STABLELM = TPLayout(local_width=("num_heads", "num_key_value_heads"))

LAYOUTS: Dict[str, TPLayout] = {"gpt2": GPT2, "gpt_oss": GPT_OSS, "deepseek_v3": DEEPSEEK_V3, "gpt_neox": GPT_NEOX,
                                "glm": GLM, "stablelm": STABLELM,
                                "deepseek_v32": DSA, "glm_moe_dsa": DSA,
                                "deepseek_v2": DEEPSEEK_V3}  # DeepSeek-V2's MLA has DeepSeek-V3's module names


# Families whose attention has no split here, by heads or by sequence: (what it is, why); the flag translation folds
# their tensor- and context-parallel ranks into FSDP (megatron_compat/groups.py)
UNSPLIT = {"bloom": ("BLOOM's ALiBi attention", "transformers' BLOOM builds the ALiBi biases of all heads over the "
                                                "whole sequence inside its attention"),
           "gpt_bigcode": ("GPT-BigCode's multi-query attention",
                           "GPT-BigCode's one key/value head is fused into c_attn after the queries"),
           "opt": ("OPT's decoder layers", "OPT keeps its MLP projections (fc1, fc2) in the decoder layer beside its "
                   "norms, with no MLP module the tensor-parallel plan could split around"),
           "nemotron_h": ("a hybrid model's Mamba2 mixers", "its Mamba2 mixers pack z, x, B, C and dt into one "
                          "in_proj, with a depthwise convolution and a scan over the whole sequence"),
           "qwen3_next": ("Qwen3-Next's Gated DeltaNet layers", "its Gated DeltaNet layers fuse q, k, v and z into one "
                          "projection, with a causal convolution and a recurrent state over the whole sequence")}


def tp_layout_for(model: nn.Module) -> TPLayout:
    """The row of the model's model_type; Llama-style names (DECODER) for every other family."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in UNSPLIT:
        raise ConfigError(f"tp_size > 1 with model_type {model_type}: {UNSPLIT[model_type][1]}, which tensor "
                          "parallelism does not split; set tp_size 1 (FSDP shards the weights over the same ranks)")
    return LAYOUTS.get(model_type, DECODER)
