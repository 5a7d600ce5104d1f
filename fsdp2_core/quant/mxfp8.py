"""MXFP8 quantised training (`quant_recipe: mxfp8`): the OCP microscaling format.

Every block of `quant_block_size` consecutive elements along a GEMM's contraction dimension
shares one power-of-two scale (E8M0); the elements are cast to float8 (E4M3 or E5M2). Both
GEMM operands are quantised in the forward pass and in both backward GEMMs (the gradient,
and for the weight gradient the activations, blocked along the token dimension), as
torchao's MXFP8 training recipe does.

Where it runs:
  CUDA, compute capability 10.x (Blackwell), E4M3, block 32: torchao's MXFP8 GEMMs
      (`torchao.prototype.moe_training.mxfp8_linear`), the maintained implementation;
  everywhere else: emulation — quantise-dequantise with torchao's own `to_mx` / `to_dtype`
      when torchao is importable (`torchao_emulated`), else the same maths here (`emulated`),
      then the matmul in the input dtype. Same numerics, no speed-up.
  HIF8 (Ascend's HiFloat8) is accepted only on an NPU device and is not yet implemented there.
`RAN` records which implementation each quantised GEMM used.

Weights stay in their training dtype as parameters: FSDP shards and all-gathers them exactly as
without quantisation (quantisation happens on the gathered weight inside the forward), so the
all-gathers stay correct and checkpoints keep their names and dtypes.
"""
import collections
import importlib.util
import logging
import types
from typing import Optional

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

ELEMENT_DTYPES = {"E4M3": torch.float8_e4m3fn, "E5M2": torch.float8_e5m2}
EMAX = {torch.float8_e4m3fn: 8, torch.float8_e5m2: 15}  # exponent of the largest power of two of the format
RAN: collections.Counter = collections.Counter()


def torchao_mx_available() -> bool:
    return importlib.util.find_spec("torchao") is not None


def _qdq_last(x: torch.Tensor, elem: torch.dtype, block: int, use_torchao: bool) -> torch.Tensor:
    """Quantise-dequantise along the last dim (padded with zeros to a multiple of `block`)."""
    n = x.shape[-1]
    pad = (-n) % block
    h = F.pad(x, (0, pad)) if pad else x
    h = h.float().contiguous()
    if use_torchao:
        from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx
        scale, data = to_mx(h, elem, block)
        out = to_dtype(data, scale, elem, block, torch.float32)
    else:
        blocks = h.reshape(*h.shape[:-1], -1, block)
        amax = blocks.abs().amax(-1, keepdim=True)
        # torchao's FLOOR scale: 2^(floor(log2(amax)) - emax of the element format), as an E8M0 exponent
        exp = torch.floor(torch.log2(amax.clamp(min=torch.finfo(torch.float32).tiny))) - EMAX[elem]
        scale = torch.exp2(exp.clamp(-127, 127))
        scale = torch.where(amax == 0, torch.ones_like(scale), scale)
        fmax = torch.finfo(elem).max
        q = (blocks / scale).clamp(-fmax, fmax).to(elem).float()
        out = (q * scale).reshape(h.shape)
    out = out[..., :n] if pad else out
    return out.to(x.dtype)


def quantize_dequantize(x: torch.Tensor, fmt: str, block: int, dim: int = -1,
                        use_torchao: Optional[bool] = None) -> torch.Tensor:
    """x through MX format `fmt` (E4M3 / E5M2) with blocks of `block` along `dim`."""
    elem = ELEMENT_DTYPES[fmt]
    use_torchao = torchao_mx_available() if use_torchao is None else use_torchao
    if dim in (-1, x.dim() - 1):
        return _qdq_last(x, elem, block, use_torchao)
    return _qdq_last(x.transpose(dim, -1), elem, block, use_torchao).transpose(dim, -1)


