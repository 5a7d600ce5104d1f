"""Megatron architecture flags -> a Hugging Face config of the matching family.

Family choice follows what the flags describe:
  learned absolute positions + LayerNorm + GeLU (+ biases)      -> gpt2 (tanh GeLU: Megatron's fused bias-GeLU
                                                                  kernel, unless --no-bias-gelu-fusion)
      ... with multi-query attention (one key/value head)        -> gpt_bigcode
      ... without linear biases (--disable-bias-linear)          -> opt (arch/layernorm.py)
  rope + LayerNorm + GeLU (+ biases)                             -> gpt_neox, sequential residual (arch/layernorm.py)
  rope + LayerNorm + SwiGLU (no biases but q/k/v's)              -> stablelm (arch/layernorm.py)
  ALiBi + --embed-layernorm + LayerNorm + GeLU (+ biases)        -> bloom (arch/layernorm.py)
  rope + RMSNorm + gated GeLU (--geglu/--gelu-tanh) + --input-embeds-norm -> gemma (arch/gemma.py)
  rope + RMSNorm + SwiGLU + --use-glm-rope (ChatGLM3 / GLM-4)   -> glm (interleaved partial rotary)
  rope + RMSNorm + SwiGLU                                        -> llama
      ... with a sliding window (--sliding-window/--window-size) -> mistral
      ... with q/k/v bias only (--add-qkv-bias)                  -> qwen2
      ... with MiniCPM's --scale-emb/--scale-depth/--dim-model-base -> granite (arch/minicpm.py)
      ... with --qk-layernorm                                    -> qwen3
      ... with experts: by the router (arch/moe.py)              -> qwen3_moe, mixtral, qwen2_moe, glm4_moe
      ... with Multi-Latent Attention (arch/attention.py)        -> deepseek_v3 (deepseek_v2: softmax router)
      ... with MindSpeed's sparse-attention indexer (arch/dsa.py) -> glm_moe_dsa
      ... with Gated DeltaNet layers (arch/linear_attention.py)  -> qwen3_next
  rope + RMSNorm + --quick-geglu with experts, sinks, windows (arch/gpt_oss.py) -> gpt_oss
  ... sigmoid router with expert bias under a MiniMax-M2 layer spec (arch/minimax.py) -> minimax_m2
  a hybrid layer pattern / Mamba flags (arch/hybrid.py)          -> nemotron_h (Mamba2, attention, MLP layers)
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
from .arch.gemma import gemma2_fields, gemma2_flags_given, gemma_family, gemma_fields, wants_geglu
from .arch.gpt_oss import check_gpt_oss, check_not_gpt_oss, gpt_oss_fields, wants_gpt_oss
from .arch.hybrid import HYBRID_COMPARED, checkpoint_fields, hybrid_config, layer_symbols, wants_hybrid
from .arch.layernorm import bloom, gpt_neox, opt, stablelm
from .arch.linear_attention import check_qwen3_next, dense_fields, linear_attention
from .arch.minicpm import FAMILY as MINICPM_FAMILY
from .arch.minicpm import check_minicpm_family, granite_fields, minicpm_scales
from .arch.minimax import check_minimax, wants_minimax
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

MLA_FAMILIES = ("deepseek_v3", "deepseek_v2", DSA_FAMILY)  # transformers' Multi-Latent Attention

__all__ = ["ENGINE_MODEL_ID", "ArchitectureError", "build_architecture", "compare_with_checkpoint", "engine_fields",
           "uses_rope", "wants_architecture"]

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
    "layer_norm_epsilon": "--norm-epsilon", "layer_norm_eps": "--norm-epsilon",
    "rope_parameters.rope_theta": "--rotary-base", "partial_rotary_factor": "--rotary-percent",
    "vocab_size": ("--padded-vocab-size", "--vocab-size"), "num_local_experts": "--num-experts",
    "num_experts_per_tok": "--moe-router-topk",
    "moe_intermediate_size": "--moe-ffn-hidden-size", "attention_dropout": "--attention-dropout",
    "attn_pdrop": "--attention-dropout", "resid_pdrop": "--hidden-dropout",
    "hidden_dropout": "--hidden-dropout", "embd_pdrop": "--hidden-dropout",
    "initializer_range": "--init-method-std", "router_aux_loss_coef": "--moe-aux-loss-coeff",
}


def wants_architecture(given: Dict[str, Any]) -> bool:
    return any(flag in given for flag in ARCH_FLAGS_REQUIRED)


def build_architecture(given: Dict[str, Any], seq_length: Optional[int],
                       tp_size: int) -> Tuple[Dict[str, Any], List[str]]:
    """Return (HF config dict, notes). Raise ArchitectureError naming the flags when it cannot be honoured."""
    hybrid = wants_hybrid(given)
    if hybrid and "--num-layers" not in given:  # Megatron's --hybrid-layer-pattern sets the depth
        given = {**given, "--num-layers": len(layer_symbols(given))}
    missing = [f for f in ARCH_FLAGS_REQUIRED if f not in given]
    if missing:
        raise ArchitectureError(f"the architecture needs {', '.join(missing)} as well")
    a = _read_flags(given, seq_length)
    notes: List[str] = []
    if hybrid and a["minicpm"]:
        check_minicpm_family(a["minicpm"], "nemotron_h")
    family = "nemotron_h" if hybrid else _choose_family(a)
    if family == "nemotron_h":
        config = hybrid_config(given, a, notes)
    elif family in ("gpt2", "gpt_bigcode"):
        config = _gpt2(a, family, given)
        _default_dropout_note(a, notes)
    elif family == "opt":
        config = opt(a)
        _default_dropout_note(a, notes)
    elif family in ("gpt_neox", "stablelm"):
        config = gpt_neox(a) if family == "gpt_neox" else stablelm(a)
        config["rope_parameters"] = _rope_parameters(a, family)
        _default_dropout_note(a, notes)
    elif family == "bloom":
        config = bloom(a, given)
        if a["hidden_drop"]:
            notes.append("Megatron's default hidden dropout 0.1 drops out the embeddings too, which BLOOM does not: "
                         "trained without hidden dropout (add --hidden-dropout 0.0 to make this explicit)")
    else:
        config = _rope_family(a, family, notes, given)
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
    rope = uses_rope(g)
    if positions not in ("rope", "learned_absolute", "alibi", "none"):
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
    window = sliding_window(g)
    gpt_oss = gpt_oss_fields(g, len(real) if real else layers, window) if wants_gpt_oss(g) and sane else None
    if not wants_gpt_oss(g):
        check_not_gpt_oss(g)
    # Values are taken as given (0 is not "unset"): nonsense reaches the architecture's rules, which name it.
    return {
        "layers": len(real) if real else layers, "hidden": hidden, "heads": heads, "ffn": ffn, "swiglu": swiglu,
        "geglu": wants_geglu(g), "gelu_tanh": bool(g.get("--gelu-tanh")),
        "embeds_norm": bool(g.get("--input-embeds-norm")), "gemma2": gemma2_flags_given(g),
        "glm_rope": bool(g.get("--use-glm-rope")),
        "rope": rope, "alibi": positions == "alibi" and not rope, "embed_norm": bool(g.get("--embed-layernorm")),
        "positions": positions, "kv_heads": _kv_heads(g, heads),
        "head_dim": g["--kv-channels"] if "--kv-channels" in g else _whole_head_size(hidden, heads),
        "max_pos": g["--max-position-embeddings"] if "--max-position-embeddings" in g else seq_length,
        "rms": _normalization(g) == "rmsnorm" or bool(g.get("--RMSNorm")),
        "eps": g.get("--norm-epsilon", 1e-5),
        "tied": not g.get("--untie-embeddings-and-output-weights"),
        **_biases_given(g),
        "qk_norm": bool(g.get("--qk-layernorm")),
        "routing": routing,
        "mla": mla_config,
        "dsa": dsa_fields(g, mla_config) if wants_dsa(g) else None,
        "linear": _linear(g, real) if sane else None,
        "norm_offset": bool(g.get("--add-rmsnorm-offset") or g.get("--apply-layernorm-1p")),
        "window": window, "gpt_oss": gpt_oss, "minimax": wants_minimax(g),
        "rope_scaling": rope_scaling(g, mla) if rope else None,
        "mtp": int(g.get("--mtp-num-layers") or g.get("--num-nextn-predict-layers") or 0),
        # Megatron's fused bias-GeLU kernel (on unless --no-bias-gelu-fusion; biases needed) is the tanh approximation
        "tanh_gelu": not g.get("--disable-bias-linear") and not g.get("--no-bias-gelu-fusion"),
        "std": g.get("--init-method-std", 0.02),
        "attn_drop": g.get("--attention-dropout", 0.1), "hidden_drop": g.get("--hidden-dropout", 0.1),
        "hidden_drop_given": "--hidden-dropout" in g,
        "rope_base": g.get("--rotary-base", 10000), "rope_pct": g.get("--rotary-percent", 1.0),
        "squared_relu": bool(g.get("--squared-relu")),
        "minicpm": minicpm_scales(g), "layers_given": layers,
    }


# Pai-Megatron-Patch's legacy model code keeps the q/k/v bias and switches the others off with these two flags
_PAI_BIAS_FLAGS = ("--disable-bias-linear-fc", "--disable-bias-attn-fc")


def _biases_given(g):
    """Which linear layers have biases: Megatron's --disable-bias-linear / --add-qkv-bias, or Pai-Megatron-Patch's
    --disable-bias-linear-fc (MLP) with --disable-bias-attn-fc (attention output), which leave them on q/k/v only
    (Pai's Qwen-1 layout, the qwen2 family's)."""
    pai = [flag for flag in _PAI_BIAS_FLAGS if g.get(flag)]
    if not pai:
        return {"bias": not g.get("--disable-bias-linear"), "qkv_bias": bool(g.get("--add-qkv-bias"))}
    if len(pai) == 1:
        missing = next(f for f in _PAI_BIAS_FLAGS if f not in pai)
        raise ArchitectureError(f"{pai[0]} without {missing}: biases on some layers besides q/k/v fit no family "
                                f"here; give both Pai flags (Qwen-1: q/k/v biases only) or --disable-bias-linear")
    if g.get("--disable-bias-linear"):
        raise ArchitectureError("--disable-bias-linear-fc and --disable-bias-attn-fc with --disable-bias-linear: "
                                "whether q/k/v keep a bias depends on Pai's model code; give --disable-bias-linear "
                                "alone (no biases) or the two Pai flags alone (q/k/v biases only)")
    return {"bias": False, "qkv_bias": True}


def _linear(g, real):
    """Qwen3-Next's linear-attention fields, the layer pattern over the real layers (noop layers removed)."""
    fields = linear_attention(g, g["--num-layers"])
    if fields is not None and real:
        fields["layer_types"] = [fields["layer_types"][i] for i in real]
    return fields


