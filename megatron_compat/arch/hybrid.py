"""Megatron's hybrid Mamba models (pretrain_hybrid.py / pretrain_mamba.py, Nemotron-H style) -> transformers'
`nemotron_h` family.

The layer pattern, Megatron's grammar (megatron-core's ssm/mamba_hybrid_layer_allocation.py), one symbol a layer:
  M  a Mamba2 mixer            -> layers_block_type "linear_attention"
  *  self-attention (no rope)  -> "full_attention"
  -  a dense MLP               -> "mlp"
  E  a MoE layer               -> "moe" (refused for now, see below)
  |  a pipeline-stage boundary in newer Megatron-LM: it changes no layer, so it is dropped
  /  starts the multi-token-prediction layers (one pattern per depth): refused
Other symbols of Megatron-LM's newer hybrid specs (D: DeepSeek Sparse Attention, C / H: DeepSeek-V4 compressed
attention, ...) are no `nemotron_h` layer and are refused by name. `--hybrid-layer-pattern` (newer spelling) and
`--hybrid-override-pattern` (megatron-core 0.16) give the pattern; without one, `--hybrid-attention-ratio` /
`--hybrid-mlp-ratio` over `--num-layers` place the layers as megatron-core's `allocate_layers` does, and a pattern
given with ratios must hold the same count of each symbol (its rule).

Mamba2 dims: --mamba-state-dim (ssm_state_size, 128), --mamba-head-dim (mamba_head_dim, 64), --mamba-num-groups
(n_groups, 8), --mamba-num-heads (mamba_num_heads; unset: expand × hidden / head dim, expand 2 as megatron-core's
MambaMixer, MindSpeed's --mamba-expand), MindSpeed's --mamba-d-conv (conv_kernel, 4) and --mamba-chunk-size
(chunk_size, 128: the scan's chunking, no change to the result). megatron-core's mixer has no linear biases, a
biased depthwise conv, a silu gate folded into a grouped RMSNorm (group = d_inner / groups, gate before norm), one
D and dt bias per head: transformers' NemotronHMamba2Mixer computes the same (tests/arch/test_hybrid_mamba.py).
"""
from typing import Any, Dict, List, Optional

from . import ArchitectureError

# A symbol of the pattern -> nemotron_h's layers_block_type
LAYER_TYPES = {"M": "linear_attention", "*": "full_attention", "-": "mlp", "E": "moe"}
# Symbols of Megatron-LM's newer hybrid layer specs that no nemotron_h layer computes
UNBUILT = {"D": "DeepSeek Sparse Attention (MLA with a lightning indexer)",
           "C": "DeepSeek-V4 compressed-sparse attention", "H": "DeepSeek-V4 heavily-compressed attention",
           "G": "gated DeltaNet linear attention"}
PATTERN_FLAGS = ("--hybrid-layer-pattern", "--hybrid-override-pattern")
RATIO_FLAGS = ("--hybrid-attention-ratio", "--hybrid-mlp-ratio")
MAMBA_FLAGS = ("--mamba-state-dim", "--mamba-head-dim", "--mamba-num-groups", "--mamba-num-heads", "--mamba-expand",
               "--mamba-d-conv", "--mamba-chunk-size")
# What makes a flag set hybrid: MindSpeed's --mamba-expand / --mamba-d-conv / --mamba-chunk-size also set Qwen3-Next's
# Gated DeltaNet layers, so they alone do not
HYBRID_FLAGS = PATTERN_FLAGS + RATIO_FLAGS + ("--is-hybrid-model",) + MAMBA_FLAGS[:4]
MAMBA_DEFAULTS = {"--mamba-state-dim": 128, "--mamba-head-dim": 64, "--mamba-num-groups": 8, "--mamba-expand": 2,
                  "--mamba-d-conv": 4, "--mamba-chunk-size": 128}
# nemotron_h fields compared with a --load checkpoint's config.json
HYBRID_COMPARED = ("layers_block_type", "ssm_state_size", "mamba_num_heads", "mamba_head_dim", "n_groups",
                   "conv_kernel", "chunk_size", "mlp_hidden_act", "layer_norm_epsilon")
# megatron-core's MambaMixer normalises its gated output with eps 1e-5 whatever --norm-epsilon is
MIXER_NORM_EPS = 1e-5


def wants_hybrid(g: Dict[str, Any]) -> bool:
    return any(g.get(flag) not in (None, False) for flag in HYBRID_FLAGS)