class _MXMatmul(torch.autograd.Function):
    """y = x @ wᵀ with both operands MX-quantised along the contraction dim, in forward and backward."""

    @staticmethod
    def forward(ctx, x, w, fmt, block):
        ctx.save_for_backward(x, w)
        ctx.fmt, ctx.block = fmt, block
        return quantize_dequantize(x, fmt, block, -1) @ quantize_dequantize(w, fmt, block, -1).t()

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        fmt, block = ctx.fmt, ctx.block
        grad_x = quantize_dequantize(g, fmt, block, -1) @ quantize_dequantize(w, fmt, block, 0)
        grad_w = quantize_dequantize(g, fmt, block, 0).t() @ quantize_dequantize(x, fmt, block, 0)
        return grad_x, grad_w, None, None


def _native_mxfp8(x: torch.Tensor, fmt: str, block: int) -> bool:
    return (x.is_cuda and fmt == "E4M3" and block == 32 and torch.cuda.get_device_capability(x.device)[0] >= 10
            and torchao_mx_available())


def mx_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], fmt: str, block: int):
    if _native_mxfp8(x, fmt, block):
        from torchao.prototype.moe_training.mxfp8_linear import _to_mxfp8_then_scaled_mm
        RAN["torchao_mxfp8"] += 1
        y = _to_mxfp8_then_scaled_mm(x, weight)
    else:
        RAN["torchao_emulated" if torchao_mx_available() else "emulated"] += 1
        shape = x.shape
        y = _MXMatmul.apply(x.reshape(-1, shape[-1]), weight, fmt, block).reshape(*shape[:-1], weight.shape[0])
    return y if bias is None else y + bias.to(y.dtype)


def mx_linear_forward(self, x: torch.Tensor) -> torch.Tensor:
    """Replaces an nn.Linear's forward (the module and its parameters stay as they are)."""
    return mx_linear(x, self.weight, self.bias, self._fsdp2_quant_format, self._fsdp2_quant_block)


def convert_linear(module: torch.nn.Module, fmt: str, block: int) -> None:
    module._fsdp2_quant_format, module._fsdp2_quant_block = fmt, block
    module.forward = types.MethodType(mx_linear_forward, module)


# ---------------------------------------------------------------- MoE experts (quantize.moe.mx)

class _QDQ(torch.autograd.Function):
    """Quantise-dequantise with MX along `dim`; the gradient is quantised the same way (straight through)."""

    @staticmethod
    def forward(ctx, x, fmt, block, dim):
        ctx.args = (fmt, block, dim)
        return quantize_dequantize(x, fmt, block, dim)

    @staticmethod
    def backward(ctx, g):
        return quantize_dequantize(g, *ctx.args), None, None, None


EXPERT_WEIGHTS = ("gate_up_proj", "down_proj")


def _experts_call(self, *args, **kwargs):
    """Experts forward with its 3-D weights and token input MX-quantised (emulated)."""
    fmt, block = self._fsdp2_quant_format, self._fsdp2_quant_block
    RAN["moe_emulated"] += 1
    args = list(args)
    if args and torch.is_tensor(args[0]) and args[0].is_floating_point():
        args[0] = _QDQ.apply(args[0], fmt, block, -1)
    shadowed = []
    for name in EXPERT_WEIGHTS:
        p = self._parameters.get(name)
        if p is not None:
            # blocks along the last dim: the contraction dim of Qwen3-MoE / Mixtral's layout (x @ W[e]ᵀ),
            # the output dim of gpt-oss's (x @ W[e]); an emulation of the numerics, not a kernel
            self.__dict__[name] = _QDQ.apply(p, fmt, block, -1)
            shadowed.append(name)
    try:
        return self._fsdp2_orig_forward(*args, **kwargs)
    finally:
        for name in shadowed:
            del self.__dict__[name]


def convert_experts(module: torch.nn.Module, fmt: str, block: int) -> None:
    module._fsdp2_quant_format, module._fsdp2_quant_block = fmt, block
    module._fsdp2_orig_forward = module.forward
    module.forward = types.MethodType(_experts_call, module)
