"""Where a family keeps its decoder layers, for the module patterns the flags produce.

The recompute flags name Llama-style modules (`model.layers.{*}`, its `self_attn`, `mlp` and norms) and the engine's
FSDP units default to them. The families whose transformers modules are named otherwise get the same patterns in
their own names, so --recompute-granularity full recomputes their layers and FSDP shards them layer by layer.
"""
from typing import Dict, List, Optional

# model_type -> (layers, embedding, {Llama-style child: this family's child})
_FAMILIES = {
    "gpt2": ("transformer.h", "transformer.wte",
             {"self_attn": "attn", "input_layernorm": "ln_1", "post_attention_layernorm": "ln_2"}),
    "gpt_bigcode": ("transformer.h", "transformer.wte",
                    {"self_attn": "attn", "input_layernorm": "ln_1", "post_attention_layernorm": "ln_2"}),
    "bloom": ("transformer.h", "transformer.word_embeddings", {"self_attn": "self_attention"}),
    "gpt_neox": ("gpt_neox.layers", "gpt_neox.embed_in", {"self_attn": "attention"}),
    "opt": ("model.decoder.layers", "model.decoder.embed_tokens",
            {"input_layernorm": "self_attn_layer_norm", "post_attention_layernorm": "final_layer_norm"}),
}
LLAMA_LAYERS = "model.layers"


def family_pattern(model_type: str, pattern: str) -> str:
    """A Llama-style module pattern in this family's names (unchanged for Llama-named families)."""
    if model_type not in _FAMILIES or not pattern.startswith(LLAMA_LAYERS + "."):
        return pattern
    layers, _, children = _FAMILIES[model_type]
    index, _, child = pattern[len(LLAMA_LAYERS) + 1:].partition(".")
    return ".".join([layers, index] + ([children.get(child, child)] if child else []))


def llama_pattern(model_type: str, pattern: str) -> str:
    """Inverse of family_pattern."""
    if model_type not in _FAMILIES:
        return pattern
    layers, _, children = _FAMILIES[model_type]
    if not pattern.startswith(layers + "."):
        return pattern
    index, _, child = pattern[len(layers) + 1:].partition(".")
    back = {theirs: ours for ours, theirs in children.items()}
    return ".".join([LLAMA_LAYERS, index] + ([back.get(child, child)] if child else []))


def fsdp_units(model_type: str) -> Optional[List[str]]:
    """The engine's default FSDP units (layers, embedding, output head) in this family's names, or None."""
    if model_type not in _FAMILIES:
        return None
    layers, embedding, _ = _FAMILIES[model_type]
    return [f"{layers}.{{*}}", embedding, "lm_head"]


def renamed(model_type: str, values: Dict) -> Dict:
    """The recompute and FSDP patterns of the translated values, in the family's module names."""
    out = {}
    if values.get("recompute_modules"):
        out["recompute_modules"] = [family_pattern(model_type, p) for p in values["recompute_modules"]]
    units = fsdp_units(model_type)
    if units:
        out["fsdp_modules"] = units
    return out
