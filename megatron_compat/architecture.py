"""Megatron architecture flags -> a Hugging Face config of the matching family.

Family choice follows what the flags describe:
  learned absolute positions + LayerNorm + GeLU (+ biases)      -> gpt2 (tanh GeLU: Megatron's fused bias-GeLU
                                                                  kernel, unless --no-bias-gelu-fusion)
  rope + RMSNorm + SwiGLU                                        -> llama
      ... with q/k/v bias only (--add-qkv-bias)                  -> qwen2
      ... with --qk-layernorm                                    -> qwen3
      ... with experts (+ qk-layernorm)                          -> qwen3_moe
      ... with experts (no qk-layernorm)                         -> mixtral
Anything else is refused with the combination named. Unset flags take Megatron's
defaults (LayerNorm, learned positions, biases on, tied embeddings, dropout 0.1).
"""
from typing import Any, Dict, List, Optional, Tuple

from fsdp2_core.config.architecture_rules import MAX_LAYERS
from fsdp2_core.config.vocab import padded_vocab_size

ARCH_FLAGS_REQUIRED = ("--num-layers", "--hidden-size", "--num-attention-heads")

# Keys of the built config -> the flag that set them (the first given of a tuple): the architecture's rules
# (fsdp2_core.config.architecture_rules, one place for flags and YAML alike) report keys; the translation
# names the flag.
ARCHITECTURE_KEY_FLAGS = {
    "num_hidden_layers": "--num-layers", "n_layer": "--num-layers", "hidden_size": "--hidden-size",
    "n_embd": "--hidden-size", "num_attention_heads": "--num-attention-heads", "n_head": "--num-attention-heads",
    "num_key_value_heads": ("--num-query-groups", "--num-key-value-heads"), "head_dim": "--kv-channels",
    "intermediate_size": "--ffn-hidden-size", "n_inner": "--ffn-hidden-size",
    "max_position_embeddings": ("--max-position-embeddings", "--seq-length"),
    "n_positions": ("--max-position-embeddings", "--seq-length"), "rms_norm_eps": "--norm-epsilon",
    "layer_norm_epsilon": "--norm-epsilon",
    "rope_parameters.rope_theta": "--rotary-base", "partial_rotary_factor": "--rotary-percent",
    "vocab_size": ("--padded-vocab-size", "--vocab-size"), "num_local_experts": "--num-experts",
    "num_experts_per_tok": "--moe-router-topk",
    "moe_intermediate_size": "--moe-ffn-hidden-size", "attention_dropout": "--attention-dropout",
    "attn_pdrop": "--attention-dropout", "resid_pdrop": "--hidden-dropout", "embd_pdrop": "--hidden-dropout",
    "initializer_range": "--init-method-std", "router_aux_loss_coef": "--moe-aux-loss-coeff",
}


# The engine's own forward (model.model_id) for the families built here that need it: MoE layers route and
# dispatch tokens through it, which expert parallelism plugs into (fsdp2_core.models.registry.FAMILIES).
ENGINE_MODEL_ID = {"qwen3_moe": "qwen3_moe", "mixtral": "qwen3_moe"}


class ArchitectureError(ValueError):
    pass


def wants_architecture(given: Dict[str, Any]) -> bool:
    return any(flag in given for flag in ARCH_FLAGS_REQUIRED)


def build_architecture(given: Dict[str, Any], seq_length: Optional[int],
                       tp_size: int) -> Tuple[Dict[str, Any], List[str]]:
    """Return (HF config dict, notes). Raise ArchitectureError naming the flags when it cannot be honoured."""
    missing = [f for f in ARCH_FLAGS_REQUIRED if f not in given]
    if missing:
        raise ArchitectureError(f"the architecture needs {', '.join(missing)} as well")
    a = _read_flags(given, seq_length)
    notes: List[str] = []
    family = _choose_family(a)
    if family == "gpt2":
        config = _gpt2(a)
    else:
        config = _rope_family(a, family, notes)
    vocab = _vocab(given, tp_size)
    if vocab is not None:
        config["vocab_size"] = vocab
    else:
        notes.append("vocabulary size comes from the tokenizer at run time, padded as Megatron pads it "
                     "(multiple of make_vocab_size_divisible_by × tp = "
                     f"{given.get('--make-vocab-size-divisible-by', 128)} × {tp_size})")
    return config, notes


