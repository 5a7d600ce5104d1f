"""Rotary position embedding (half rotation, as Llama / Qwen / Mistral apply it): `use_fused_rotary_pos_emb`."""
import torch

from . import select


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rotary_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [b, h, s, d]; cos / sin broadcastable to it."""
    impl = select.choose("rotary", select.device_of(x), x.dtype)
    select.record("rotary", impl)
    if impl == "npu_rotary_mul":
        return select.torch_npu().npu_rotary_mul(x, cos.to(x.dtype), sin.to(x.dtype))
    return rotary_reference(x, cos, sin)


def apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    """Drop-in for transformers' `apply_rotary_pos_emb` of the half-rotation families."""
    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return rotary(q, cos, sin), rotary(k, cos, sin)
