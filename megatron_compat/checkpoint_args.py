"""The `args` a Megatron checkpoint saved, as the flags that produced them, and back.

Megatron stores its parsed command line (an argparse.Namespace of destination names)
in every checkpoint. `flags_from_args` turns it back into the architecture flags a launch
script would carry, keeping only values that differ from Megatron's defaults, as a user's
script does, and `architecture_from_args` feeds them to the same translation the flags
use (architecture.build_architecture). `args_from_flags` goes the other way for writing a
checkpoint Megatron loads: every Megatron destination at its default, the given flags
applied.
"""
import argparse
from typing import Any, Dict, List, Tuple

from .arch.moe import SIGMOID_FAMILIES
from .architecture import ArchitectureError, build_architecture
from .flag_spec import all_specs, spec_for
from .mapping import ARCH_FLAGS
from .reverse import architecture_flags

# Flags beyond the architecture rows that the translation reads.
EXTRA_FLAGS = ("--seq-length", "--padded-vocab-size", "--make-vocab-size-divisible-by", "--tensor-model-parallel-size",
               "--no-bias-gelu-fusion", "--norm-topk-prob", "--first-k-dense-replace", "--apply-layernorm-1p")

# Saved args that describe a model no family here builds: (dest, value test, what it is).
UNSUPPORTED = (
    ("moe_router_score_function", lambda v: v not in (None, "softmax", "sigmoid"),
     "a router score function other than softmax and sigmoid"),
    ("rotary_interleaved", bool, "interleaved rotary embeddings"),
    ("apply_layernorm_1p", bool, "zero-centred layer norms (apply_layernorm_1p)"),
    ("openai_gelu", bool, "OpenAI's GeLU"),
    ("squared_relu", bool, "squared ReLU"),
    ("qk_l2_norm", bool, "L2-normalised queries and keys"),
    ("heterogeneous_layers_config_path", bool, "heterogeneous layers"),
    ("experimental_attention_variant", lambda v: v not in ("dsa", "gated_delta_net"),
     "an experimental attention variant"),
    # gpt-oss's learnable softmax offsets are translated (arch/gpt_oss.py); off-by-one has no family
    ("softmax_type", lambda v: v not in (None, "vanilla", "learnable"), "an off-by-one attention softmax"),
    ("apply_residual_connection_post_layernorm", bool, "residuals taken after the layer norm"),
    ("layernorm_zero_centered_gamma", bool, "zero-centred layer norms (--apply-layernorm-1p)"),
)
# Qwen3-Next's norms compute x·(1 + w) as zero-centred norms do: for Gated DeltaNet models these rows are the
# mapping (the weights copy as they are), and a model without them is refused (its norms would need w - 1)
ZERO_CENTRED = ("apply_layernorm_1p", "layernorm_zero_centered_gamma")

# Saved args of families the engine trains (from flags or a Hugging Face model) whose Megatron tensors are not
# mapped here, because megatron-core 0.16.1 gives no reference to prove a mapping against on this project's
# machines: (dest, value test, the family and why).
UNMAPPED = (
    ("is_hybrid_model", bool, "a hybrid Mamba model (Mamba mixers are not mapped)"),
    ("hybrid_override_pattern", bool, "a hybrid Mamba model (Mamba mixers are not mapped)"),
    ("experimental_attention_variant", lambda v: v == "dsa",
     "DeepSeek Sparse Attention (DeepSeek-V3.2 / GLM-5): megatron-core builds its indexer only with "
     "fast_hadamard_transform on a GPU"),
    ("spec", lambda v: any("minimax" in str(w).lower() for w in (v if isinstance(v, (list, tuple)) else [v])),
     "a MiniMax-M2 layer spec from outside megatron-core, whose tensor names and tensor-parallel layout of the "
     "q/k norms over all heads are its own"),
)
# The same families by Hugging Face model_type, for --to-megatron.
UNMAPPED_FAMILIES = {
    "nemotron_h": "a hybrid Mamba model (Mamba mixers are not mapped)",
    "deepseek_v32": "DeepSeek Sparse Attention: megatron-core builds its indexer only with fast_hadamard_transform on "
                    "a GPU",
    "glm_moe_dsa": "DeepSeek Sparse Attention: megatron-core builds its indexer only with fast_hadamard_transform on "
                   "a GPU",
    "minimax_m2": "megatron-core has no MiniMax-M2 layer spec (its public Megatron recipes bring their own)",
}