def _read_flags(g, seq_length):
    hidden = g["--hidden-size"]
    heads = g["--num-attention-heads"]
    swiglu = bool(g.get("--swiglu"))
    ffn = g.get("--ffn-hidden-size")
    if ffn is None:  # Megatron's default FFN width
        ffn = int((4 * hidden * 2 / 3) / 64) * 64 if swiglu else 4 * hidden
        if swiglu and ffn < 1 <= hidden:
            raise ArchitectureError(f"--hidden-size {hidden} with --swiglu: Megatron's default FFN width, "
                                    f"int(4 × {hidden} × 2/3 / 64) × 64, is {ffn}; give --ffn-hidden-size")
    positions = _positions(g)
    rope = positions == "rope" or bool(g.get("--use-rotary-position-embeddings"))
    if positions not in ("rope", "learned_absolute"):
        raise ArchitectureError(f"--position-embedding-type {g['--position-embedding-type']} is not supported; use "
                                "rope or learned_absolute")
    if g.get("--num-experts") is not None and g["--num-experts"] < 1:
        raise ArchitectureError(f"--num-experts {g['--num-experts']}: give at least 1 expert, or drop the flag for a "
                                "dense model")
    layers = g["--num-layers"]
    real = real_layers(g) if 1 <= layers <= MAX_LAYERS else []  # other counts are refused by the rules
    # Values are taken as given (0 is not "unset"): nonsense reaches the architecture's rules, which name it.
    return {
        "layers": len(real) if real else layers, "hidden": hidden, "heads": heads, "ffn": ffn, "swiglu": swiglu,
        "rope": rope, "kv_heads": _kv_heads(g, heads),
        "head_dim": g["--kv-channels"] if "--kv-channels" in g else _whole_head_size(hidden, heads),
        "max_pos": g["--max-position-embeddings"] if "--max-position-embeddings" in g else seq_length,
        "rms": _normalization(g) == "rmsnorm" or bool(g.get("--RMSNorm")),
        "eps": g.get("--norm-epsilon", 1e-5),
        "tied": not g.get("--untie-embeddings-and-output-weights"),
        "bias": not g.get("--disable-bias-linear"), "qkv_bias": bool(g.get("--add-qkv-bias")),
        "qk_norm": bool(g.get("--qk-layernorm")),
        "experts": g.get("--num-experts"), "topk": g.get("--moe-router-topk", 2),
        "moe_ffn": g.get("--moe-ffn-hidden-size") or g.get("--moe-intermediate-size"),
        "aux": _aux_coeff(g), "norm_topk": bool(g.get("--norm-topk-prob")),
        "dense_layers": _renumbered(_dense_layers(g, g["--num-layers"]), real),
        # Megatron's fused bias-GeLU kernel (on unless --no-bias-gelu-fusion; biases needed) is the tanh approximation
        "tanh_gelu": not g.get("--disable-bias-linear") and not g.get("--no-bias-gelu-fusion"),
        "std": g.get("--init-method-std", 0.02),
        "attn_drop": g.get("--attention-dropout", 0.1), "hidden_drop": g.get("--hidden-dropout", 0.1),
        "hidden_drop_given": "--hidden-dropout" in g,
        "rope_base": g.get("--rotary-base", 10000), "rope_pct": g.get("--rotary-percent", 1.0),
    }


def _whole_head_size(hidden, heads):
    """Megatron's default kv_channels, hidden / heads; None where that is no whole number (the rules refuse it)."""
    return hidden // heads if heads > 0 and hidden % heads == 0 else None


# Forks' spellings: bigscience Megatron-DeepSpeed (rotary, absolute, alibi), Pai-Megatron-Patch's older one (rotary)
_POSITION_SPELLINGS = {"rotary": "rope", "absolute": "learned_absolute"}


def _positions(g) -> str:
    """--position-embedding-type as Megatron-LM spells it; ALiBi (BLOOM, Baichuan-13B) is in no family here."""
    value = str(g.get("--position-embedding-type", "learned_absolute"))
    if value == "alibi":
        raise ArchitectureError("--position-embedding-type alibi: ALiBi attention biases (BLOOM, Baichuan-13B) are in "
                                "no supported family, which use rope or learned absolute positions")
    return _POSITION_SPELLINGS.get(value, value)


def _normalization(g) -> str:
    """--normalization LayerNorm | RMSNorm (Megatron-LM) or layernorm | rmsnorm (Megatron-DeepSpeed), lower-cased."""
    value = str(g.get("--normalization", "LayerNorm")).lower()
    if value not in ("layernorm", "rmsnorm"):
        raise ArchitectureError(f"--normalization {g['--normalization']}: expects LayerNorm or RMSNorm")
    return value


def _kv_heads(g, heads):
    """Key/value heads: --group-query-attention --num-query-groups N, Megatron-DeepSpeed's --num-key-value-heads N, or
    bigcode's --attention-head-type multiquery (one)."""
    kind = g.get("--attention-head-type")
    if kind not in (None, "multihead", "multiquery"):
        raise ArchitectureError(f"--attention-head-type {kind}: expects multihead or multiquery")
    if kind == "multiquery":
        return 1
    if g.get("--num-key-value-heads") is not None:
        groups = g["--num-key-value-heads"]
        if g.get("--group-query-attention") and g.get("--num-query-groups", groups) != groups:
            raise ArchitectureError(f"--num-key-value-heads {groups} and --num-query-groups {g['--num-query-groups']} "
                                    "disagree; keep one")
        return groups
    return g.get("--num-query-groups", 1) if g.get("--group-query-attention") else heads