def _whole_head_size(hidden, heads):
    """Megatron's default kv_channels, hidden / heads; None where that is no whole number (the rules refuse it)."""
    return hidden // heads if heads > 0 and hidden % heads == 0 else None


# Forks' spellings: bigscience Megatron-DeepSpeed (rotary, absolute, alibi), Pai-Megatron-Patch's older one (rotary)
_POSITION_SPELLINGS = {"rotary": "rope", "absolute": "learned_absolute"}


def _positions(g) -> str:
    """--position-embedding-type as Megatron-LM spells it (alibi: bigscience Megatron-DeepSpeed, MindSpeed-LLM)."""
    value = str(g.get("--position-embedding-type", "learned_absolute"))
    return _POSITION_SPELLINGS.get(value, value)


def uses_rope(g) -> bool:
    """Whether the flags ask for rotary positions (any fork's spelling)."""
    return _positions(g) == "rope" or bool(g.get("--use-rotary-position-embeddings"))


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
    family = _family_of_the_layout(a)
    if a["minicpm"]:  # MiniCPM's scales on a Llama layout: transformers' Granite (arch/minicpm.py)
        check_minicpm_family(a["minicpm"], family)
        return MINICPM_FAMILY
    return family


def _family_of_the_layout(a) -> str:
    _check_family_flags(a)
    if a["positions"] == "none" and not a["rope"]:
        raise ArchitectureError("--position-embedding-type none: only hybrid Mamba models (--hybrid-layer-pattern, the "
                                "nemotron_h family) train without a position embedding here; use rope or "
                                "learned_absolute")
    if a["squared_relu"]:
        raise ArchitectureError("--squared-relu: only the nemotron_h family (a hybrid Mamba model, "
                                "--hybrid-layer-pattern) has a squared-ReLU MLP here; drop it for GeLU or --swiglu")
    if a["alibi"]:
        return _alibi_family(a)
    if not a["rope"]:
        return _learned_positions_family(a)
    if a["gpt_oss"] is not None:
        check_gpt_oss(a, a["routing"])
        return "gpt_oss"
    if a["geglu"]:
        return gemma_family(a)
    if not a["rms"]:
        return "stablelm" if a["swiglu"] else "gpt_neox"
    if not a["swiglu"]:
        raise ArchitectureError(
            "rope models map to the Llama/Qwen families (RMSNorm and --swiglu), GPT-NeoX (LayerNorm and GeLU) or "
            "StableLM (LayerNorm and --swiglu); rope with RMSNorm and GeLU has no Hugging Face family here")
    if a["minimax"]:
        check_minimax(a, a["routing"])
        return "minimax_m2"
    if a["linear"] is not None:
        return "qwen3_next"  # checked in _rope_family (check_qwen3_next)
    if a["glm_rope"]:
        return _glm_family(a)
    return _llama_like_family(a)


