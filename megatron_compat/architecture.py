"""Megatron architecture flags -> a Hugging Face config of the matching family.

Family choice follows what the flags describe:
  learned absolute positions + LayerNorm + GeLU (+ biases)      -> gpt2 (tanh GeLU: Megatron's fused bias-GeLU
                                                                  kernel, unless --no-bias-gelu-fusion)
  rope + RMSNorm + SwiGLU                                        -> llama
      ... with a sliding window (--sliding-window/--window-size) -> mistral
      ... with q/k/v bias only (--add-qkv-bias)                  -> qwen2
      ... with --qk-layernorm                                    -> qwen3
      ... with experts: by the router (arch/moe.py)              -> qwen3_moe, mixtral, qwen2_moe, glm4_moe
      ... with Multi-Latent Attention (arch/attention.py)        -> deepseek_v3
      ... with MindSpeed's sparse-attention indexer (arch/dsa.py) -> glm_moe_dsa
RoPE scaling (llama3, yarn) goes into rope_parameters of any rope family (arch/rope.py). Anything else is refused
with the combination named. Unset flags take Megatron's defaults (LayerNorm, learned positions, biases on, tied
embeddings, dropout 0.1).

Besides the Hugging Face config, `engine_fields` gives what the engine's own config holds for these models: the
router losses and expert bias the Hugging Face config has no field for, and multi-token prediction; ENGINE_MODEL_ID
names the model_id whose forward runs the MoE families. MindSpeed-LLM's --noop-layers (identity layers that only
even out pipeline stages) are left out of the model.
"""
from typing import Any, Dict, List, Optional, Tuple

from fsdp2_core.config.architecture_rules import MAX_LAYERS
from fsdp2_core.config.vocab import padded_vocab_size

from .arch import ArchitectureError
from .arch.attention import mla_fields, sliding_window, wants_mla
from .arch.dsa import DSA_FAMILY, dsa_engine_fields, dsa_fields, wants_dsa
from .arch.moe import (
    ENGINE_MODEL_ID,
    MOE_FAMILIES,
    SIGMOID_FAMILIES,
    moe_family,
    moe_fields,
    read_routing,
    training_fields,
)
from .arch.rope import rope_scaling

__all__ = ["ENGINE_MODEL_ID", "ArchitectureError", "build_architecture", "compare_with_checkpoint", "engine_fields",
           "wants_architecture"]

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


def engine_fields(given: Dict[str, Any]) -> Dict[str, Any]:
    """The engine's own settings for the model: router losses, expert bias and multi-token prediction."""
    out = training_fields(given)
    out.update(dsa_engine_fields(given))
    mtp = given.get("--mtp-num-layers") or given.get("--num-nextn-predict-layers")
    if mtp:
        out["mtp_num_layers"] = int(mtp)
        out["mtp_loss_scaling_factor"] = float(given.get("--mtp-loss-scaling-factor", 0.1))
    return out


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
                                "rope or learned_absolute (long-context scaling: --rope-scaling-type llama3|yarn or "
                                "--use-rope-scaling)")
    if g.get("--num-experts") is not None and g["--num-experts"] < 1:
        raise ArchitectureError(f"--num-experts {g['--num-experts']}: give at least 1 expert, or drop the flag for a "
                                "dense model")
    mla = wants_mla(g)
    mla_config = mla_fields(g) if mla else None
    layers = g["--num-layers"]
    sane = 1 <= layers <= MAX_LAYERS  # other counts are refused by the rules; never list their layers
    real = real_layers(g) if sane else []
    routing = read_routing(g, layers, ffn) if sane else None
    if routing is not None:
        routing.dense_layers = _renumbered(routing.dense_layers, real)
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
        "routing": routing,
        "mla": mla_config,
        "dsa": dsa_fields(g, mla_config) if wants_dsa(g) else None,
        "window": sliding_window(g),
        "rope_scaling": rope_scaling(g, mla) if rope else None,
        "mtp": int(g.get("--mtp-num-layers") or g.get("--num-nextn-predict-layers") or 0),
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


