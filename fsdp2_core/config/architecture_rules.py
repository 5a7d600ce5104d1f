"""Rules for a model architecture given as a Hugging Face config dict, checked before any model is built.

One place for these rules, whatever wrote the dict: a YAML's `model.architecture`, the dict
megatron_compat builds from --num-layers/--hidden-size/..., or a model directory's config.json
(checked by the engine when it reads it). Keys are read under both spellings the families use
(GPT-2 says n_embd, n_head, n_positions, layer_norm_epsilon). Each problem is keyed
`architecture.<key>`, so the flag translation can name the Megatron flag behind the key.
"""
import math
from typing import Any, Dict, List, Optional, Tuple

Problem = Tuple[Optional[str], str]
MAX_LAYERS = 100_000  # far beyond any trained model; guards lists built per layer (recompute, dense layers)

# What a rule reads -> the keys it may sit under, first match wins.
ALIASES = {
    "num_hidden_layers": ("num_hidden_layers", "n_layer"),
    "hidden_size": ("hidden_size", "n_embd"),
    "num_attention_heads": ("num_attention_heads", "n_head"),
    "num_key_value_heads": ("num_key_value_heads",),
    "head_dim": ("head_dim",),
    "intermediate_size": ("intermediate_size", "n_inner"),
    "vocab_size": ("vocab_size",),
    "max_position_embeddings": ("max_position_embeddings", "n_positions"),
    "num_experts": ("num_local_experts", "num_experts"),
    "num_experts_per_tok": ("num_experts_per_tok",),
    "moe_intermediate_size": ("moe_intermediate_size",),
    "norm_eps": ("rms_norm_eps", "layer_norm_epsilon", "layer_norm_eps"),
}


def _lookup(arch: Dict[str, Any], name: str) -> Tuple[Optional[str], Any]:
    for key in ALIASES[name]:
        if arch.get(key) is not None:
            return key, arch[key]
    return None, None


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def architecture_problems(arch: Dict[str, Any], cutoff_len: Optional[int] = None,
                          label: str = "model.architecture.") -> List[Problem]:
    """Every broken rule of `arch` (and of `cutoff_len` against its position table), as (key, text).

    `label` leads each key in the texts: where the dict came from."""
    problems: List[Problem] = []
    sizes = {}
    for name in ("num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                 "intermediate_size", "vocab_size", "max_position_embeddings", "num_experts", "num_experts_per_tok",
                 "moe_intermediate_size"):
        key, value = _lookup(arch, name)
        if key is None:
            continue
        if _is_positive_int(value):
            sizes[name] = (key, value)
        else:
            problems.append((f"architecture.{key}",
                             f"{label}{key} must be a whole number >= 1, got {value!r}"))
    layers = sizes.get("num_hidden_layers")
    if layers and layers[1] > MAX_LAYERS:
        problems.append((f"architecture.{layers[0]}", f"{label}{layers[0]} {layers[1]} is above "
                         f"{MAX_LAYERS:,}, beyond any model that trains; check the value"))
    problems += _shape_problems(sizes, label)
    problems += _float_problems(arch, label)
    max_pos = sizes.get("max_position_embeddings")
    if cutoff_len is not None and max_pos is not None and cutoff_len > max_pos[1]:
        key, value = max_pos
        problems.append((f"architecture.{key}",
                         f"data.cutoff_len {cutoff_len} is above {label}{key} {value}: the model has no "
                         f"positions beyond {value}; raise {key} (Megatron --max-position-embeddings) or lower "
                         "cutoff_len (Megatron --seq-length)"))
    return problems


def _shape_problems(sizes, label) -> List[Problem]:
    problems: List[Problem] = []
    hidden, heads = sizes.get("hidden_size"), sizes.get("num_attention_heads")
    kv, experts, topk = sizes.get("num_key_value_heads"), sizes.get("num_experts"), sizes.get("num_experts_per_tok")
    if hidden and heads and "head_dim" not in sizes and hidden[1] % heads[1]:
        problems.append((f"architecture.{heads[0]}",
                         f"{label}{hidden[0]} {hidden[1]} is not divisible by {heads[0]} {heads[1]}: "
                         "each head needs a whole share of the hidden size; choose sizes that divide, or give "
                         "head_dim (Megatron --kv-channels)"))
    if heads and kv and heads[1] % kv[1]:
        problems.append((f"architecture.{kv[0]}",
                         f"{label}{heads[0]} {heads[1]} is not divisible by {kv[0]} {kv[1]}: "
                         "grouped-query attention shares each key/value head among a whole number of query heads; "
                         "choose a number of key/value heads (Megatron --num-query-groups) that divides the heads"))
    if experts and topk and topk[1] > experts[1]:
        problems.append((f"architecture.{topk[0]}",
                         f"{label}{topk[0]} {topk[1]} is above the {experts[1]} experts "
                         f"({experts[0]}); route each token to at most that many"))
    return problems


def _float_problems(arch, label) -> List[Problem]:
    problems: List[Problem] = []
    key, eps = _lookup(arch, "norm_eps")
    if key is not None and not _is_positive_number(eps):
        problems.append((f"architecture.{key}", f"{label}{key} must be a positive number, got {eps!r} "
                         "(the normalisation divides by sqrt(variance + eps))"))
    rope = arch.get("rope_parameters") or arch.get("rope_scaling") or {}
    thetas = (("rope_theta", arch.get("rope_theta")), ("rope_parameters.rope_theta", rope.get("rope_theta")))
    for where, theta in thetas:
        if theta is not None and not _is_positive_number(theta):
            problems.append((f"architecture.{where}", f"{label}{where} must be a positive number, "
                             f"got {theta!r} (the rotary base; Megatron --rotary-base, 10000 by default)"))
    for key in ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout"):
        p = arch.get(key)
        if p is not None and not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p < 1):
            problems.append((f"architecture.{key}", f"{label}{key} must be a probability in [0, 1), "
                             f"got {p!r}"))
    for key in ("initializer_range", "router_aux_loss_coef"):
        v = arch.get(key)
        if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                  and v >= 0):
            problems.append((f"architecture.{key}", f"{label}{key} must be a finite number >= 0, "
                             f"got {v!r}"))
    factor = rope.get("partial_rotary_factor", arch.get("partial_rotary_factor"))
    if factor is not None and not (_is_positive_number(factor) and factor <= 1):
        problems.append(("architecture.partial_rotary_factor", f"{label}partial_rotary_factor must be in "
                         f"(0, 1], got {factor!r} (Megatron --rotary-percent)"))
    return problems
