"""RMSNorm: reference (transformers' maths in fp32) and the fused kernels (`use_fused_rmsnorm`)."""
import torch
import torch.nn.functional as F

from . import select


def rmsnorm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dtype = x.dtype
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    impl = select.choose("rmsnorm", select.device_of(x), x.dtype)
    select.record("rmsnorm", impl)
    if impl == "npu_rms_norm":
        out = select.torch_npu().npu_rms_norm(x.float(), weight.float(), epsilon=eps)[0]
        return out.to(torch.promote_types(x.dtype, weight.dtype) if weight.dtype != x.dtype else x.dtype)
    if impl == "torch_rms_norm":
        return weight * F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)
    return rmsnorm_reference(x, weight, eps)


def fused_rmsnorm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """Replaces a transformers *RMSNorm module's forward (self has weight and variance_epsilon)."""
    return rmsnorm(hidden_states, self.weight, self.variance_epsilon)