def _check_family_flags(a) -> None:
    """Flags that belong to one family only, given with flags that describe another."""
    if a["embed_norm"] and not a["alibi"]:
        raise ArchitectureError("--embed-layernorm: only BLOOM (--position-embedding-type alibi) has a LayerNorm "
                                "after the word embeddings here")
    if a["embeds_norm"] and not (a["rope"] and a["geglu"]):
        raise ArchitectureError("--input-embeds-norm: only Gemma (rope, RMSNorm, --geglu or --gelu-tanh) scales the "
                                "embeddings by sqrt(hidden size) here")
    if a["gemma2"] and not a["geglu"]:
        raise ArchitectureError(f"{', '.join(a['gemma2'])}: Gemma 2's, a rope model with RMSNorm and a gated GeLU MLP "
                                "(--geglu / --gelu-tanh) and --input-embeds-norm")
    if a["geglu"] and not a["rope"]:
        raise ArchitectureError("--geglu / --gelu-tanh: a gated GeLU MLP is Gemma's, a rope model "
                                "(--position-embedding-type rope)")
    if a["glm_rope"] and (not (a["rope"] and a["rms"] and a["swiglu"]) or a["geglu"]):
        raise ArchitectureError("--use-glm-rope: ChatGLM3 / GLM-4's rotary embedding is the glm family's, a rope "
                                "model with --normalization RMSNorm and --swiglu")