def _dest(flag: str) -> str:
    spec = spec_for(flag)
    return (spec.dest if spec is not None and spec.dest else "") or flag[2:].replace("-", "_")


def flags_from_args(args) -> Dict[str, Any]:
    """The architecture flags (typed, as argv.parse_argv gives them) that Megatron's saved `args` mean."""
    given: Dict[str, Any] = {}
    for flag in list(ARCH_FLAGS) + list(EXTRA_FLAGS):
        spec, dest = spec_for(flag), _dest(flag)
        if spec is None or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if not spec.takes_value:
            if (value is False) if spec.negates else bool(value):
                given[flag] = True
        elif value is not None and not _is_default(value, spec.default):
            given[flag] = value
    if getattr(args, "apply_layernorm_1p", False):  # older Megatron-LM's own dest for --apply-layernorm-1p
        given["--apply-layernorm-1p"] = True
    if getattr(args, "num_experts", None) and not hasattr(args, "norm_topk_prob"):
        # Megatron's router: top-k of the logits, then a softmax over those k (weights sum to 1), unless
        # --moe-router-pre-softmax takes the softmax over all experts first.
        if not getattr(args, "moe_router_pre_softmax", False):
            given["--norm-topk-prob"] = True
    return given


def _is_default(value, default) -> bool:
    if isinstance(value, list) and not isinstance(default, list):
        return len(value) == 1 and _is_default(value[0], default)
    try:
        return float(value) == float(default)
    except (TypeError, ValueError):
        return str(value) == str(default)


def is_gated_delta_net(args) -> bool:
    return getattr(args, "experimental_attention_variant", None) == "gated_delta_net"


def unsupported(args, rows=UNSUPPORTED) -> List[str]:
    """What in the saved args matches `rows` (by default: what no model family here builds), as
    'dest = value (what)' lines."""
    out = []
    gdn = is_gated_delta_net(args)
    if gdn and rows is UNSUPPORTED and not any(getattr(args, dest, False) for dest in ZERO_CENTRED):
        out.append("experimental_attention_variant = 'gated_delta_net' with layernorm_zero_centered_gamma = False "
                   "(Qwen3-Next's norms compute x·(1 + w); its Megatron checkpoints are mapped from "
                   "--apply-layernorm-1p runs only)")
    for dest, test, what in rows:
        if gdn and dest in ZERO_CENTRED:
            continue
        value = getattr(args, dest, None)
        if value is not None and test(value):
            out.append(f"{dest} = {value!r} ({what})")
    return out


def architecture_from_args(args, where: str) -> Tuple[Dict[str, Any], List[str]]:
    """(Hugging Face config dict, notes) for the model Megatron's saved `args` describe."""
    problems = unsupported(args)
    if problems:
        raise ArchitectureError(f"{where}: the saved args describe a model the engine does not build: "
                                + "; ".join(problems) + ". Use Megatron-LM for this model")
    unmapped = unsupported(args, UNMAPPED)
    if unmapped:
        raise ArchitectureError(f"{where}: the saved args describe " + "; ".join(unmapped) + ". The engine trains "
                                "this family, but its Megatron checkpoints are not mapped here: convert the "
                                "checkpoint to Hugging Face with the converter of the project that trained it and "
                                "pass --load <that directory>")
    given = flags_from_args(args)
    try:
        return build_architecture(given, getattr(args, "seq_length", None),
                                  int(getattr(args, "tensor_model_parallel_size", 1) or 1))
    except ArchitectureError as exc:
        raise ArchitectureError(f"{where}: the saved args give flags {_show(given)}: {exc}") from None


def _show(given: Dict[str, Any]) -> str:
    return " ".join(flag if value is True else f"{flag} {value}" for flag, value in given.items())


