"""DeepSeek-V3, and GLM-4.5 (glm4_moe), which shares its MoE block: sigmoid router with expert bias and groups,
routed experts and shared experts side by side. DeepSeek-V2's block has the same experts and shared experts beside
a softmax router (DeepseekV2TopkRouter: softmax over all experts, the best `topk_group` groups by their best score
with topk_method group_limited_greedy, the top k scaled by `routed_scaling_factor`, never renormalised); it is
registered as its own model_id for its softmax score function.

Experts: gate_up_proj [E, 2·I, H] (gate rows first, then up) and down_proj [E, H, I], as Qwen3-MoE's. The router
(`gate`, DeepseekV3TopkRouter / Glm4MoeTopkRouter) takes sigmoid scores, adds `e_score_correction_bias` for the
choice only, keeps the best `topk_group` of `n_group` groups (by the sum of each group's top two), picks the top k,
renormalises (`norm_topk_prob`) and scales by `routed_scaling_factor`: Megatron's sigmoid router with
--moe-router-enable-expert-bias, --moe-router-num-groups/--moe-router-group-topk and
--moe-router-topk-scaling-factor. We call it as it is, so the trained model is the Hugging Face one.
`shared_experts` (an MLP of moe_intermediate_size · n_shared_experts) adds its output for every token.
Attention (DeepSeek-V3's Multi-Latent Attention, GLM-4.5's grouped-query attention) stays transformers'.
"""
import torch.nn as nn

from ..moe import install_moe
from .qwen3_moe import experts_forward, fused_experts

BLOCKS = ("DeepseekV3MoE", "Glm4MoeMoE", "DeepseekV2Moe")


def shared_forward(block, x):
    return block.shared_experts(x)


def install(model: nn.Module, cfg) -> None:
    install_moe(model, BLOCKS, "gate", experts_forward, returns_scores=False, fused=fused_experts(cfg),
                shared_forward=shared_forward)