def _choose_family(a) -> str:
    if not a["rope"]:
        if a["rms"] or a["swiglu"] or not a["bias"] or a["routing"] or a["qk_norm"] or a["kv_heads"] != a["heads"] \
                or a["mla"] or a["window"]:
            raise ArchitectureError(
                "learned absolute positions map to the GPT-2 family, which needs LayerNorm, GeLU, biases, no experts, "
                "no qk-layernorm, no grouped-query or latent attention and no sliding window; for a Llama-style model "
                "add --position-embedding-type rope --normalization RMSNorm --swiglu")
        return "gpt2"
    if not a["rms"] or not a["swiglu"]:
        raise ArchitectureError(
            "rope models map to the Llama/Qwen families, which need --normalization RMSNorm and --swiglu; "
            "a rope model with LayerNorm or GeLU has no Hugging Face family here")
    if a["routing"]:
        family = moe_family(a["routing"], a["mla"] is not None, a["qk_norm"])
    elif a["mla"]:
        family = "deepseek_v3"
    elif a["qk_norm"]:
        family = "qwen3"
    elif a["qkv_bias"] and not a["bias"]:
        family = "qwen2"
    else:
        family = "mistral" if a["window"] else "llama"
    if a["dsa"]:
        family = DSA_FAMILY  # DeepSeek-V3's MLA and MoE, with MindSpeed's indexer (arch/dsa.py)
    if a["window"] and family != "mistral":
        raise ArchitectureError(f"a sliding window (--sliding-window/--window-size) with the {family} family: only "
                                "the Mistral family (a Llama-style model without q/k/v biases, norms or experts) has "
                                "one here")
    return family


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
    config = {
        "model_type": family, "num_hidden_layers": a["layers"], "hidden_size": a["hidden"],
        "intermediate_size": a["ffn"],
        "num_attention_heads": a["heads"], "num_key_value_heads": a["kv_heads"], "head_dim": a["head_dim"],
        "max_position_embeddings": a["max_pos"], "hidden_act": "silu", "rms_norm_eps": a["eps"],
        "initializer_range": a["std"], "tie_word_embeddings": a["tied"], "attention_dropout": a["attn_drop"],
        "rope_parameters": _rope_parameters(a, family),
    }
    config.update(_biases(a, family))
    if family == "qwen3":
        config["attention_bias"] = a["qkv_bias"]
    if family == "mistral":
        config["sliding_window"] = a["window"]
    if family in MOE_FAMILIES and a["routing"] is not None:  # DeepSeek-V3 also serves dense MLA models
        config.update(moe_fields(a["routing"], family))
    if family in SIGMOID_FAMILIES:
        config.update(_sigmoid_family_fields(a, family))
    if family in ("deepseek_v3", DSA_FAMILY):
        config.update(a["mla"])
        config.pop("head_dim")  # DeepSeek-V3 derives it from qk_rope_head_dim
        config["num_key_value_heads"] = a["heads"]
        if a["eps"] != 1e-6:
            notes.append(f"--norm-epsilon {a['eps']}: transformers' DeepSeek-V3 attention normalises the q and kv "
                         "latents with eps 1e-6 whatever rms_norm_eps is (Megatron's MLA uses --norm-epsilon there "
                         "too); give --norm-epsilon 1e-6, DeepSeek-V3's own value, for the same model")
    if family == DSA_FAMILY:
        config.update(a["dsa"])
        config.pop("rope_interleave")  # GLM-MoE-DSA's MLA always rotates interleaved pairs
    return config


def _rope_parameters(a, family):
    rope = {"rope_type": "default", "rope_theta": float(a["rope_base"])}
    if a["rope_pct"] != 1.0 or family == "glm4_moe":  # GLM-4.5's config would otherwise rotate half
        rope["partial_rotary_factor"] = float(a["rope_pct"])
    if a["rope_scaling"]:
        rope.update(a["rope_scaling"])
    return rope