def args_from_flags(argv: List[str]) -> argparse.Namespace:
    """A Namespace with every Megatron-LM destination at its default, then `argv` (flags and values) applied."""
    defaults: Dict[str, Any] = {}
    for flag, spec in all_specs().items():
        if spec.source == "megatron_lm_flags.tsv" and not (spec.negates and flag.startswith("--no-") and
                                                             _dest(flag) in defaults):
            default = spec.default if spec.takes_value or isinstance(spec.default, bool) else False
            defaults.setdefault(_dest(flag), default)
    ns = argparse.Namespace(**defaults)
    i = 0
    while i < len(argv):
        flag = argv[i]
        spec = spec_for(flag)
        if spec is None:
            raise ValueError(f"{flag}: not a Megatron flag")
        dest = _dest(flag)
        if not spec.takes_value:
            setattr(ns, dest, not spec.negates)
            i += 1
            continue
        j = i + 1
        while j < len(argv) and not argv[j].startswith("--"):
            j += 1
        convert = {"int": int, "float": float}.get(spec.kind, str)
        values = [convert(v) for v in argv[i + 1:j]]
        setattr(ns, dest, values if spec.nargs is not None else values[0])
        i = j
    return ns


def arch_for(ckpt) -> Tuple[Dict[str, Any], List[str]]:
    """(Hugging Face config dict, notes) of the model a MegatronCheckpoint holds: the saved args' architecture,
    with the vocabulary the stored embedding has (Megatron's padded size)."""
    arch, notes = architecture_from_args(ckpt.args, ckpt.path)
    arch = dict(arch)
    rows = int(ckpt.reader.get("embedding.word_embeddings.weight").shape[0])
    saved = getattr(ckpt.args, "padded_vocab_size", None)
    if saved and int(saved) != rows:
        notes.append(f"the saved args say padded_vocab_size {saved}; the stored embedding has {rows} rows (used)")
    arch["vocab_size"] = rows
    depths = int(getattr(ckpt.args, "mtp_num_layers", None) or 0)
    if depths:  # the MTP layers (mtp.layers.*) become model.layers.<L+k> (models/mtp.py)
        arch["num_nextn_predict_layers"] = depths
    return arch, notes


def hf_config_for(ckpt):
    """(transformers config, notes) of the model a MegatronCheckpoint holds (see arch_for)."""
    from transformers import AutoConfig
    arch, notes = arch_for(ckpt)
    model_type = arch.pop("model_type")
    return AutoConfig.for_model(model_type, **arch), notes


_ARCH_KEYS = ("model_type", "n_layer", "n_embd", "n_head", "n_inner", "n_positions", "layer_norm_epsilon",
              "resid_pdrop", "attn_pdrop", "initializer_range", "activation_function", "num_hidden_layers",
              "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
              "max_position_embeddings", "rms_norm_eps", "attention_dropout", "rope_parameters", "tie_word_embeddings",
              "mlp_bias", "attention_bias", "num_local_experts", "num_experts", "num_experts_per_tok",
              "router_aux_loss_coef", "output_router_logits", "moe_intermediate_size", "norm_topk_prob",
              "mlp_only_layers", "decoder_sparse_step", "qkv_bias", "use_qk_norm", "sliding_window",
              # shared experts, the sigmoid router and Multi-Latent Attention (Qwen2-MoE, GLM-4.5, DeepSeek-V3)
              "shared_expert_intermediate_size", "n_routed_experts", "n_shared_experts", "routed_scaling_factor",
              "n_group", "topk_group", "first_k_dense_replace", "num_nextn_predict_layers", "q_lora_rank",
              "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "rope_interleave",
              "swiglu_limit", "layer_types",  # gpt-oss: the GLU clamp, which layers take the sliding window
              # Qwen3-Next's Gated DeltaNet layers (layer_types: which are linear attention)
              "linear_conv_kernel_dim", "linear_key_head_dim", "linear_value_head_dim", "linear_num_key_heads",
              "linear_num_value_heads",
              # StableLM: LayerNorm with SwiGLU (its own eps name), q/k/v biases, the layer's checks
              "layer_norm_eps", "use_qkv_bias", "qk_layernorm", "use_parallel_residual", "hidden_act",
              # OPT: learned positions without linear biases
              "ffn_dim", "enable_bias", "do_layer_norm_before", "word_embed_proj_dim", "layer_norm_elementwise_affine",
              "init_std", "dropout")


def config_arch(config) -> Dict[str, Any]:
    """The fields of a transformers config that architecture_flags reads (num_local_experts for either MoE family)."""
    arch = {k: getattr(config, k) for k in _ARCH_KEYS if hasattr(config, k)}
    if arch.get("model_type") == "gpt2":
        arch["n_inner"] = arch.get("n_inner") or 4 * config.n_embd  # transformers' default for n_inner None
        return arch
    arch["head_dim"] = arch.get("head_dim") or config.hidden_size // config.num_attention_heads
    if not arch.get("rope_parameters"):
        arch["rope_parameters"] = {"rope_theta": getattr(config, "rope_theta", 10000.0)}
    arch["num_local_experts"] = arch.get("num_local_experts") or arch.get("num_experts")
    return arch