def pattern_flag(g) -> Optional[str]:
    """The flag that gives the layer pattern; both given must agree."""
    given = [f for f in PATTERN_FLAGS if g.get(f) not in (None, "")]
    if len(given) == 2 and str(g[given[0]]) != str(g[given[1]]):
        raise ArchitectureError(f"{given[0]} {g[given[0]]} and {given[1]} {g[given[1]]} disagree; keep one")
    return given[0] if given else None


def layer_symbols(g) -> List[str]:
    """One symbol (M, *, -, E) per decoder layer, from the pattern or the ratios over --num-layers."""
    flag = pattern_flag(g)
    layers = g.get("--num-layers")
    ratios = [float(g.get(f) or 0.0) for f in RATIO_FLAGS]
    if flag is None:
        if layers is None:
            raise ArchitectureError("a hybrid model needs --hybrid-layer-pattern (one symbol a layer: M Mamba, "
                                    "* attention, - MLP) or --num-layers with --hybrid-attention-ratio / "
                                    "--hybrid-mlp-ratio")
        _check_ratios(ratios, layers)
        return allocate_auto(layers, *ratios)
    symbols = parse_pattern(str(g[flag]), flag)
    if layers is not None and layers != len(symbols):
        raise ArchitectureError(f"{flag} {g[flag]} has {len(symbols)} layers but --num-layers is {layers}; "
                                "drop --num-layers (the pattern sets it) or make them agree")
    if any(ratios):
        _check_ratios(ratios, len(symbols))
        auto = allocate_auto(len(symbols), *ratios)
        if any(auto.count(s) != symbols.count(s) for s in LAYER_TYPES):
            raise ArchitectureError(f"{flag} {g[flag]} does not hold the number of attention and MLP layers that "
                                    f"--hybrid-attention-ratio {ratios[0]} / --hybrid-mlp-ratio {ratios[1]} ask for "
                                    f"({''.join(auto)}); Megatron refuses this too")
    return symbols


def parse_pattern(text: str, flag: str = "--hybrid-layer-pattern") -> List[str]:
    """Megatron's pattern -> its decoder layers' symbols; pipeline boundaries dropped, MTP and other layers
    refused."""
    main, _, mtp = text.partition("/")
    if mtp.strip("/"):
        raise ArchitectureError(f"{flag} {text}: the layers after '/' are multi-token-prediction layers, which hybrid "
                                "models here do not train; drop the '/...' part (plain next-token loss)")
    symbols = [s for s in main.strip() if s != "|"]
    unknown = sorted({s for s in symbols if s not in LAYER_TYPES})
    if unknown:
        named = "; ".join(f"'{s}' ({UNBUILT[s]})" if s in UNBUILT else f"'{s}'" for s in unknown)
        raise ArchitectureError(f"{flag} {text}: {named} is no layer of the nemotron_h family, which builds "
                                "M (Mamba2), * (attention), - (MLP) and E (MoE) layers")
    if not symbols:
        raise ArchitectureError(f"{flag} {text!r}: the pattern has no layers")
    return symbols


def _check_ratios(ratios, layers):
    attention, mlp = ratios
    if not (0.0 <= attention <= 1.0 and 0.0 <= mlp <= 1.0 and attention + mlp <= 1.0) or layers < 1:
        raise ArchitectureError(f"--hybrid-attention-ratio {attention} and --hybrid-mlp-ratio {mlp}: each within 0..1 "
                                f"and together at most 1, over --num-layers >= 1 (given {layers})")


def allocate_auto(layers: int, attention_ratio: float, mlp_ratio: float) -> List[str]:
    """Megatron's placement by ratios: attention layers spread evenly between Mamba runs (never first or last), then
    MLP layers spread over the remaining Mamba layers, right-justified (round() and the 0.5 threshold as Megatron)."""
    attention = round(layers * attention_ratio)
    mamba = layers - attention
    run = mamba / (attention + 1)
    symbols = ["M"] * layers
    budget = run
    for i in range(layers):
        if budget < 0.5:
            symbols[i] = "*"
            budget += run
        else:
            budget -= 1
    mlp = round(layers * mlp_ratio)
    if mlp > 0:
        per_mlp = (mamba - mlp) / mlp
        budget = per_mlp
        for i in range(layers):
            if symbols[i] != "M":
                continue
            if budget < 0.5:
                symbols[i] = "-"
                budget += per_mlp
            else:
                budget -= 1
    return symbols


