"""DeepSeek-V3.2 (deepseek_v32) and GLM-5 (glm_moe_dsa): DeepSeek-V3's MLA and MoE plus DeepSeek Sparse Attention.

The MoE blocks are DeepSeek-V3's (sigmoid router with expert bias and groups, shared experts): `deepseek_v3.py`'s
forward. Each attention gets ours, which computes what transformers' does (same projections, MLA's interleaved
RoPE, the indexer's top-k as a mask on the main attention) with three differences that training needs:
  - the indexer runs with gradients (transformers runs it under no_grad) on detached inputs, so only its own
    loss trains it (`indexer_loss.py`), as in MindSpeed-LLM and megatron-core;
  - the mask the indexer and the attention share is our core's (causal, documents of packed samples, padding);
  - with `dsa_indexer_loss_coeff` the layer leaves coeff · KL in `_fsdp2_indexer_loss` (training forwards only),
    which the loss adds to the step's loss as it adds the router losses.
The two families differ in the indexer's RoPE only: DeepSeek-V3.2 rotates half-split pairs, GLM-MoE-DSA
interleaved pairs (MindSpeed-LLM's indexer). GLM-5.2's shared top-k layers (an indexer every N layers) are refused.
"""
import types

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers.models.deepseek_v3.modeling_deepseek_v3 import apply_rotary_pos_emb_interleave
from transformers.models.deepseek_v32.modeling_deepseek_v32 import apply_rotary_pos_emb as half_split_rope

from fsdp2_core.config import ConfigError

from ..attention import _allowed
from ..indexer_loss import attention_target, index_scores, select_top_k, selected_mask, sparse_indexer_kl
from ..moe import install_moe
from .deepseek_v3 import shared_forward
from .qwen3_moe import experts_forward, fused_experts

BLOCKS = ("DeepseekV32MoE", "GlmMoeDsaMoE")
ATTENTIONS = {"DeepseekV32Attention": half_split_rope, "GlmMoeDsaAttention": apply_rotary_pos_emb_interleave}


def dsa_attention_forward(self, hidden_states, position_embeddings, attention_mask=None, cache=None,
                          position_ids=None, prev_topk_indices=None, cp_doc_ids=None, cp_key_mask=None,
                          cp_dense_mask=None, **_ignored):
    b, s = hidden_states.shape[:-1]
    q_latent = self.q_a_layernorm(self.q_a_proj(hidden_states))
    q = self.q_b_proj(q_latent).view(b, s, -1, self.qk_head_dim).transpose(1, 2)
    q_pass, q_rot = torch.split(q, [self.qk_nope_head_dim, self.qk_rope_head_dim], dim=-1)
    kv_pass, k_rot = torch.split(self.kv_a_proj_with_mqa(hidden_states), [self.kv_lora_rank, self.qk_rope_head_dim],
                                 dim=-1)
    k_pass = self.kv_a_layernorm(kv_pass).view(b, 1, s, self.kv_lora_rank)
    k_rot = k_rot.view(b, 1, s, self.qk_rope_head_dim)
    cos, sin = position_embeddings
    q_rot, k_rot = apply_rotary_pos_emb_interleave(q_rot, k_rot, cos, sin)
    query = torch.cat((q_pass, q_rot), dim=-1)
    key, value = self.expand_kv(k_pass, k_rot)

    allowed = _allowed(s, hidden_states.device, None, cp_doc_ids, cp_key_mask, cp_dense_mask)  # [b|1, 1, S, S]
    scores = index_scores(self.indexer, hidden_states.detach(), q_latent.detach(), cos, sin, self._fsdp2_rope)
    masked, top = select_top_k(scores, allowed[:, 0], self.indexer.index_topk)
    mask = allowed & selected_mask(top, s)[:, None]
    dropout = self.attention_dropout if self.training else 0.0
    # not our core: it always lets a query see itself, which the indexer may not have selected
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout, scale=self.scaling)
    coeff = self._fsdp2_indexer_coeff
    if coeff and self.training and torch.is_grad_enabled():
        target = attention_target(query.detach(), key.detach(), self.scaling, mask)
        group = getattr(self, "_fsdp2_tp_group", None)
        if group is not None:  # tensor parallelism: this rank's heads only; the target sums them all
            torch.distributed.all_reduce(target, group=group)
        self._fsdp2_indexer_loss = coeff * sparse_indexer_kl(target, masked, top)
    out = self.o_proj(out.transpose(1, 2).reshape(b, s, -1))
    return (out, None, top) if type(self).__name__ == "GlmMoeDsaAttention" else (out, None)


def install(model: nn.Module, cfg) -> None:
    p = cfg.parallel
    if p.cp_size > 1:
        raise ConfigError(f"cp_size {p.cp_size} with sparse attention (DSA indexer, model_id deepseek_v32): the "
                          "indexer scores every query against the whole sequence and picks its keys from it, which "
                          "context parallelism splits; set cp_size 1 (shard with FSDP, tensor and expert parallelism)")
    install_moe(model, BLOCKS, "gate", experts_forward, returns_scores=False, fused=fused_experts(cfg),
                shared_forward=shared_forward)
    layers = [m for m in model.modules() if type(m).__name__ in ATTENTIONS]
    for attn in layers:
        if getattr(attn, "indexer", None) is None:
            raise ConfigError("a GLM-MoE-DSA layer without its own indexer (indexer_types 'shared', GLM-5.2's "
                              "--index-topk-freq): sharing one layer's top-k with the next is not supported; give "
                              "every layer its indexer (index_topk_freq 1)")
        attn._fsdp2_rope = ATTENTIONS[type(attn).__name__]
        attn._fsdp2_indexer_coeff = cfg.model.dsa_indexer_loss_coeff
        attn._fsdp2_indexer_loss = None
        attn._fsdp2_tp_group = None
        attn.forward = types.MethodType(dsa_attention_forward, attn)
    model._fsdp2_indexed_attention = layers
