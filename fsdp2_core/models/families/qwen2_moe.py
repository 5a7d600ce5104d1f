"""Qwen2-MoE: Qwen3-MoE's routed experts and softmax router, plus one gated shared expert.

The shared expert (`shared_expert`, an MLP of shared_expert_intermediate_size) runs on every token and is scaled
by sigmoid(shared_expert_gate(x)): Megatron's --moe-shared-expert-intermediate-size with --moe-shared-expert-gate
(MindSpeed --n-shared-experts with --shared-expert-gate).
"""
import torch
import torch.nn as nn

from ..moe import install_moe
from .qwen3_moe import experts_forward, fused_experts

BLOCKS = ("Qwen2MoeSparseMoeBlock", "Qwen3NextSparseMoeBlock")  # Qwen3-Next's MoE block is Qwen2-MoE's


def shared_forward(block, x):
    return torch.sigmoid(block.shared_expert_gate(x)) * block.shared_expert(x)


def install(model: nn.Module, cfg) -> None:
    install_moe(model, BLOCKS, "gate", experts_forward, returns_scores=False, fused=fused_experts(cfg),
                shared_forward=shared_forward)
