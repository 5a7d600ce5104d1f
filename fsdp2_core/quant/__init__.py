"""Quantised training, applied once to the built model before any parallelism (`build_parallel_model`).

  quant_recipe mxfp8 (model.quant_*)    fsdp2_core.quant.mxfp8: converters `quantize.linear.mx` (nn.Linear
                                         modules) and `quantize.moe.mx` (experts with 3-D weights)
  fp8_format (Megatron's --fp8-*)       fsdp2_core.quant.float8: torchao float8 training (FP8 GPUs only)

Modules: those under `quant_apply_modules` (patterns: `{*}` one name component, `*` anything),
minus those under `quant_ignored_modules`.
"""
import logging

import torch.nn as nn

from fsdp2_core.config import ConfigError
from fsdp2_core.parallel.patterns import matches

from . import mxfp8

log = logging.getLogger(__name__)
CONVERTERS = ("quantize.linear.mx", "quantize.moe.mx")


def _under(name: str, patterns) -> bool:
    parts = name.split(".")
    return any(matches(".".join(parts[:i]), patterns) for i in range(1, len(parts) + 1))


def module_filter(m):
    """fqn -> quantise? from quant_apply_modules / quant_ignored_modules."""
    def keep(name: str) -> bool:
        ignored = _under(name, m.quant_ignored_modules) or name.split(".")[-1] in (m.quant_ignored_modules or ())
        return _under(name, m.quant_apply_modules) and not ignored
    return keep


def check_quantization(cfg, device_type: str) -> None:
    """The config's quantisation choices against this device: errors before anything is built."""
    m = cfg.model
    if m.quant_recipe is None:
        return
    if m.fp8_format:
        raise ConfigError("quant_recipe mxfp8 and fp8_format (--fp8-format) both set: choose one quantised recipe")
    if m.quant_format == "HIF8":
        if device_type != "npu":
            raise ConfigError(f"quant_format HIF8 (HiFloat8) exists only on Ascend NPUs; this run is on {device_type}. "
                              f"Use quant_format E4M3 or E5M2")
        raise ConfigError("quant_format HIF8 is not implemented yet on Ascend; use quant_format E4M3 or E5M2 "
                          "(emulated MXFP8) meanwhile")
    if m.quant_block_size < 1:
        raise ConfigError(f"quant_block_size must be >= 1 (MXFP8 uses 32), got {m.quant_block_size}")
    unknown = [c for c in m.converters if c not in CONVERTERS]
    if unknown or not m.converters:
        raise ConfigError(f"converters {m.converters}: known converters are {', '.join(CONVERTERS)}")
    if cfg.parallel.tp_size > 1:
        raise ConfigError("quant_recipe mxfp8 with tp_size > 1 is not supported yet; use tp_size 1 (FSDP shards alone)")


def apply_quantization(model: nn.Module, cfg, device_type: str) -> dict:
    """Convert the selected modules; return {converter: modules converted}. No-op without a recipe."""
    m = cfg.model
    if m.fp8_format:
        from .float8 import apply_float8
        n = apply_float8(model, cfg, device_type, module_filter(m))
        log.info("float8 training (torchao, recipe %s, format %s): %d linear modules", m.fp8_recipe, m.fp8_format, n)
        return {"float8": n}
    if m.quant_recipe is None:
        return {}
    check_quantization(cfg, device_type)
    fmt = m.quant_format or "E4M3"
    keep = module_filter(m)
    done = {}
    if "quantize.linear.mx" in m.converters:
        linears = [mod for name, mod in model.named_modules() if isinstance(mod, nn.Linear) and keep(name)]
        for mod in linears:
            mxfp8.convert_linear(mod, fmt, m.quant_block_size)
        done["quantize.linear.mx"] = len(linears)
    if "quantize.moe.mx" in m.converters:
        experts = [mod for name, mod in model.named_modules()
                   if keep(name) and any(getattr(mod, w, None) is not None and mod._parameters.get(w) is not None
                                         and mod._parameters[w].dim() == 3 for w in mxfp8.EXPERT_WEIGHTS)]
        for mod in experts:
            mxfp8.convert_experts(mod, fmt, m.quant_block_size)
        done["quantize.moe.mx"] = len(experts)
    if not any(done.values()):
        raise ConfigError(f"quant_recipe mxfp8: converters {m.converters} found no module under quant_apply_modules "
                          f"{m.quant_apply_modules} (minus quant_ignored_modules {m.quant_ignored_modules})")
    impl = "torchao MXFP8 GEMMs where the device has them (CUDA sm100), else " + (
        "emulation with torchao's MX quantisation" if mxfp8.torchao_mx_available() else "emulation")
    log.info("mxfp8 %s block %d: %s; %s", fmt, m.quant_block_size,
             ", ".join(f"{k} {v} modules" for k, v in done.items()), impl)
    return done


__all__ = ["apply_quantization", "check_quantization", "module_filter", "CONVERTERS"]
