"""Models with LayerNorm besides GPT-2: GPT-NeoX (rope, GeLU), StableLM (rope, SwiGLU) and BLOOM (ALiBi), flags <->
HF fields.

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
