"""gpt-oss: MoE with biased experts and a clamped SwiGLU, attention sinks, sliding-window layers.

Experts: gate_up_proj [E, H, 2·I] with gate and up interleaved (even / odd columns),
gate_up_proj_bias [E, 2·I], down_proj [E, I, H], down_proj_bias [E, H], applied as
x @ W[e] + b[e]. The router has a bias, takes the top-k logits and softmaxes them.
Sinks and sliding windows live in attention: the transformers eager path handles them
on one rank, the Ulysses attention of context parallelism handles them split.
"""
import torch.nn as nn

from ..moe import grouped_matmul, install_moe, local, per_expert
from .qwen3_moe import fused_experts


def experts_forward(self, x, counts):
    fused = self._fsdp2_fused
    gate_up = (grouped_matmul(x, local(self.gate_up_proj), counts, fused)
               + per_expert(local(self.gate_up_proj_bias), counts))
    hidden = self._apply_gate(gate_up)
    return grouped_matmul(hidden, local(self.down_proj), counts, fused) + per_expert(local(self.down_proj_bias), counts)


def install(model: nn.Module, cfg) -> None:
    install_moe(model, ("GptOssMLP",), "router", experts_forward, returns_scores=True, fused=fused_experts(cfg))
