"""Float8 training from Megatron's FP8 flags (`model.fp8_*`), with torchao's float8 recipes.

  fp8_format  hybrid: E4M3 forward, E5M2 gradients (torchao's default); e4m3: E4M3 everywhere
  fp8_recipe  tensorwise -> torchao tensorwise dynamic scaling
              delayed    -> torchao tensorwise dynamic scaling (torchao has no delayed scaling: the
                            amax of the current tensor replaces the amax history; fp8_amax_history_len
                            and fp8_amax_compute_algo are kept in the config and reported as not used)
              blockwise  -> torchao rowwise scaling (the finer-grained scaling torchao maintains)
              mxfp8      -> quant_recipe mxfp8 (fsdp2_core.quant.mxfp8), decided at translation
  fp8_param_gather  FSDP all-gathers the weights in float8 (torchao enable_fsdp_float8_all_gather;
                    tensorwise scaling only)

Hardware: float8 GEMMs need CUDA compute capability 8.9 or newer (Ada, Hopper, Blackwell). Anywhere
else the run stops before building anything, naming the flag.
"""
import logging

import torch
import torch.nn as nn

from fsdp2_core.config import ConfigError

log = logging.getLogger(__name__)
TORCHAO_RECIPE = {"tensorwise": "tensorwise", "delayed": "tensorwise", "blockwise": "rowwise"}


def fp8_supported(device_type: str) -> bool:
    return device_type == "cuda" and torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)


def check_fp8_hardware(cfg, device_type: str) -> None:
    """Refuse at start when float8 training is asked for on hardware without FP8."""
    m = cfg.model
    if not m.fp8_format:
        return
    if not fp8_supported(device_type):
        raise ConfigError(f"--fp8-format {m.fp8_format} (model.fp8_format): float8 training needs an NVIDIA GPU with "
                          f"FP8 (compute capability 8.9+: Ada, Hopper or newer); this run is on {device_type}. Remove "
                          f"--fp8-format (and the other --fp8-* flags) to train in bf16")


def float8_config(m):
    from torchao.float8 import CastConfig, Float8LinearConfig
    recipe = TORCHAO_RECIPE[m.fp8_recipe]
    config = Float8LinearConfig.from_recipe_name(recipe)
    if m.fp8_format == "e4m3" and recipe == "tensorwise":
        config = Float8LinearConfig(cast_config_grad_output=CastConfig(target_dtype=torch.float8_e4m3fn),
                                    enable_fsdp_float8_all_gather=m.fp8_param_gather)
    elif m.fp8_param_gather:
        if recipe != "tensorwise":
            raise ConfigError(f"--fp8-param-gather works with tensorwise scaling (--fp8-recipe tensorwise or delayed), "
                              f"not with --fp8-recipe {m.fp8_recipe}")
        config = Float8LinearConfig(enable_fsdp_float8_all_gather=True)
    return config


def apply_float8(model: nn.Module, cfg, device_type: str, module_filter) -> int:
    """Swap the selected nn.Linear modules for torchao's Float8Linear; return how many."""
    m = cfg.model
    check_fp8_hardware(cfg, device_type)
    if m.fp8_recipe == "delayed" and (m.fp8_amax_history_len != 1 or m.fp8_amax_compute_algo != "most_recent"):
        log.warning("fp8_recipe delayed runs as torchao's dynamic tensorwise scaling: fp8_amax_history_len %s and "
                    "fp8_amax_compute_algo %s are not used", m.fp8_amax_history_len, m.fp8_amax_compute_algo)
    from torchao.float8 import convert_to_float8_training
    count = [0]

    def keep(mod, fqn):
        ok = (isinstance(mod, nn.Linear) and module_filter(fqn)
              and mod.in_features % 16 == 0 and mod.out_features % 16 == 0)
        count[0] += ok
        return ok

    convert_to_float8_training(model, module_filter_fn=keep, config=float8_config(m))
    return count[0]
