"""LoRA through peft, composed with FSDP2: adapters injected in place, and only they train.

    apply_lora(model, cfg)       after the model is built (eager), before parallelize: peft's LoRA layers
                                 replace the target Linear modules in place (module paths unchanged, so the
                                 FSDP / recompute patterns still match); every other parameter is frozen.
                                 fully_shard then shards base weights and adapters alike; the optimizer and
                                 the gradient norm only see the adapters (requires_grad). Under tensor
                                 parallelism the adapters split with their base linear
                                 (fsdp2_core/parallel/lora_tp.py).
    adapter_state(model)         the adapter tensors under PEFT's names; the export beside the Hugging Face one
                                 (fsdp2_core.checkpoint.lora_export) writes them in PEFT format.

Target names: Megatron's (what MindSpeed-LLM's --lora-target-modules takes) map to the Hugging Face
modules they cover; Hugging Face module names are taken as they are.
"""
import logging
from typing import Dict, List, Tuple

import torch
import torch.nn as nn

from fsdp2_core.config import ConfigError

log = logging.getLogger(__name__)

MEGATRON_TARGETS: Dict[str, Tuple[str, ...]] = {
    "linear_qkv": ("q_proj", "k_proj", "v_proj"),
    "linear_proj": ("o_proj",),
    "linear_fc1": ("gate_proj", "up_proj"),
    "linear_fc2": ("down_proj",),
}
ADAPTER_DIR = "hf_adapter"
ADAPTER_NAME = "default"  # peft's adapter name inside the injected layers


def hf_target_modules(names: List[str]) -> List[str]:
    """Megatron module names → the Hugging Face module names they cover (others kept), in order, once each."""
    out: List[str] = []
    for name in names:
        if name in MEGATRON_TARGETS:
            targets = MEGATRON_TARGETS[name]
        elif name.startswith("linear_") or not name.replace("_", "").replace(".", "").isalnum():
            raise ConfigError(f"lora_target_modules: {name!r} is not a module this engine can adapt; Megatron names "
                              f"are {', '.join(MEGATRON_TARGETS)}, or give Hugging Face module names (q_proj, ...)")
        else:
            targets = (name,)
        out += [t for t in targets if t not in out]
    return out


def lora_enabled(cfg) -> bool:
    return cfg.model.lora_r > 0


def check_lora(cfg) -> None:
    m = cfg.model
    if m.lora_r < 0:
        raise ConfigError(f"model.lora_r must be >= 0 (0: no LoRA), got {m.lora_r}")
    if m.lora_r == 0:
        return
    if not m.lora_target_modules:
        raise ConfigError("model.lora_r > 0 needs lora_target_modules "
                          "(--lora-target-modules linear_qkv linear_proj ...)")
    hf_target_modules(m.lora_target_modules)
    if cfg.parallel.tp_size > 1 and m.lora_dropout > 0:
        raise ConfigError(f"model.lora_dropout {m.lora_dropout} with tensor parallelism (tp_size "
                          f"{cfg.parallel.tp_size}): each tensor-parallel rank would draw its own dropout masks on "
                          "the adapters' input, which those ranks must see alike; set lora_dropout 0 (MindSpeed-LLM's "
                          "default) or tp_size 1")
    if m.init_model_with_meta_device:
        raise ConfigError("LoRA with init_model_with_meta_device is not supported yet: set "
                          "init_model_with_meta_device false")
    if not 0.0 <= m.lora_dropout < 1.0:
        raise ConfigError(f"model.lora_dropout must be in [0, 1), got {m.lora_dropout}")


def apply_lora(model: nn.Module, cfg) -> nn.Module:
    """Inject LoRA adapters in place when lora_r > 0 (no-op otherwise); returns the model."""
    if not lora_enabled(cfg):
        return model
    check_lora(cfg)
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:  # a dependency, but say what is missing
        raise ConfigError(f"LoRA needs the peft package ({exc}); pip install peft") from None
    m = cfg.model
    targets = hf_target_modules(m.lora_target_modules)
    config = LoraConfig(r=m.lora_r, lora_alpha=m.lora_alpha, lora_dropout=m.lora_dropout, target_modules=targets,
                        bias="none", task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.training.seed)  # the same adapters on every rank, whatever ran before
        inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME)
    adapters = 0
    for name, p in model.named_parameters():
        p.requires_grad_(is_adapter(name))
        adapters += p.numel() if is_adapter(name) else 0
    if adapters == 0:
        raise ConfigError(f"lora_target_modules {m.lora_target_modules} matched no module of {type(model).__name__} "
                          f"(looked for {', '.join(targets)})")
    model.lora_config = config
    total = sum(p.numel() for p in model.parameters())
    log.info("LoRA r=%d alpha=%g on %s: %d trainable of %d parameters (%.2f%%)", m.lora_r, m.lora_alpha,
             ", ".join(targets), adapters, total, 100.0 * adapters / max(total, 1))
    return model


def is_adapter(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


def has_lora(model: nn.Module) -> bool:
    return getattr(model, "lora_config", None) is not None


def lora_layers(model: nn.Module):
    """(module path, layer) of every injected LoRA layer."""
    from peft.tuners.lora import LoraLayer
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, LoraLayer)]


def adapter_state(model: nn.Module) -> List[Tuple[str, torch.Tensor]]:
    """PEFT's saved names (base_model.model.<path>.lora_A.weight) → the local (maybe sharded) tensors."""
    out = []
    for name, p in model.named_parameters():
        if is_adapter(name):
            out.append(("base_model.model." + name.replace(f".{ADAPTER_NAME}.", "."), p))
    return out