def _biases(a, family):
    """Linear biases: Llama's on every projection or none; GLM-4.5 and Qwen2 on q/k/v only; none elsewhere."""
    if family == "llama":
        return {"attention_bias": a["bias"], "mlp_bias": a["bias"]}
    if a["bias"]:
        raise ArchitectureError(f"the {family} family has no linear biases; add --disable-bias-linear")
    if family == "glm4_moe":
        return {"attention_bias": a["qkv_bias"], "use_qk_norm": a["qk_norm"]}
    if family == "qwen2_moe":
        return {"qkv_bias": a["qkv_bias"]}
    if family in ("deepseek_v3", DSA_FAMILY):
        if a["qkv_bias"]:
            raise ArchitectureError("--add-qkv-bias with --multi-latent-attention: DeepSeek-V3's latent projections "
                                    "have no biases; drop --add-qkv-bias")
        return {"attention_bias": False}
    return {}


def _sigmoid_family_fields(a, family):
    """Fields DeepSeek-V3 and GLM-4.5 need besides their router: MTP depth and, without experts, all-dense layers."""
    out = {"num_nextn_predict_layers": a["mtp"]}
    if a["routing"] is None:  # a dense MLA model: every layer (and MTP layer) takes the dense MLP
        out.update({"first_k_dense_replace": a["layers"] + a["mtp"], "n_routed_experts": 1, "num_experts_per_tok": 1,
                    "n_shared_experts": 0, "n_group": 1, "topk_group": 1, "moe_intermediate_size": a["ffn"]})
    return out


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
                   "num_local_experts", "num_experts", "n_routed_experts", "num_experts_per_tok",
                   "moe_intermediate_size",
                   "norm_topk_prob", "mlp_only_layers", "shared_expert_intermediate_size", "n_shared_experts",
                   "routed_scaling_factor", "n_group", "topk_group", "first_k_dense_replace",
                   "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                   "attention_bias", "qkv_bias", "use_qk_norm", "sliding_window", "num_nextn_predict_layers",
                   "n_layer", "n_embd", "n_head")
COMPARED_ROPE = ("rope_theta", "rope_type", "factor", "low_freq_factor", "high_freq_factor",
                 "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale", "mscale_all_dim",
                 "partial_rotary_factor")


def _rope_of(config: Dict[str, Any]) -> Dict[str, Any]:
    """A config's RoPE settings, whether written as rope_parameters (transformers 5) or the older rope_theta and
    rope_scaling keys."""
    rope = dict(config.get("rope_scaling") or {})
    if "type" in rope and "rope_type" not in rope:
        rope["rope_type"] = rope.pop("type")
    for key in ("rope_theta", "partial_rotary_factor"):
        if config.get(key) is not None:
            rope[key] = config[key]
    rope.update(config.get("rope_parameters") or {})
    return rope


def _differ(a, b) -> bool:
    try:
        return float(a) != float(b)
    except (TypeError, ValueError):
        return a != b


def compare_with_checkpoint(arch: Dict[str, Any], hf_config: Dict[str, Any]) -> List[str]:
    """Names and values of the fields where the flags and the checkpoint's config.json disagree."""
    diffs = []
    for name in COMPARED_FIELDS:
        if name in arch and name in hf_config and hf_config[name] is not None and _differ(arch[name], hf_config[name]):
            diffs.append(f"{name}: flags say {arch[name]}, config.json says {hf_config[name]}")
    ours, theirs = _rope_of(arch), _rope_of(hf_config)
    if ours.get("rope_type", "default") != theirs.get("rope_type", "default"):
        diffs.append(f"rope_type: flags say {ours.get('rope_type', 'default')}, config.json says "
                     f"{theirs.get('rope_type', 'default')}")
    for key in (k for k in COMPARED_ROPE if k != "rope_type"):
        if key in ours and theirs.get(key) is not None and _differ(ours[key], theirs[key]):
            diffs.append(f"{key}: flags say {ours[key]}, config.json says {theirs[key]}")
    return diffs