def _learned_positions_family(a) -> str:
    multi_query = a["heads"] > 1 and a["kv_heads"] == 1
    if not a["bias"] and not a["rms"] and not a["swiglu"]:
        return "opt"  # opt() names what else OPT lacks
    if a["rms"] or a["swiglu"] or not a["bias"] or a["routing"] or a["qk_norm"] or a["mla"] or a["window"] \
            or (a["kv_heads"] != a["heads"] and not multi_query):
        raise ArchitectureError(
            "learned absolute positions map to the GPT-2 family (GPT-BigCode with multi-query attention), which "
            "needs LayerNorm, GeLU, biases, no experts, no qk-layernorm, no latent attention, no sliding window "
            "and one or all key/value heads (no grouped-query attention), or without linear biases to OPT; for a "
            "Llama-style model add --position-embedding-type rope --normalization RMSNorm --swiglu")
    return "gpt_bigcode" if multi_query else "gpt2"


def _glm_family(a) -> str:
    extras = [(a["routing"], "experts (--num-experts)"), (a["qk_norm"], "--qk-layernorm"),
              (a["mla"], "latent attention (--multi-latent-attention)"),
              (a["window"], "a sliding window (--sliding-window / --window-size)")]
    given = [name for present, name in extras if present]
    if given:
        raise ArchitectureError(f"--use-glm-rope maps to the glm family (ChatGLM3, GLM-4), which has no "
                                f"{', '.join(given)}")
    return "glm"


def _llama_like_family(a) -> str:
    """RMSNorm and SwiGLU: Llama, or the variant its experts, latent attention, norms, biases or window ask for."""
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


