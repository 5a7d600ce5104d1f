"""Fused-kernel hooks of the registered families (`optimization.use_fused_rmsnorm`, ...).

Each hook swaps a module's forward, or the attention implementation, for a fused
kernel when the device and packages provide one; otherwise it logs what is missing
and the plain path runs (same maths). Where the hooks apply:
  use_fused_rmsnorm         torch_npu.npu_rms_norm on Ascend, torch's fused F.rms_norm elsewhere
  use_flash_attn            transformers' flash_attention_2 when flash_attn is installed (CUDA);
                            under context parallelism the Ulysses core runs SDPA, which picks flash kernels itself
  use_fused_rotary_pos_emb  Ascend only (torch_npu.npu_rotary_mul): patched into the family's modelling module
"""
import importlib
import logging
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)


def _npu():
    try:
        import torch_npu  # noqa: F401
        return torch_npu
    except ImportError:
        return None


def fused_rmsnorm_forward(self, hidden_states):
    dtype = hidden_states.dtype
    eps = self.variance_epsilon
    npu = _npu() if hidden_states.device.type == "npu" else None
    if npu is not None:
        return npu.npu_rms_norm(hidden_states.float(), self.weight.float(), epsilon=eps)[0].to(dtype)
    normed = F.rms_norm(hidden_states.float(), (hidden_states.shape[-1],), eps=eps)
    return (self.weight * normed.to(dtype)) if self.weight.dtype == dtype else (self.weight * normed).to(dtype)


def apply_kernel_hooks(model: nn.Module, cfg) -> list:
    """Install the requested fused kernels; return the names of those applied."""
    o, applied = cfg.optimization, []
    if o.use_fused_rmsnorm:
        for m in model.modules():
            if type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon"):
                m.forward = fused_rmsnorm_forward.__get__(m)
        applied.append("use_fused_rmsnorm")
    if o.use_flash_attn:
        if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
            log.warning("use_flash_attn: flash_attn is not installed or there is no CUDA device; attention runs "
                        "through transformers' %s", model.config._attn_implementation)
        else:
            model.config._attn_implementation = "flash_attention_2"
            model._fsdp2_cp = None  # transformers' flash path; context parallelism reinstalls the Ulysses core
            applied.append("use_flash_attn")
    if o.use_fused_rotary_pos_emb:
        npu = _npu()
        modeling = sys.modules.get(type(model).__module__)
        if npu is None or modeling is None or not hasattr(modeling, "rotate_half"):
            log.warning("use_fused_rotary_pos_emb: needs Ascend torch_npu (npu_rotary_mul) and a half-rotation rotary "
                        "family; the plain rotary embedding runs")
        else:
            def fused_rotary(q, k, cos, sin, unsqueeze_dim=1):
                cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
                return npu.npu_rotary_mul(q, cos, sin), npu.npu_rotary_mul(k, cos, sin)
            modeling.apply_rotary_pos_emb = fused_rotary
            applied.append("use_fused_rotary_pos_emb")
    return applied
