"""Models with LayerNorm besides GPT-2: GPT-NeoX (rope, GeLU), StableLM (rope, SwiGLU), BLOOM (ALiBi) and OPT (learned
positions without linear biases), flags <-> HF fields.

GPT-NeoX (`gpt_neox`): --position-embedding-type rope with LayerNorm, no --swiglu, biases. Megatron's layer is
sequential (x + attn(ln1(x)), then + mlp(ln2(.))), which is gpt_neox with use_parallel_residual false. Megatron
rotates the first --rotary-percent of each head as two non-interleaved halves with frequencies over that part,
as gpt_neox's partial_rotary_factor does; its fused q/k/v layout is the checkpoint's business, not the forward's.
Dropout: Megatron's --hidden-dropout after the embeddings and after attention and MLP is gpt_neox's
hidden_dropout (emb_dropout, post_attention_dropout, post_mlp_dropout).

StableLM (`stablelm`): --position-embedding-type rope with LayerNorm and --swiglu, the layer Megatron builds for a
Llama-style script that leaves --normalization at its default (LayerNorm). StableLM's layer is sequential too, its
norms are LayerNorms with biases and its MLP is SwiGLU (gate, up, down) without biases; q/k/v may have biases
(--add-qkv-bias), the attention output never does, so the model needs --disable-bias-linear. Partial rotary is
gpt_neox's. Its hidden dropout acts on the MLP output only; Megatron's other two places (embeddings, attention
output) are hooked by the engine (fsdp2_core/models/hidden_dropout.py).

OPT (`opt` with enable_bias false): learned absolute positions, LayerNorm and GeLU with --disable-bias-linear, the
layer GPT-2 has but without linear biases (GPT-2 always has them). OPT's learned positions are looked up two rows
further on (its offset) and its LayerNorms keep eps 1e-5; it drops out the attention and MLP outputs with `dropout`,
and the engine adds Megatron's third place, the embedding output (fsdp2_core/models/hidden_dropout.py). It has one
key/value head per head.

BLOOM (`bloom`, bigscience Megatron-DeepSpeed): --position-embedding-type alibi with --embed-layernorm, LayerNorm,
GeLU, biases, an FFN of 4 × hidden. ALiBi without the embedding LayerNorm (Baichuan-13B) is in no family here.
"""
from typing import Any, Dict, List

from . import ArchitectureError

LAYERNORM_FAMILIES = ("gpt_neox", "stablelm", "bloom")
TANH_GELU = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast")  # Megatron's fused bias-GeLU kernel computes this


def _no_llama_extras(a, family: str, what: str, biases: bool = True, grouped_query: bool = False) -> None:
    """The parts of a Llama-style model that these families lack, named with the flag to drop (`biases`: the family
    always has linear biases; `grouped_query`: it has grouped-query attention)."""
    extras = [(a["routing"], "experts (--num-experts)"), (a["qk_norm"], "--qk-layernorm"),
              (a["mla"], "latent attention (--multi-latent-attention)"),
              (a["window"], "a sliding window (--sliding-window / --window-size)"),
              (a["kv_heads"] != a["heads"] and not grouped_query,
               "grouped-query or multi-query attention (--group-query-attention)"),
              (a["mtp"], "multi-token prediction (--mtp-num-layers)")]
    given = [name for present, name in extras if present]
    if given:
        raise ArchitectureError(f"{what} map to the {family} family, which has no {', '.join(given)}")
    if biases and not a["bias"]:
        raise ArchitectureError(f"{what} map to the {family} family, whose linear layers always have biases; "
                                "drop --disable-bias-linear")
    if a["head_dim"] is not None and a["head_dim"] * a["heads"] != a["hidden"]:
        raise ArchitectureError(f"--kv-channels {a['head_dim']}: the {family} family's heads split --hidden-size "
                                f"{a['hidden']} evenly (--kv-channels × --num-attention-heads = --hidden-size)")


