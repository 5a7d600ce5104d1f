"""Fused kernels behind the `optimization` switches, on every forward path.

`apply_kernels(model, cfg)` is called once per model (from `build_parallel_model`, and from
the registered families' install): it swaps in the kernel-dispatching functions of this
package for what each switch names, with or without `model_id`:

  use_fused_rmsnorm          every *RMSNorm module with `variance_epsilon` -> `rmsnorm.rmsnorm`
  use_fused_rotary_pos_emb   the family's `apply_rotary_pos_emb` (half-rotation families) -> `rotary`
  use_flash_attn             plain forward: transformers attention `fsdp2_fused`; with model_id our
                             attention core calls `attention.causal_attention` for causal attention
  moe_grouped_gemm           plain forward: every transformers experts module (3-D weights) -> grouped GEMM;
                             with model_id `models/moe.py` runs `grouped_gemm.grouped_gemm`

Which implementation runs (npu / cuda / reference) is decided per call in `select.py`,
and recorded in `select.RAN`.
"""
import logging
import sys
import types

import torch.nn as nn

from . import attention, grouped_gemm, rmsnorm, rotary, select

log = logging.getLogger(__name__)
_ORIGINAL_ROTARY = {}


def _patch_rotary(model: nn.Module) -> bool:
    modeling = sys.modules.get(type(model).__module__)
    if modeling is None or not hasattr(modeling, "rotate_half") or not hasattr(modeling, "apply_rotary_pos_emb"):
        return False
    if modeling.__name__ not in _ORIGINAL_ROTARY:
        _ORIGINAL_ROTARY[modeling.__name__] = modeling.apply_rotary_pos_emb
    modeling.apply_rotary_pos_emb = rotary.apply_rotary_pos_emb  # module-wide: same maths for every model of the family
    return True


def restore_rotary() -> None:
    """Undo the rotary patch in every family module (tests)."""
    for name, fn in _ORIGINAL_ROTARY.items():
        sys.modules[name].apply_rotary_pos_emb = fn
    _ORIGINAL_ROTARY.clear()


def apply_kernels(model: nn.Module, cfg) -> list:
    """Install the kernels the optimization switches ask for; return the switches applied. Idempotent."""
    o, applied = cfg.optimization, []
    if getattr(model, "_fsdp2_kernels", None) is not None:
        return model._fsdp2_kernels
    if o.use_fused_rmsnorm:
        norms = [m for m in model.modules()
                 if type(m).__name__.endswith("RMSNorm") and hasattr(m, "variance_epsilon") and hasattr(m, "weight")]
        for m in norms:
            m.forward = types.MethodType(rmsnorm.fused_rmsnorm_forward, m)
        if norms:
            applied.append("use_fused_rmsnorm")
        else:
            log.warning("use_fused_rmsnorm: %s has no RMSNorm module with variance_epsilon; nothing swapped",
                        type(model).__name__)
    if o.use_fused_rotary_pos_emb:
        if _patch_rotary(model):
            applied.append("use_fused_rotary_pos_emb")
        else:
            log.warning("use_fused_rotary_pos_emb: %s has no half-rotation apply_rotary_pos_emb; the family's "
                        "own rotary embedding runs", type(model).__name__)
    if o.use_flash_attn:
        tagged = 0
        for m in model.modules():
            if type(m).__name__.endswith("Attention") and hasattr(m, "head_dim"):
                m._fsdp2_fused_attn = True  # read by our attention core (model_id, context parallel)
                tagged += 1
        config = getattr(model, "config", None)
        sinks = any(hasattr(m, "sinks") for m in model.modules() if type(m).__name__.endswith("Attention"))
        if sinks and getattr(config, "_attn_implementation", None) != "fsdp2_ulysses":
            log.warning("use_flash_attn: %s has attention sinks, which the fused kernels lack; set model_id for our "
                        "attention core, which handles them. Attention runs unchanged", type(model).__name__)
            tagged = 0
        elif config is not None and getattr(config, "_attn_implementation", None) != "fsdp2_ulysses":
            attention.register()
            config._attn_implementation = attention.ATTENTION_NAME
        if tagged:
            applied.append("use_flash_attn")
    if o.moe_grouped_gemm:
        experts = [m for m in model.modules() if hasattr(m, "gate_up_proj") and hasattr(m, "down_proj")
                   and hasattr(m, "num_experts") and getattr(m.gate_up_proj, "dim", lambda: 0)() == 3
                   and not hasattr(m, "_fsdp2_fused")]  # model_id families compute experts themselves
        for m in experts:
            m.forward = types.MethodType(grouped_gemm.grouped_experts_forward, m)
        if experts or any(hasattr(m, "_fsdp2_fused") for m in model.modules()):
            applied.append("moe_grouped_gemm")
    model._fsdp2_kernels = applied
    if applied:
        log.info("fused kernels: %s", ", ".join(applied))
    return applied


__all__ = ["apply_kernels", "restore_rotary", "select", "rmsnorm", "rotary", "attention", "grouped_gemm"]