def mamba_fields(g, hidden: int) -> Dict[str, Any]:
    """The Mamba2 mixer's dims as nemotron_h fields."""
    value = {flag: g.get(flag, default) for flag, default in MAMBA_DEFAULTS.items()}
    # the translation reads --mamba-d-conv as its other spelling, Qwen3-Next's --linear-conv-kernel-dim
    value["--mamba-d-conv"] = g.get("--linear-conv-kernel-dim", value["--mamba-d-conv"])
    for flag, v in value.items():
        if not isinstance(v, int) or v < 1:
            raise ArchitectureError(f"{flag} {v}: expects a whole number >= 1")
    head_dim, groups = value["--mamba-head-dim"], value["--mamba-num-groups"]
    heads = g.get("--mamba-num-heads")
    if heads is None:
        inner = value["--mamba-expand"] * hidden
        if inner % head_dim:
            raise ArchitectureError(f"--mamba-expand {value['--mamba-expand']} × --hidden-size {hidden} = {inner} does "
                                    f"not divide by --mamba-head-dim {head_dim}; give --mamba-num-heads")
        heads = inner // head_dim
    if heads < 1 or heads % groups:
        raise ArchitectureError(f"--mamba-num-heads {heads} must be a multiple of --mamba-num-groups {groups} "
                                "(megatron-core's MambaMixer asserts it)")
    return {"ssm_state_size": value["--mamba-state-dim"], "mamba_head_dim": head_dim, "mamba_num_heads": heads,
            "n_groups": groups, "expand": heads * head_dim // hidden if heads * head_dim % hidden == 0 else 2,
            "conv_kernel": value["--mamba-d-conv"], "chunk_size": value["--mamba-chunk-size"],
            "mamba_hidden_act": "silu", "use_conv_bias": True, "mamba_proj_bias": False, "use_bias": False,
            "time_step_min": 0.001, "time_step_max": 0.1, "time_step_floor": 1e-4}


def hybrid_config(g, a: Dict[str, Any], notes: List[str]) -> Dict[str, Any]:
    """The nemotron_h config; `a` holds the architecture flags read as for every family (architecture.py)."""
    symbols = layer_symbols(g)
    _check_layers(g, a, symbols)
    config = {
        "model_type": "nemotron_h", "layers_block_type": [LAYER_TYPES[s] for s in symbols],
        "hidden_size": a["hidden"], "num_attention_heads": a["heads"], "num_key_value_heads": a["kv_heads"],
        "head_dim": a["head_dim"], "intermediate_size": a["ffn"],
        "mlp_hidden_act": "relu2" if g.get("--squared-relu") else "gelu",
        "max_position_embeddings": a["max_pos"], "layer_norm_epsilon": a["eps"], "initializer_range": a["std"],
        "tie_word_embeddings": a["tied"], "attention_dropout": a["attn_drop"], "hidden_dropout": 0.0,
        "attention_bias": False, "mlp_bias": False, "residual_in_fp32": False, "num_nextn_predict_layers": 0,
    }
    config.update(mamba_fields(g, a["hidden"]))
    if "M" in symbols and a["eps"] != MIXER_NORM_EPS:
        notes.append(f"--norm-epsilon {a['eps']}: megatron-core's Mamba mixer normalises its gated output with eps "
                     f"1e-5 whatever --norm-epsilon is, nemotron_h with layer_norm_epsilon; give --norm-epsilon 1e-5 "
                     "for the same model")
    if a["hidden_drop_given"] is False and a["hidden_drop"]:
        notes.append("Megatron's default hidden dropout 0.1 is not available in the nemotron_h family: trained without "
                     "it (add --hidden-dropout 0.0 to make this explicit)")
    return config


