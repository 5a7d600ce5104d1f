"""Which implementation of each fused kernel runs, decided in one place.

A kernel (`rmsnorm`, `rotary`, `attention`, `grouped_gemm`) has a reference
implementation in plain torch and, per device, the fused one the hardware offers:

  kernel        npu (torch_npu)          cuda                                       cpu
  rmsnorm       npu_rms_norm             torch F.rms_norm (fused)                   reference
  rotary        npu_rotary_mul           reference (torch has no fused rotary)      reference
  attention     npu_fusion_attention     flash_attn (if installed, fp16/bf16), else  reference (SDPA math)
                                         SDPA restricted to its flash backend
  grouped_gemm  npu_grouped_matmul       torch._grouped_mm (bf16, sm90+), else      reference (padded bmm)
                                         reference

`choose(kernel, device_type, dtype)` is pure (stand-in modules and capabilities test it);
each call of a kernel records the implementation that ran in `RAN`, so a test or a
benchmark can show which kernel was used. Where only the reference exists the first call
logs one notice per kernel.
"""
import collections
import contextlib
import importlib.util
import logging
import sys
from typing import Optional

import torch

log = logging.getLogger(__name__)

KERNELS = ("rmsnorm", "rotary", "attention", "grouped_gemm")
REFERENCE = "reference"
RAN: collections.Counter = collections.Counter()   # (kernel, implementation) -> calls
_noticed = set()
_forced_device: Optional[str] = None


def torch_npu():
    """The torch_npu module, or None (a stand-in placed in sys.modules counts: tests use one)."""
    mod = sys.modules.get("torch_npu")
    if mod is not None:
        return mod
    if importlib.util.find_spec("torch_npu") is None:
        return None
    import torch_npu as mod  # noqa: F811
    return mod


def flash_attn_available() -> bool:
    return "flash_attn" in sys.modules or importlib.util.find_spec("flash_attn") is not None


def cuda_capability():
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else (0, 0)


def choose(kernel: str, device_type: str, dtype: torch.dtype = torch.float32) -> str:
    """The implementation name of `kernel` for tensors of `device_type` / `dtype`."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known: {', '.join(KERNELS)}")
    if device_type == "npu" and torch_npu() is not None:
        return {"rmsnorm": "npu_rms_norm", "rotary": "npu_rotary_mul", "attention": "npu_fusion_attention",
                "grouped_gemm": "npu_grouped_matmul"}[kernel]
    if device_type == "cuda":
        half = dtype in (torch.float16, torch.bfloat16)
        if kernel == "rmsnorm":
            return "torch_rms_norm"
        if kernel == "attention":
            return "flash_attn" if half and flash_attn_available() else "sdpa_flash" if half else REFERENCE
        if kernel == "grouped_gemm":
            ok = dtype == torch.bfloat16 and hasattr(torch, "_grouped_mm") and cuda_capability() >= (9, 0)
            return "torch_grouped_mm" if ok else REFERENCE
    return REFERENCE


def device_of(t: torch.Tensor) -> str:
    return _forced_device or t.device.type


@contextlib.contextmanager
def simulate_device(device_type: str):
    """Select kernels as if tensors lived on `device_type` (tests with stand-in modules, CPU tensors)."""
    global _forced_device
    prev, _forced_device = _forced_device, device_type
    try:
        yield
    finally:
        _forced_device = prev


def record(kernel: str, impl: str) -> None:
    RAN[(kernel, impl)] += 1
    if impl == REFERENCE and kernel not in _noticed:
        _noticed.add(kernel)
        log.warning("fused %s requested: no fused kernel on this device, the reference implementation runs", kernel)


def ran(kernel: str) -> dict:
    """{implementation: calls} of one kernel since the last reset."""
    return {impl: n for (k, impl), n in RAN.items() if k == kernel}


def reset() -> None:
    RAN.clear()
