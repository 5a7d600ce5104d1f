"""MiniMax-M2: a sigmoid router with an expert bias, experts in every layer, no shared experts.

Experts: gate_up_proj [E, 2·I, H] (gate rows first, then up) and down_proj [E, H, I], as Qwen3-MoE's. The router
(`gate`, MiniMaxM2TopKRouter) takes sigmoid scores, adds the block's `e_score_correction_bias` for the choice only,
picks the top k and renormalises their scores: Megatron's sigmoid router with --moe-router-enable-expert-bias. The
bias lives on the block (not the router) and is handed to the router per call; we bind it, so the router is called
as every other family's (`gate(x)`) and the expert-bias update finds it on the block. The q/k norms span all heads
of a layer (not each head), so tensor parallelism, which splits the heads, is refused.
"""
import types

import torch.nn as nn

from fsdp2_core.config import ConfigError

from ..moe import install_moe
from .qwen3_moe import experts_forward, fused_experts

BLOCKS = ("MiniMaxM2SparseMoeBlock",)


def _router_with_block_bias(block: nn.Module) -> None:
    gate, forward = block.gate, block.gate.forward

    def routed(self, x):
        return forward(x, block.e_score_correction_bias)

    gate.forward = types.MethodType(routed, gate)


def install(model: nn.Module, cfg) -> None:
    if cfg.parallel.tp_size > 1:
        raise ConfigError(f"tp_size {cfg.parallel.tp_size} with model_id minimax_m2: MiniMax-M2 normalises q and k "
                          "over all heads of a layer, which tensor parallelism splits; set tp_size 1 (expert, context "
                          "and data parallelism work)")
    jitter = getattr(model.config, "router_jitter_noise", 0.0)
    if jitter:
        raise ConfigError(f"router_jitter_noise {jitter}: our MoE forward has no router jitter; set it to 0")
    blocks = install_moe(model, BLOCKS, "gate", experts_forward, returns_scores=False, fused=fused_experts(cfg))
    for block in blocks:
        _router_with_block_bias(block)
