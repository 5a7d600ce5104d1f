"""LoRA through peft, composed with FSDP2: adapters injected in place, only they train, exported in PEFT format.

    apply_lora(model, cfg)       after the model is built (eager), before parallelize: peft's LoRA layers
                                 replace the target Linear modules in place (module paths unchanged, so the
                                 FSDP / recompute patterns still match); every other parameter is frozen.
                                 fully_shard then shards base weights and adapters alike; the optimizer and
                                 the gradient norm only see the adapters (requires_grad).
    export_lora(model, ...)      collective, at the end of training: <output_dir>/hf_adapter/ holds the adapter
                                 (adapter_config.json + adapter_model.safetensors, loadable with
                                 peft.PeftModel.from_pretrained(base, dir)); with lora_merge_on_export,
                                 <output_dir>/hf_model/ holds the base weights with the adapters merged
                                 (W + alpha/r · B·A), loadable with AutoModelForCausalLM.from_pretrained.

Target names: Megatron's (what MindSpeed-LLM's --lora-target-modules takes) map to the Hugging Face
modules they cover; Hugging Face module names are taken as they are.
"""
import json
import logging
import os
from typing import Dict, List, Optional, Tuple

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
        raise ConfigError("model.lora_r > 0 needs lora_target_modules (--lora-target-modules linear_qkv linear_proj ...)")
    hf_target_modules(m.lora_target_modules)
    if cfg.parallel.tp_size > 1:
        raise ConfigError(f"LoRA with tensor parallelism (tp_size {cfg.parallel.tp_size}) is not supported; the adapters "
                          "are small: use tp_size 1 and let FSDP shard the base weights")
    if m.init_model_with_meta_device:
        raise ConfigError("LoRA with init_model_with_meta_device is not supported yet: set init_model_with_meta_device false")
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


# ------------------------------------------------------------------ export

def _full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach()


def _lora_layers(model: nn.Module):
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


def merged_state(model: nn.Module) -> List[Tuple[str, Tuple[int, ...], torch.dtype, object]]:
    """(Hugging Face name, shape, dtype, fetch) of the model as save_pretrained writes it, adapters merged."""
    from fsdp2_core.checkpoint.hf_export import export_tensors
    layers = {path: layer for path, layer in _lora_layers(model)}
    entries = []
    for name, t in export_tensors(model):
        if is_adapter(name):
            continue
        path, _, leaf = name.rpartition(".")
        base_path = path[:-len(".base_layer")] if path.endswith(".base_layer") else None
        if base_path is not None and base_path in layers and leaf == "weight":
            layer = layers[base_path]

            def fetch(t=t, layer=layer):
                w = _full(t).float()
                a = _full(layer.lora_A[ADAPTER_NAME].weight).float()
                b = _full(layer.lora_B[ADAPTER_NAME].weight).float()
                return (w + layer.scaling[ADAPTER_NAME] * (b @ a)).to(t.dtype)
            entries.append((base_path + "." + leaf, tuple(t.shape), t.dtype, fetch))
        else:
            hf_name = name.replace(".base_layer.", ".")
            entries.append((hf_name, tuple(t.shape), t.dtype, lambda t=t: _full(t)))
    return entries


def adapter_config(cfg, model) -> dict:
    """adapter_config.json as peft writes it, pointing at the base model (--load) when there is one."""
    config = model.lora_config
    d = config.to_dict()
    d["target_modules"] = sorted(config.target_modules)
    d["base_model_name_or_path"] = (os.path.abspath(cfg.model.model_name_or_path)
                                    if cfg.model.model_name_or_path else None)
    d["inference_mode"] = True
    return json.loads(json.dumps(d, default=lambda o: sorted(o) if isinstance(o, set) else str(o)))


def export_lora(model: nn.Module, cfg, output_dir: str, tokenizer=None, group=None,
                max_shard_bytes: Optional[int] = None) -> Dict[str, str]:
    """Collective: write <output_dir>/hf_adapter/ (and <output_dir>/hf_model/ merged with lora_merge_on_export).

    Tensors are gathered one at a time on every rank; rank 0 writes. Returns {"adapter": dir[, "merged": dir]}."""
    import torch.distributed as dist

    from fsdp2_core.checkpoint import hf_export as hx
    rank = dist.get_rank() if dist.is_initialized() else 0
    max_bytes = max_shard_bytes or hx.DEFAULT_MAX_SHARD_BYTES
    written = {}

    def stream(out_dir, entries, side_files):
        tmp = out_dir.rstrip("/") + ".partial"
        error = None
        if rank == 0:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp)
        error = hx._stream(tmp, [e[:3] for e in entries], ((e[0], e[3]) for e in entries), rank == 0,
                           max_bytes if side_files != "adapter" else 1 << 62)
        if rank == 0 and error is None:
            try:
                if side_files == "adapter":
                    os.replace(os.path.join(tmp, hx.SINGLE), os.path.join(tmp, "adapter_model.safetensors"))
                    with open(os.path.join(tmp, "adapter_config.json"), "w", encoding="utf-8") as fh:
                        json.dump(adapter_config(cfg, model), fh, indent=2)
                    tok = hx.hf_tokenizer(tokenizer)
                    if tok is not None:
                        tok.save_pretrained(tmp)
                else:
                    dtype = entries[0][2] if entries and entries[0][2].is_floating_point else None
                    config = hx.inference_config(model.config, hx.hf_class_name(model), dtype)
                    hx.write_side_files(tmp, config, getattr(model, "generation_config", None), tokenizer)
                hx._publish(tmp, out_dir)
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
        error = hx.shared_error(error, group)
        if error:
            from fsdp2_core.checkpoint.layout import CheckpointError
            raise CheckpointError(f"LoRA export to {out_dir} failed: {error}. The DCP checkpoints are intact")

    adapters = [(name, tuple(t.shape), t.dtype, lambda t=t: _full(t)) for name, t in adapter_state(model)]
    written["adapter"] = os.path.join(output_dir, ADAPTER_DIR)
    stream(written["adapter"], adapters, "adapter")
    if cfg.model.lora_merge_on_export:
        written["merged"] = os.path.join(output_dir, hx.HF_DIR)
        stream(written["merged"], merged_state(model), "model")
    return written
