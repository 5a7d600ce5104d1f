"""Qwen3-MoE, and Mixtral, which shares its expert layout and router.

Experts are fused 3-D weights in transformers 5: gate_up_proj [E, 2·I, H] (gate rows
first, then up) and down_proj [E, H, I], applied as x @ W[e]ᵀ with SiLU gating. The
router (`gate`) softmaxes the logits, keeps the top k and renormalises them when
norm_topk_prob is set (Mixtral always renormalises).
"""
import torch.nn as nn

from fsdp2_core.config import ConfigError

from ..moe import grouped_matmul, install_moe, local

BLOCKS = ("Qwen3MoeSparseMoeBlock", "MixtralSparseMoeBlock")


def experts_forward(self, x, counts):
    """Tokens grouped by (local) expert -> expert outputs; self is the experts module."""
    fused = self._fsdp2_fused
    gate_up = grouped_matmul(x, local(self.gate_up_proj).transpose(1, 2), counts, fused)
    gate, up = gate_up.chunk(2, dim=-1)
    return grouped_matmul(self.act_fn(gate) * up, local(self.down_proj).transpose(1, 2), counts, fused)


def install(model: nn.Module, cfg) -> None:
    jitter = getattr(model.config, "router_jitter_noise", 0.0)
    if jitter:
        raise ConfigError(f"router_jitter_noise {jitter}: our MoE forward has no router jitter; set it to 0")
    install_moe(model, BLOCKS, "gate", experts_forward, returns_scores=False, fused=fused_experts(cfg))


def fused_experts(cfg) -> bool:
    return cfg.parallel.ep_dispatcher == "fused" or bool(cfg.optimization.moe_grouped_gemm)