def _alibi_family(a) -> str:
    if not a["embed_norm"]:
        if a["rms"] or a["swiglu"]:
            raise ArchitectureError("--position-embedding-type alibi without --embed-layernorm (Baichuan-13B-style, "
                                    "RMSNorm and SwiGLU): no transformers family computes it; BLOOM is ALiBi with "
                                    "--embed-layernorm, LayerNorm and GeLU")
        raise ArchitectureError("--position-embedding-type alibi without --embed-layernorm: transformers' BLOOM, the "
                                "family of ALiBi with LayerNorm and GeLU, always normalises the embeddings, and no "
                                "other family computes this model; add --embed-layernorm for BLOOM")
    if a["rms"] or a["swiglu"]:
        raise ArchitectureError("ALiBi with --embed-layernorm maps to BLOOM, which needs LayerNorm and GeLU; drop "
                                + " and ".join(f for f, on in (("--normalization RMSNorm", a["rms"]),
                                                               ("--swiglu", a["swiglu"])) if on))
    return "bloom"


def _gpt2(a, family, g):
    """GPT-2, or GPT-BigCode (StarCoder: bigcode's --attention-head-type multiquery, Megatron-LM's
    --group-query-attention --num-query-groups 1), the same model with one key/value head shared by all heads."""
    if a["head_dim"] is not None and a["head_dim"] * a["heads"] != a["hidden"]:
        raise ArchitectureError("GPT-2 needs --kv-channels × --num-attention-heads = --hidden-size")
    if not a["tied"] and family == "gpt2":
        raise ArchitectureError("the GPT-2 family always ties embeddings; drop --untie-embeddings-and-output-weights")
    bigcode = {}
    if family == "gpt_bigcode":  # tensor- and context-parallel ranks fold into data parallelism (groups.py)
        bigcode = {"multi_query": True, "scale_attn_weights": True}
    return {
        "model_type": family, **bigcode, "n_layer": a["layers"], "n_embd": a["hidden"], "n_head": a["heads"],
        "n_inner": a["ffn"],
        "n_positions": a["max_pos"], "activation_function": "gelu_pytorch_tanh" if a["tanh_gelu"] else "gelu",
        "layer_norm_epsilon": a["eps"],
        "resid_pdrop": a["hidden_drop"], "embd_pdrop": a["hidden_drop"], "attn_pdrop": a["attn_drop"],
        "initializer_range": a["std"], "tie_word_embeddings": a["tied"],
    }


def _default_dropout_note(a, notes) -> None:
    """Megatron's hidden dropout 0.1 when the script gives none: applied, and said, since a run may not mean it."""
    if a["hidden_drop"] and not a["hidden_drop_given"]:
        notes.append(f"hidden dropout {a['hidden_drop']}: Megatron's default (no --hidden-dropout), applied as "
                     "Megatron applies it, after the embeddings and each attention and MLP output; add "
                     "--hidden-dropout 0.0 if the run meant none")


def _rope_family(a, family, notes, given):
    _default_dropout_note(a, notes)
    config = {
        "model_type": family, "num_hidden_layers": a["layers"], "hidden_size": a["hidden"],
        "intermediate_size": a["ffn"],
        "num_attention_heads": a["heads"], "num_key_value_heads": a["kv_heads"], "head_dim": a["head_dim"],
        "max_position_embeddings": a["max_pos"], "hidden_act": "silu", "rms_norm_eps": a["eps"],
        "initializer_range": a["std"], "tie_word_embeddings": a["tied"], "attention_dropout": a["attn_drop"],
        "rope_parameters": _rope_parameters(a, family),
    }
    if a["hidden_drop"]:  # no such field in these transformers classes: fsdp2_core/models/hidden_dropout.py
        config["hidden_dropout"] = a["hidden_drop"]
    config.update(_biases(a, family))
    if family in ("gemma", "gemma2", "glm"):
        # their configs name a padding token, which transformers' embedding would never train (padding_idx);
        # Megatron's embedding has no such row
        config["pad_token_id"] = None
    if family == "gemma":
        config.update(gemma_fields(a))
    if family == "gemma2":
        config.pop("hidden_act")
        config.update(gemma2_fields(a, given))
    if family == "qwen3":
        config["attention_bias"] = a["qkv_bias"]
    if family == MINICPM_FAMILY:
        config.update(granite_fields(a["minicpm"], a["layers_given"], a["hidden"], a["head_dim"]))
    if family == "mistral":
        config["sliding_window"] = a["window"]
    if family == "qwen3_next":
        check_qwen3_next(a, notes)
        config.update(a["linear"])
        config.update(moe_fields(a["routing"], "qwen2_moe") if a["routing"] else dense_fields(a["layers"] + a["mtp"]))
    if family == "gpt_oss":
        config.update(a["gpt_oss"])
    if family in MOE_FAMILIES and a["routing"] is not None:  # DeepSeek-V3 also serves dense MLA models
        config.update(moe_fields(a["routing"], family))
    if family in SIGMOID_FAMILIES:
        config.update(_sigmoid_family_fields(a, family))
    if family in MLA_FAMILIES:
        config.update(a["mla"])
        config.pop("head_dim")  # DeepSeek-V2 / V3 derive it from qk_rope_head_dim
        config["num_key_value_heads"] = a["heads"]
        if family == "deepseek_v2":
            config.pop("rope_interleave")  # DeepSeek-V2 always rotates interleaved pairs (complex products)
        if a["eps"] != 1e-6:
            notes.append(f"--norm-epsilon {a['eps']}: transformers' {family} attention normalises the q and kv "
                         "latents with eps 1e-6 whatever rms_norm_eps is (Megatron's MLA uses --norm-epsilon there "
                         "too); give --norm-epsilon 1e-6, DeepSeek-V3's own value, for the same model")
    if family == DSA_FAMILY:
        config.update(a["dsa"])
        config.pop("rope_interleave")  # GLM-MoE-DSA's MLA always rotates interleaved pairs
    return config