def noop_layers(g) -> List[int]:
    """--noop-layers "94,95": MindSpeed-LLM's identity layers (0-based indices among --num-layers), which only even
    out pipeline stages; the model computes the same without them."""
    text = g.get("--noop-layers")
    if text in (None, ""):
        return []
    layers = g["--num-layers"]
    try:
        indices = [int(x) for x in str(text).replace(" ", ",").split(",") if x.strip()]
    except ValueError:
        raise ArchitectureError(f"--noop-layers {text}: expects comma-separated layer indices, e.g. 94,95") from None
    bad = [i for i in indices if not 0 <= i < layers]
    if bad or len(set(indices)) != len(indices):
        raise ArchitectureError(f"--noop-layers {text}: indices must be distinct and within 0..{layers - 1} "
                                f"(--num-layers {layers})")
    if len(indices) >= layers:
        raise ArchitectureError(f"--noop-layers {text}: every one of the {layers} layers would be an identity")
    return sorted(indices)


def real_layers(g) -> List[int]:
    """Indices (among --num-layers) of the layers that compute something: all but the --noop-layers."""
    noop = set(noop_layers(g))
    return [i for i in range(g["--num-layers"]) if i not in noop]


def _renumbered(layers, real):
    """Layer indices among --num-layers -> indices among the real layers (noop layers removed)."""
    position = {old: new for new, old in enumerate(real)}
    return [position[i] for i in layers if i in position]


def _dense_layers(g, layers):
    """Layers without experts: the first --first-k-dense-replace, and those --moe-layer-freq N skips (i % N != 0)."""
    first_k = int(g.get("--first-k-dense-replace") or 0)
    freq_text = str(g.get("--moe-layer-freq", 1))
    try:
        freq = int(freq_text)
    except ValueError:
        raise ArchitectureError(f"--moe-layer-freq {freq_text}: only an integer frequency is supported") from None
    layers = min(layers, MAX_LAYERS + 1)  # more is refused by the architecture's rules; never list them all
    dense = set(range(min(max(first_k, 0), layers)))
    if freq > 1:  # MindSpeed scripts also write -1 or 0 for "every layer"
        dense |= {i for i in range(layers) if i % freq}
    return sorted(dense)


def _aux_coeff(g):
    coeff = g.get("--moe-aux-loss-coeff", 0.0)
    coeff = coeff[0] if isinstance(coeff, list) else coeff
    balancing = g.get("--moe-router-load-balancing-type", "aux_loss")
    balancing = balancing[0] if isinstance(balancing, list) else balancing
    if balancing == "none":
        return 0.0
    if balancing not in ("aux_loss", "seq_aux_loss", "global_aux_loss"):
        raise ArchitectureError(f"--moe-router-load-balancing-type {balancing} is not supported; use aux_loss or none")
    return coeff


def _choose_family(a) -> str:
    if not a["rope"]:
        if a["rms"] or a["swiglu"] or not a["bias"] or a["experts"] or a["qk_norm"] or a["kv_heads"] != a["heads"]:
            raise ArchitectureError(
                "learned absolute positions map to the GPT-2 family, which needs LayerNorm, GeLU, biases, no experts, "
                "no qk-layernorm and no grouped-query attention; for a Llama-style model add "
                "--position-embedding-type rope --normalization RMSNorm --swiglu")
        return "gpt2"
    if not a["rms"] or not a["swiglu"]:
        raise ArchitectureError(
            "rope models map to the Llama/Qwen families, which need --normalization RMSNorm and --swiglu; "
            "a rope model with LayerNorm or GeLU has no Hugging Face family here")
    if a["experts"]:
        return "qwen3_moe" if a["qk_norm"] else "mixtral"
    if a["qk_norm"]:
        return "qwen3"
    if a["qkv_bias"] and not a["bias"]:
        return "qwen2"
    return "llama"


def _gpt2(a):
    if a["head_dim"] is not None and a["head_dim"] * a["heads"] != a["hidden"]:
        raise ArchitectureError("GPT-2 needs --kv-channels × --num-attention-heads = --hidden-size")
    if not a["tied"]:
        raise ArchitectureError("the GPT-2 family always ties embeddings; drop --untie-embeddings-and-output-weights")
    return {
        "model_type": "gpt2", "n_layer": a["layers"], "n_embd": a["hidden"], "n_head": a["heads"], "n_inner": a["ffn"],
        "n_positions": a["max_pos"], "activation_function": "gelu_pytorch_tanh" if a["tanh_gelu"] else "gelu",
        "layer_norm_epsilon": a["eps"],
        "resid_pdrop": a["hidden_drop"], "embd_pdrop": a["hidden_drop"], "attn_pdrop": a["attn_drop"],
        "initializer_range": a["std"], "tie_word_embeddings": True,
    }