def _activation(a) -> str:
    return "gelu_pytorch_tanh" if a["tanh_gelu"] else "gelu"


def gpt_neox(a) -> Dict[str, Any]:
    what = "rope with LayerNorm and GeLU"
    _no_llama_extras(a, "gpt_neox", what)
    return {
        "model_type": "gpt_neox", "num_hidden_layers": a["layers"], "hidden_size": a["hidden"],
        "num_attention_heads": a["heads"], "intermediate_size": a["ffn"], "hidden_act": _activation(a),
        "max_position_embeddings": a["max_pos"], "layer_norm_eps": a["eps"], "initializer_range": a["std"],
        "tie_word_embeddings": a["tied"], "attention_dropout": a["attn_drop"], "hidden_dropout": a["hidden_drop"],
        "use_parallel_residual": False, "attention_bias": True,
    }


def gpt_neox_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of gpt_neox (rope flags are the caller's)."""
    if arch.get("use_parallel_residual", True):
        raise ArchitectureError("gpt_neox with use_parallel_residual true (Pythia, GPT-NeoX-20B): Megatron's layer "
                                "adds attention and MLP one after the other; no flag computes the parallel residual")
    if not arch.get("attention_bias", True):
        raise ArchitectureError("gpt_neox without attention biases: Megatron's --disable-bias-linear drops the MLP's "
                                "too, which gpt_neox always has")
    return ["--position-embedding-type", "rope", "--num-layers", str(arch["num_hidden_layers"]),
            "--hidden-size", str(arch["hidden_size"]), "--num-attention-heads", str(arch["num_attention_heads"]),
            "--ffn-hidden-size", str(arch["intermediate_size"]),
            "--max-position-embeddings", str(arch["max_position_embeddings"]),
            "--norm-epsilon", str(arch["layer_norm_eps"]), "--init-method-std", str(arch["initializer_range"]),
            "--attention-dropout", str(arch["attention_dropout"]), "--hidden-dropout", str(arch["hidden_dropout"])] \
        + _gelu_flags(arch.get("hidden_act", "gelu")) \
        + ([] if arch.get("tie_word_embeddings", False) else ["--untie-embeddings-and-output-weights"])


def stablelm(a) -> Dict[str, Any]:
    what = "rope with LayerNorm and --swiglu"
    _no_llama_extras(a, "stablelm", what, biases=False, grouped_query=True)
    if a["bias"]:
        raise ArchitectureError(f"{what} map to the stablelm family, whose MLP and attention output have no biases "
                                "(q/k/v may: --add-qkv-bias); add --disable-bias-linear")
    if a["glm_rope"]:
        raise ArchitectureError(f"{what} map to the stablelm family, which rotates the two halves of each head's "
                                "rotary part; drop --use-glm-rope")
    config = {
        "model_type": "stablelm", "num_hidden_layers": a["layers"], "hidden_size": a["hidden"],
        "num_attention_heads": a["heads"], "num_key_value_heads": a["kv_heads"], "intermediate_size": a["ffn"],
        "hidden_act": "silu", "max_position_embeddings": a["max_pos"], "layer_norm_eps": a["eps"],
        "initializer_range": a["std"], "tie_word_embeddings": a["tied"], "attention_dropout": a["attn_drop"],
        "use_qkv_bias": a["qkv_bias"], "qk_layernorm": False, "use_parallel_residual": False,
    }
    if a["hidden_drop"]:  # StableLM's own field: the MLP output here, the rest by fsdp2_core/models/hidden_dropout.py
        config["hidden_dropout"] = a["hidden_drop"]
    return config


def stablelm_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of stablelm (rope flags are the caller's)."""
    if arch.get("use_parallel_residual", False):
        raise ArchitectureError("stablelm with use_parallel_residual true: Megatron's layer adds attention and MLP one "
                                "after the other; no flag computes the parallel residual")
    if arch.get("qk_layernorm", False):
        raise ArchitectureError("stablelm with qk_layernorm: StableLM normalises each head with its own weights, "
                                "Megatron's --qk-layernorm with one weight for all heads")
    if arch.get("hidden_act", "silu") != "silu":
        raise ArchitectureError(f"stablelm with hidden_act {arch['hidden_act']}: Megatron's --swiglu gates with SiLU")
    heads, groups = arch["num_attention_heads"], arch.get("num_key_value_heads") or arch["num_attention_heads"]
    return ["--position-embedding-type", "rope", "--swiglu", "--disable-bias-linear",
            "--num-layers", str(arch["num_hidden_layers"]), "--hidden-size", str(arch["hidden_size"]),
            "--num-attention-heads", str(heads), "--ffn-hidden-size", str(arch["intermediate_size"]),
            "--max-position-embeddings", str(arch["max_position_embeddings"]),
            "--norm-epsilon", str(arch["layer_norm_eps"]), "--init-method-std", str(arch["initializer_range"]),
            "--attention-dropout", str(arch["attention_dropout"]),
            "--hidden-dropout", str(arch.get("hidden_dropout") or 0.0)] \
        + (["--group-query-attention", "--num-query-groups", str(groups)] if groups != heads else []) \
        + (["--add-qkv-bias"] if arch.get("use_qkv_bias") else []) \
        + ([] if arch.get("tie_word_embeddings", False) else ["--untie-embeddings-and-output-weights"])


OPT_NORM_EPS = 1e-5  # OPT's LayerNorms take torch's default eps; no config field sets it


def opt(a) -> Dict[str, Any]:
    what = "learned absolute positions with --disable-bias-linear"
    _no_llama_extras(a, "opt", what, biases=False)
    if a["eps"] != OPT_NORM_EPS:
        raise ArchitectureError(f"--norm-epsilon {a['eps']}: OPT's LayerNorms keep eps 1e-5, which no field of its "
                                "config changes; give --norm-epsilon 1e-5 (Megatron's default)")
    return {
        "model_type": "opt", "num_hidden_layers": a["layers"], "hidden_size": a["hidden"],
        "word_embed_proj_dim": a["hidden"], "num_attention_heads": a["heads"], "ffn_dim": a["ffn"],
        "max_position_embeddings": a["max_pos"], "activation_function": "gelu", "enable_bias": False,
        "do_layer_norm_before": True, "layer_norm_elementwise_affine": True, "init_std": a["std"],
        "tie_word_embeddings": a["tied"], "attention_dropout": a["attn_drop"], "dropout": a["hidden_drop"],
        "activation_dropout": 0.0, "layerdrop": 0.0, "pad_token_id": None,  # Megatron's embedding trains every row
    }


def opt_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of opt."""
    if arch.get("enable_bias", True):
        raise ArchitectureError("opt with enable_bias true: learned positions with biases are the gpt2 family here "
                                "(Megatron's layer adds biases OPT does not have in the same places only with GPT-2's)")
    if not arch.get("do_layer_norm_before", True) or arch.get("word_embed_proj_dim", arch["hidden_size"]) \
            != arch["hidden_size"] or not arch.get("layer_norm_elementwise_affine", True):
        raise ArchitectureError("opt with post-norm layers, a projected word embedding or norms without weights "
                                "(OPT-350m's layout): no Megatron flags compute it")
    if arch.get("activation_function", "relu") != "gelu":
        raise ArchitectureError(f"opt with activation_function {arch.get('activation_function', 'relu')}: Megatron's "
                                "MLP without biases computes exact GeLU (or --swiglu)")
    return ["--position-embedding-type", "learned_absolute", "--disable-bias-linear",
            "--num-layers", str(arch["num_hidden_layers"]), "--hidden-size", str(arch["hidden_size"]),
            "--num-attention-heads", str(arch["num_attention_heads"]), "--ffn-hidden-size", str(arch["ffn_dim"]),
            "--max-position-embeddings", str(arch["max_position_embeddings"]), "--norm-epsilon", str(OPT_NORM_EPS),
            "--init-method-std", str(arch.get("init_std", 0.02)),
            "--attention-dropout", str(arch.get("attention_dropout", 0.0)),
            "--hidden-dropout", str(arch.get("dropout", 0.1))] \
        + ([] if arch.get("tie_word_embeddings", True) else ["--untie-embeddings-and-output-weights"])


def _gelu_flags(act: str) -> List[str]:
    if act in TANH_GELU:
        return []
    if act != "gelu":
        raise ArchitectureError(f"hidden_act {act}: Megatron's GeLU MLP computes exact or tanh GeLU only")
    return ["--no-bias-gelu-fusion"]


BLOOM_EMBED_NORM_EPS = 1e-5  # Megatron-DeepSpeed's embedding LayerNorm keeps torch's default eps


def bloom(a, g) -> Dict[str, Any]:
    """ALiBi with the embedding LayerNorm: BLOOM. transformers builds the ALiBi biases of every head in the model
    and reads no position ids, so tensor and context parallelism and packed documents are refused for it."""
    what = "ALiBi with --embed-layernorm"
    _no_llama_extras(a, "bloom", what)
    if a["ffn"] != 4 * a["hidden"]:
        raise ArchitectureError(f"--ffn-hidden-size {a['ffn']}: BLOOM's MLP is 4 × --hidden-size ({4 * a['hidden']}) "
                                "wide; drop the flag or give that width")
    if not a["tanh_gelu"]:
        raise ArchitectureError("--no-bias-gelu-fusion (exact GeLU): BLOOM computes the tanh approximation, which "
                                "Megatron-DeepSpeed's fused bias-GeLU kernel computes; drop --no-bias-gelu-fusion")
    if a["eps"] != BLOOM_EMBED_NORM_EPS:
        raise ArchitectureError(f"--norm-epsilon {a['eps']}: BLOOM's embedding LayerNorm uses the same eps as its "
                                "layers, where Megatron-DeepSpeed keeps 1e-5 there; give --norm-epsilon 1e-5")
    if a["hidden_drop"] and a["hidden_drop_given"]:
        raise ArchitectureError(f"--hidden-dropout {a['hidden_drop']}: Megatron drops out the embeddings too, which "
                                "BLOOM does not; set --hidden-dropout 0.0 (BLOOM's own value)")
    return {
        "model_type": "bloom", "n_layer": a["layers"], "hidden_size": a["hidden"], "n_head": a["heads"],
        "layer_norm_epsilon": a["eps"], "initializer_range": a["std"], "tie_word_embeddings": a["tied"],
        "attention_dropout": a["attn_drop"], "hidden_dropout": 0.0,
        "apply_residual_connection_post_layernorm": False,
    }


def bloom_flags(arch: Dict[str, Any]) -> List[str]:
    """Inverse of bloom."""
    if arch.get("apply_residual_connection_post_layernorm"):
        raise ArchitectureError("bloom with apply_residual_connection_post_layernorm: no flag translated here takes "
                                "the residual after the LayerNorm")
    hidden = arch["hidden_size"]
    return ["--position-embedding-type", "alibi", "--embed-layernorm", "--num-layers", str(arch["n_layer"]),
            "--hidden-size", str(hidden), "--num-attention-heads", str(arch["n_head"]),
            "--ffn-hidden-size", str(4 * hidden), "--norm-epsilon", str(arch["layer_norm_epsilon"]),
            "--init-method-std", str(arch["initializer_range"]), "--attention-dropout", str(arch["attention_dropout"]),
            "--hidden-dropout", "0.0"] \
        + ([] if arch.get("tie_word_embeddings", True) else ["--untie-embeddings-and-output-weights"])