def _rope_parameters(a, family):
    rope = {"rope_type": "default", "rope_theta": float(a["rope_base"])}
    # GLM-4.5's and GLM's configs would otherwise rotate half, GPT-NeoX's, StableLM's and Qwen3-Next's a quarter
    if a["rope_pct"] != 1.0 or family in ("glm4_moe", "gpt_neox", "stablelm", "glm", "qwen3_next"):
        rope["partial_rotary_factor"] = float(a["rope_pct"])
    if a["rope_scaling"]:
        rope.update(a["rope_scaling"])
    return rope


def _biases(a, family):
    """Linear biases: Llama's on every projection or none; GLM, GLM-4.5 and Qwen2 on q/k/v only; none elsewhere."""
    if family in ("llama", MINICPM_FAMILY):
        return {"attention_bias": a["bias"], "mlp_bias": a["bias"]}
    if family == "gpt_oss":  # biases required (check_gpt_oss)
        return {"attention_bias": True}
    if a["bias"]:
        raise ArchitectureError(f"the {family} family has no linear biases; add --disable-bias-linear")
    if family == "glm4_moe":
        return {"attention_bias": a["qkv_bias"], "use_qk_norm": a["qk_norm"]}
    if family == "qwen2_moe":
        return {"qkv_bias": a["qkv_bias"]}
    if family == "glm":
        return {"attention_bias": a["qkv_bias"]}
    if family in MLA_FAMILIES:
        if a["qkv_bias"]:
            raise ArchitectureError("--add-qkv-bias with --multi-latent-attention: DeepSeek's latent projections "
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
                   "routed_scaling_factor", "n_group", "topk_group", "topk_method", "first_k_dense_replace",
                   "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                   "attention_bias", "qkv_bias", "use_qk_norm", "sliding_window", "layer_types", "swiglu_limit",
                   "num_nextn_predict_layers",
                   "n_layer", "n_embd", "n_head", "layer_norm_eps", "use_parallel_residual", "hidden_act",
                   "layer_norm_epsilon", "apply_residual_connection_post_layernorm", "hidden_activation",
                   "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping", "multi_query")
COMPARED_ROPE = ("rope_theta", "rope_type", "factor", "low_freq_factor", "high_freq_factor",
                 "original_max_position_embeddings", "beta_fast", "beta_slow", "mscale", "mscale_all_dim",
                 "partial_rotary_factor")


def _rope_of(config: Dict[str, Any]) -> Dict[str, Any]:
    """A config's RoPE settings, whether written as rope_parameters (transformers 5) or the older rope_theta and
    rope_scaling keys."""
    rope = dict(config.get("rope_scaling") or {})
    if "type" in rope and "rope_type" not in rope:
        rope["rope_type"] = rope.pop("type")
    # GPT-NeoX's older config.json spells them rotary_emb_base and rotary_pct
    for key, old in (("rope_theta", "rotary_emb_base"), ("partial_rotary_factor", "rotary_pct")):
        for name in (old, key):
            if config.get(name) is not None:
                rope[key] = config[name]
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
    hf_config = checkpoint_fields(hf_config)
    for name in COMPARED_FIELDS + HYBRID_COMPARED:
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