def _rope_family(a, family, notes):
    if a["hidden_drop"]:
        if a["hidden_drop_given"]:
            raise ArchitectureError(f"--hidden-dropout {a['hidden_drop']}: the {family} family has no hidden dropout; "
                                    "set --hidden-dropout 0.0")
        notes.append(f"Megatron's default hidden dropout 0.1 is not available in the {family} family: trained without "
                     "it (add --hidden-dropout 0.0 to make this explicit)")
    rope = {"rope_type": "default", "rope_theta": float(a["rope_base"])}
    if a["rope_pct"] != 1.0:
        rope["partial_rotary_factor"] = float(a["rope_pct"])
    config = {
        "model_type": family, "num_hidden_layers": a["layers"], "hidden_size": a["hidden"],
        "intermediate_size": a["ffn"],
        "num_attention_heads": a["heads"], "num_key_value_heads": a["kv_heads"], "head_dim": a["head_dim"],
        "max_position_embeddings": a["max_pos"], "hidden_act": "silu", "rms_norm_eps": a["eps"],
        "initializer_range": a["std"], "tie_word_embeddings": a["tied"], "attention_dropout": a["attn_drop"],
        "rope_parameters": rope,
    }
    if family in ("llama",):
        config["attention_bias"] = a["bias"]
        config["mlp_bias"] = a["bias"]
    elif a["bias"]:
        raise ArchitectureError(f"the {family} family has no linear biases; add --disable-bias-linear")
    if family in ("qwen3", "qwen3_moe"):
        config["attention_bias"] = a["qkv_bias"]
    if family in ("qwen3_moe", "mixtral"):
        config.update(_moe(a, family))
    return config


def _moe(a, family):
    moe = {"num_local_experts": a["experts"], "num_experts_per_tok": a["topk"], "router_aux_loss_coef": a["aux"],
           "output_router_logits": a["aux"] > 0}
    if family == "qwen3_moe":
        moe.update({"moe_intermediate_size": a["moe_ffn"] or a["ffn"], "norm_topk_prob": a["norm_topk"],
                    "decoder_sparse_step": 1, "mlp_only_layers": a["dense_layers"]})
    else:
        if a["dense_layers"]:
            raise ArchitectureError("Mixtral has experts in every layer; dense layers (--first-k-dense-replace / "
                                    "--moe-layer-freq) need the Qwen3-MoE family (add --qk-layernorm)")
        moe["intermediate_size"] = a["moe_ffn"] or a["ffn"]  # Mixtral's experts use intermediate_size
    return moe


def _vocab(g, tp_size):
    """Megatron pads the tokenizer's vocabulary; only NullTokenizer's is known before run time (--vocab-size + eod)."""
    if "--padded-vocab-size" in g:  # below 1 is refused by the model.padded_vocab_size rule
        return g["--padded-vocab-size"] if g["--padded-vocab-size"] >= 1 else None
    multiple = g.get("--make-vocab-size-divisible-by", 128)
    if g.get("--tokenizer-type") == "NullTokenizer" and "--vocab-size" in g and multiple >= 1 and tp_size >= 1:
        vocab = g["--vocab-size"]  # below 1 is refused by the model.vocab_size rule
        return padded_vocab_size(vocab + 1, multiple, tp_size) if vocab >= 1 else None
    return None


# Fields compared against a Hugging Face config.json given by --load.
COMPARED_FIELDS = ("model_type", "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                   "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "rms_norm_eps",
                   "num_local_experts", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
                   "n_layer", "n_embd", "n_head")


def compare_with_checkpoint(arch: Dict[str, Any], hf_config: Dict[str, Any]) -> List[str]:
    """Names and values of the fields where the flags and the checkpoint's config.json disagree."""
    diffs = []
    for name in COMPARED_FIELDS:
        if name in arch and name in hf_config and hf_config[name] is not None and arch[name] != hf_config[name]:
            diffs.append(f"{name}: flags say {arch[name]}, config.json says {hf_config[name]}")
    theta = (arch.get("rope_parameters") or {}).get("rope_theta")
    ck_theta = (hf_config.get("rope_parameters") or {}).get("rope_theta", hf_config.get("rope_theta"))
    if theta is not None and ck_theta is not None and float(theta) != float(ck_theta):
        diffs.append(f"rope_theta: flags say {theta}, config.json says {ck_theta}")
    return diffs
