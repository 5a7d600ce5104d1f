"""LoRA export, beside the Hugging Face export: the adapter in PEFT format, and optionally the merged model.

    export_lora(model, ...)      collective, at the end of training: <output_dir>/hf_adapter/ holds the adapter
                                 (adapter_config.json + adapter_model.safetensors, loadable with
                                 peft.PeftModel.from_pretrained(base, dir)); with lora_merge_on_export,
                                 <output_dir>/hf_model/ holds the base weights with the adapters merged
                                 (W + alpha/r · B·A), loadable with AutoModelForCausalLM.from_pretrained.
"""
import json
import os
import shutil
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor

from fsdp2_core.models.lora import ADAPTER_DIR, ADAPTER_NAME, adapter_state, is_adapter, lora_layers

from . import hf_export as hx
from .hf_export import export_tensors
from .layout import CheckpointError


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach()


def merged_state(model: nn.Module) -> List[Tuple[str, Tuple[int, ...], torch.dtype, object]]:
    """(Hugging Face name, shape, dtype, fetch) of the model as save_pretrained writes it, adapters merged."""
    layers = {path: layer for path, layer in lora_layers(model)}
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
    rank = dist.get_rank() if dist.is_initialized() else 0
    max_bytes = max_shard_bytes or hx.DEFAULT_MAX_SHARD_BYTES
    written = {}

    def stream(out_dir, entries, side_files):
        tmp = out_dir.rstrip("/") + ".partial"
        error = None
        if rank == 0:
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
            raise CheckpointError(f"LoRA export to {out_dir} failed: {error}. The DCP checkpoints are intact")

    adapters = [(name, tuple(t.shape), t.dtype, lambda t=t: _full(t)) for name, t in adapter_state(model)]
    written["adapter"] = os.path.join(output_dir, ADAPTER_DIR)
    stream(written["adapter"], adapters, "adapter")
    if cfg.model.lora_merge_on_export:
        written["merged"] = os.path.join(output_dir, hx.HF_DIR)
        stream(written["merged"], merged_state(model), "model")
    return written