def megatron_args_for(config, tp: int, pp: int, fmt: str, spec: str, divisible_by: int = 128,
                      iteration: int = 0, consumed_train_samples: int = 0):
    """The Namespace a Megatron-LM run of `config`'s model would save with these parallel sizes, checked to mean
    the same model when read back (a config Megatron cannot express is refused, naming the fields)."""
    if config.model_type in UNMAPPED_FAMILIES:
        raise ArchitectureError(f"model_type {config.model_type}: {UNMAPPED_FAMILIES[config.model_type]}, so its "
                                "Megatron-LM checkpoints are not written here; the engine trains the Hugging Face "
                                "model itself (--load <this directory>)")
    arch = config_arch(config)
    try:
        flags = architecture_flags(arch)
    except KeyError as exc:
        raise ArchitectureError(f"{config.model_type} config lacks {exc}; it has no Megatron-LM form here") from None
    if arch.get("num_nextn_predict_layers"):  # MTP layers (models/mtp.py) are Megatron's mtp.layers.*
        flags += ["--mtp-num-layers", str(arch["num_nextn_predict_layers"])]
    seq = arch.get("max_position_embeddings") or arch.get("n_positions")
    flags += ["--tensor-model-parallel-size", str(tp), "--pipeline-model-parallel-size", str(pp), "--ckpt-format", fmt,
              "--make-vocab-size-divisible-by", str(divisible_by), "--seq-length", str(seq),
              "--transformer-impl", "transformer_engine" if spec == "te" else "local"]
    args = args_from_flags(flags)
    _derive(args, tp, pp, fmt)
    if arch.get("num_local_experts"):  # Megatron renormalises the top-k weights unless it takes the softmax first
        args.moe_router_pre_softmax = not (arch["model_type"] in ("mixtral", "gpt_oss") or arch.get("norm_topk_prob"))
    if arch["model_type"] in SIGMOID_FAMILIES and arch.get("first_k_dense_replace", 0) < arch["num_hidden_layers"]:
        # the routers hold an expert bias (e_score_correction_bias), which Megatron keeps only with expert bias on
        args.moe_router_enable_expert_bias = True
    if arch.get("num_local_experts") and args.add_bias_linear:  # gpt-oss: megatron-core builds MoE biases only
        args.expert_tensor_parallel_size = 1                      # with whole experts on every tensor-parallel rank
    if isinstance(getattr(args, "linear_attention_freq", None), str):  # Megatron-LM parses it to an int or a list
        text = args.linear_attention_freq
        args.linear_attention_freq = int(text) if "[" not in text else \
            [int(t == "linear_attention") for t in arch["layer_types"]]
    args.iteration, args.consumed_train_samples = iteration, consumed_train_samples
    back, _ = architecture_from_args(args, "the written args")
    differences = [f"{k}: config {_norm(arch.get(k))!r}, Megatron {_norm(v)!r}" for k, v in back.items()
                   if k in arch and arch.get(k) is not None and _norm(arch.get(k)) != _norm(v)]
    if differences:
        raise ArchitectureError(f"the {config.model_type} config has no exact Megatron-LM form: "
                                + "; ".join(differences))
    return args


def _norm(value):
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items() if k != "rope_type"}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def _derive(args, tp: int, pp: int, fmt: str) -> None:
    """What Megatron's validate_args fills in before a checkpoint is saved."""
    import torch
    args.kv_channels = args.kv_channels or args.hidden_size // args.num_attention_heads
    if not args.group_query_attention:
        args.num_query_groups = args.num_attention_heads
    if args.ffn_hidden_size is None:
        args.ffn_hidden_size = 4 * args.hidden_size
    if args.add_bias_linear:
        args.add_qkv_bias = True
    else:
        args.bias_gelu_fusion = False
    args.max_position_embeddings = args.max_position_embeddings or args.seq_length
    args.params_dtype = torch.float32
    args.use_dist_ckpt = fmt == "torch_dist"
    args.world_size = tp * pp
    args.data_parallel_size = 1
    args.virtual_pipeline_model_parallel_size = None
