"""Qwen3 (dense): the transformers modules as they are; our additions are the common ones
(chunked loss, fused-kernel hooks, Ulysses attention) that every registered family gets."""
import torch.nn as nn


def install(model: nn.Module, cfg) -> None:
    """Nothing family-specific: dense Qwen3 needs no MoE dispatch."""