def _check_layers(g, a, symbols):
    """What nemotron_h's layers cannot be: each refusal names the flag."""
    position = str(g.get("--position-embedding-type", "learned_absolute"))
    if position != "none" or a["rope"]:
        raise ArchitectureError(f"--position-embedding-type {position} with a hybrid Mamba model: nemotron_h's "
                                "attention layers take no position embedding (the Mamba layers carry the order); give "
                                "--position-embedding-type none, as Megatron's Mamba and Nemotron-H examples do")
    if not a["rms"]:
        raise ArchitectureError("a hybrid Mamba model maps to nemotron_h, which normalises with RMSNorm; add "
                                "--normalization RMSNorm")
    if a["bias"] or a["qkv_bias"]:
        raise ArchitectureError("nemotron_h's attention and MLP layers have no linear biases (megatron-core's Mamba "
                                "mixer has none either); add --disable-bias-linear and drop --add-qkv-bias")
    if a["swiglu"]:
        raise ArchitectureError("--swiglu with a hybrid Mamba model: nemotron_h's MLP is ungated (up, activation, "
                                "down); use --squared-relu (Nemotron-H) or the default GeLU")
    if a["hidden_drop_given"] and a["hidden_drop"]:
        raise ArchitectureError(f"--hidden-dropout {a['hidden_drop']}: nemotron_h has no hidden dropout; set "
                                "--hidden-dropout 0.0")
    others = [flag for flag, on in (("--qk-layernorm", a["qk_norm"]), ("--multi-latent-attention", a["mla"]),
                                    ("--sliding-window/--window-size", a["window"]),
                                    ("--mtp-num-layers", a["mtp"])) if on]
    if others:
        raise ArchitectureError(f"{', '.join(others)} with a hybrid Mamba model: nemotron_h's attention is plain "
                                "grouped-query attention without these; drop them")
    if "E" in symbols:
        raise ArchitectureError("E (MoE layers) in the hybrid pattern: nemotron_h's MoE block would run only "
                                "transformers' own routing here, without Megatron's router losses, expert-bias "
                                "updates and expert parallelism that the engine gives its other MoE families; use "
                                "dense '-' layers, or Megatron-LM for hybrid MoE models")


def hybrid_flags(arch: Dict[str, Any]) -> List[str]:
    """The flags that build this nemotron_h config (the reverse conversion)."""
    symbol = {kind: s for s, kind in LAYER_TYPES.items()}
    out = ["--hybrid-layer-pattern", "".join(symbol[k] for k in arch["layers_block_type"]),
           "--position-embedding-type", "none", "--normalization", "RMSNorm", "--disable-bias-linear",
           "--hidden-size", str(arch["hidden_size"]), "--num-attention-heads", str(arch["num_attention_heads"]),
           "--kv-channels", str(arch["head_dim"]), "--ffn-hidden-size", str(arch["intermediate_size"]),
           "--max-position-embeddings", str(arch["max_position_embeddings"]),
           "--norm-epsilon", str(arch["layer_norm_epsilon"]), "--init-method-std", str(arch["initializer_range"]),
           "--attention-dropout", str(arch["attention_dropout"]), "--hidden-dropout", "0.0",
           "--mamba-state-dim", str(arch["ssm_state_size"]), "--mamba-head-dim", str(arch["mamba_head_dim"]),
           "--mamba-num-groups", str(arch["n_groups"]), "--mamba-num-heads", str(arch["mamba_num_heads"])]
    if arch["num_key_value_heads"] != arch["num_attention_heads"]:
        out += ["--group-query-attention", "--num-query-groups", str(arch["num_key_value_heads"])]
    if arch.get("mlp_hidden_act") == "relu2":
        out.append("--squared-relu")
    if not arch["tie_word_embeddings"]:
        out.append("--untie-embeddings-and-output-weights")
    for flag, key in (("--mamba-d-conv", "conv_kernel"), ("--mamba-chunk-size", "chunk_size")):
        if arch.get(key, MAMBA_DEFAULTS[flag]) != MAMBA_DEFAULTS[flag]:
            out += [flag, str(arch[key])]
    return out


# Older nemotron_h config.json spellings (transformers still reads them) -> today's fields
LEGACY_KEYS = {"mamba_n_groups": "n_groups", "mamba_d_conv": "conv_kernel", "mamba_chunk_size": "chunk_size"}


def checkpoint_fields(hf_config: Dict[str, Any]) -> Dict[str, Any]:
    """A nemotron_h config.json in today's field names: Nemotron-H checkpoints give the layers as
    hybrid_override_pattern (the same symbols) and some dims under their older names."""
    if hf_config.get("model_type") != "nemotron_h":
        return hf_config
    out = dict(hf_config)
    for old, new in LEGACY_KEYS.items():
        if out.get(new) is None and out.get(old) is not None:
            out[new] = out[old]
    pattern = out.get("hybrid_override_pattern")
    if out.get("layers_block_type") is None and isinstance(pattern, str) and set(pattern) <= set(LAYER_TYPES):
        out["layers_block_type"] = [LAYER_TYPES[s] for s in pattern]
    return out
