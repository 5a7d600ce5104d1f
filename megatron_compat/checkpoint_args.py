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

from .architecture import ArchitectureError, build_architecture
from .flag_spec import all_specs, spec_for
from .mapping import ARCH_FLAGS

# Flags beyond the architecture rows that the translation reads.
EXTRA_FLAGS = ("--seq-length", "--padded-vocab-size", "--make-vocab-size-divisible-by", "--tensor-model-parallel-size",
               "--no-bias-gelu-fusion", "--norm-topk-prob", "--first-k-dense-replace")

# Saved args that describe a model no family here builds: (dest, value test, what it is).
UNSUPPORTED = (
    ("multi_latent_attention", bool, "Multi-Latent Attention (DeepSeek-V2/V3)"),
    ("is_hybrid_model", bool, "a hybrid Mamba model"),
    ("hybrid_override_pattern", bool, "a hybrid Mamba model"),
    ("mtp_num_layers", bool, "multi-token prediction layers"),
    ("moe_shared_expert_intermediate_size", bool, "shared experts"),
    ("moe_router_score_function", lambda v: v not in (None, "softmax"), "a non-softmax router score function"),
    ("moe_router_topk_scaling_factor", lambda v: v not in (None, 1, 1.0), "scaled router weights"),
    ("moe_router_enable_expert_bias", bool, "router expert bias (aux-loss-free balancing)"),
    ("moe_router_num_groups", bool, "group-limited routing"),
    ("rotary_interleaved", bool, "interleaved rotary embeddings"),
    ("apply_layernorm_1p", bool, "zero-centred layer norms (apply_layernorm_1p)"),
    ("use_rope_scaling", bool, "Llama-3.1 rope scaling"),
    ("openai_gelu", bool, "OpenAI's GeLU"),
    ("squared_relu", bool, "squared ReLU"),
    ("qk_l2_norm", bool, "L2-normalised queries and keys"),
    ("window_size", bool, "sliding-window attention"),
    ("heterogeneous_layers_config_path", bool, "heterogeneous layers"),
    ("experimental_attention_variant", bool, "an experimental attention variant"),
    ("softmax_type", lambda v: v not in (None, "vanilla"), "a non-standard attention softmax"),
    ("apply_residual_connection_post_layernorm", bool, "residuals taken after the layer norm"),
)


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


def unsupported(args) -> List[str]:
    """What in the saved args no model family here builds, as 'dest = value (what)' lines."""
    out = []
    for dest, test, what in UNSUPPORTED:
        value = getattr(args, dest, None)
        if value is not None and test(value):
            out.append(f"{dest} = {value!r} ({what})")
    if getattr(args, "num_experts", None) and getattr(args, "moe_router_pre_softmax", False) \
            and not getattr(args, "qk_layernorm", False):
        out.append("moe_router_pre_softmax = True (Mixtral always renormalises its top-k weights)")
    return out


def architecture_from_args(args, where: str) -> Tuple[Dict[str, Any], List[str]]:
    """(Hugging Face config dict, notes) for the model Megatron's saved `args` describe."""
    problems = unsupported(args)
    if problems:
        raise ArchitectureError(f"{where}: the saved args describe a model the engine does not build: "
                                + "; ".join(problems) + ". Use Megatron-LM for this model")
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
