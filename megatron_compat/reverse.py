"""The reverse: a canonical config -> the Megatron flags that mean it, read from the registry's rows.

Plain and switch rows of `mapping.MAPPED_RULES` are inverted generically (the field's value through the row's
converter; a switch where the config holds the value it sets); each group of rows has its inverse in
GROUP_REVERSE. A flag is written only where the config differs from what the Megatron dialect gives without
it. Stable by construction and by test (tests/test_mapping_rows.py): flags -> config -> flags -> config gives
the same config. Fields that no row writes are returned apart: they stay in the YAML.
"""
from typing import Any, Dict, List, Set, Tuple

from fsdp2_core.config import TrainConfig, config_to_sections
from fsdp2_core.config.batch_schedule import StepBatchSchedule
from fsdp2_core.data.mindspeed.instruction import PROMPT_TYPES

from .arch import ArchitectureError
from .arch.attention import mla_flags, sliding_window_flags
from .arch.dsa import DSA_FAMILIES, dsa_flags
from .arch.gemma import gemma_flags
from .arch.gpt_oss import gpt_oss_flags
from .arch.hybrid import hybrid_flags
from .arch.layernorm import bloom_flags, gpt_neox_flags, opt_flags, stablelm_flags
from .arch.linear_attention import is_dense, linear_attention_flags
from .arch.minicpm import minicpm_flags
from .arch.module_names import fsdp_units, llama_pattern
from .arch.moe import ENGINE_MODEL_ID, SIGMOID_FAMILIES, moe_flags, training_flags
from .arch.rope import rope_scaling_flags
from .mapping import GROUP_FIELDS, MAPPED_RULES
from .translate import MEGATRON_DEFAULT_SPLIT, MEGATRON_DEFAULTS


def to_megatron(cfg: TrainConfig) -> Tuple[List[str], List[str]]:
    """Return (argv, fields kept only in YAML because Megatron has no flag for them)."""
    flat = {name: value for part in config_to_sections(cfg).values() for name, value in part.items()}
    baseline = _dialect_baseline(flat)
    argv: List[str] = []
    written: Set[str] = set()
    groups_done: Set[str] = set()
    for rule in MAPPED_RULES:
        if rule.kind == "group":
            if rule.group not in groups_done:
                groups_done.add(rule.group)
                words = GROUP_REVERSE[rule.group](flat, baseline)
                argv += words
                if words:  # a group that wrote nothing leaves its differing fields to the YAML
                    written.update(GROUP_FIELDS[rule.group])
        elif rule.kind in ("plain", "switch"):
            words = _row_flags(rule, flat, baseline)
            if words:
                argv += words
                written.update([rule.field] + [name for name, _ in rule.also])
    leftover = [name for name, value in flat.items() if value != baseline.get(name) and name not in written]
    return argv, leftover


def _row_flags(rule, flat, baseline) -> List[str]:
    """The argv one plain or switch row writes for this config: nothing where the dialect already gives it."""
    value = flat[rule.field]
    if any(flat[name] != fixed for name, fixed in rule.also):
        return []  # e.g. --data-path only for Megatron data (data_manager_type mg)
    if rule.kind == "switch":
        return [rule.flags[0]] if value == rule.value and baseline.get(rule.field) != rule.value else []
    if value is None or value == baseline.get(rule.field):
        return []
    return [rule.flags[0]] + _words(rule.convert.backward(value))


def _dialect_baseline(flat: Dict[str, Any]) -> Dict[str, Any]:
    """What the Megatron dialect gives each field when no flag sets it (translate._merge)."""
    base = {name: value for part in config_to_sections(TrainConfig()).values() for name, value in part.items()}
    base.update(MEGATRON_DEFAULTS)
    if flat["data_manager_type"] == "mg" and flat["dataset"]:
        base["split"] = MEGATRON_DEFAULT_SPLIT  # Megatron's split once --data-path is given
    units = fsdp_units((flat.get("architecture") or {}).get("model_type"))
    if units:  # the translation names the FSDP units of families not laid out like Llama
        base["fsdp_modules"] = units
    return base


def _words(value) -> List[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return [str(int(value))]
    return [str(value)]


def _precision(f, base):
    return {"bf16": ["--bf16"], "fp16": ["--fp16"]}.get(f["param_dtype"], [])


def _fp8(f, base):
    """The --fp8-* flags; they mean something only with --fp8-format (quant_recipe mxfp8 stays in YAML)."""
    if not f["fp8_format"]:
        return []
    out = ["--fp8-format", f["fp8_format"]]
    if f["fp8_recipe"] != "delayed":
        out += ["--fp8-recipe", f["fp8_recipe"]]
    if f["fp8_amax_history_len"] != 1:
        out += ["--fp8-amax-history-len", str(f["fp8_amax_history_len"])]
    if f["fp8_amax_compute_algo"] != "most_recent":
        out += ["--fp8-amax-compute-algo", f["fp8_amax_compute_algo"]]
    return out + (["--fp8-param-gather"] if f["fp8_param_gather"] else []) + _bf16_ends(f)


def _bf16_ends(f):
    """quant_ignored_modules naming the first N and last M decoder layers: --first-last-layers-bf16."""
    ignored, layers = list(f["quant_ignored_modules"] or []), _num_layers(f.get("architecture"))
    kept = [m for m in ignored if m != "lm_head"]
    if not kept or not layers:
        return []
    for start in range(len(kept) + 1):
        end = len(kept) - start
        if kept == [f"model.layers.{i}" for i in list(range(start)) + list(range(layers - end, layers))]:
            return (["--first-last-layers-bf16"] + (["--num-layers-at-start-in-bf16", str(start)] if start != 1 else [])
                    + (["--num-layers-at-end-in-bf16", str(end)] if end != 1 else []))
    return []


def _steps_flag(value, gbs, iters_flag, samples_flag):
    if float(value).is_integer():
        return [iters_flag, str(int(value))]
    return [samples_flag, str(round(value * gbs))]  # fractional steps came from a sample count


def _steps(f, base):
    if f["train_samples"]:
        out = ["--train-samples", str(f["train_samples"])]  # max_steps is derived from it
    else:
        out = ["--train-iters", str(f["max_steps"])] if f["max_steps"] and f["max_steps"] > 0 else []
    gbs = f["global_batch_size"] or 1
    for name, iters, samples in (("lr_decay_steps", "--lr-decay-iters", "--lr-decay-samples"),
                                 ("lr_warmup_steps", "--lr-warmup-iters", "--lr-warmup-samples"),
                                 ("lr_wsd_decay_steps", "--lr-wsd-decay-iters", "--lr-wsd-decay-samples")):
        if f[name] is not None:
            out += _steps_flag(f[name], gbs, iters, samples)
    return out


def _batch_schedule(f, base):
    if f["rampup_batch_size"]:
        return ["--rampup-batch-size"] + _words(f["rampup_batch_size"])
    return ["--step-batch-size-schedule", f["step_batch_size_schedule"]] if f["step_batch_size_schedule"] else []


def _decoupled(f, base):
    return ["--decoupled-min-lr"] + _words(f["decoupled_min_lr"]) if f["decoupled_min_lr"] is not None else []


def _batch(f, base):
    gbs = f["global_batch_size"]
    schedule = f["step_batch_size_schedule"]
    if schedule and gbs != StepBatchSchedule(schedule, f["cutoff_len"]).final:
        return []  # Megatron's default beside a step schedule (micro × dp); Megatron refuses any other with it
    return ["--global-batch-size", str(gbs)] if gbs is not None and gbs != base.get("global_batch_size") else []


def _stage(f, base):
    return ["--stage", f["stage"]] if f["stage"] == "sft" else []


def _instruction(f, base):
    out = ["--is-instruction-dataset"] if f["is_instruction_dataset"] else []
    if f["template"] is not None and f["template"] != base.get("template"):
        prompt_types = {ours: theirs for theirs, ours in PROMPT_TYPES.items()}
        out += ["--prompt-type", prompt_types.get(f["template"], f["template"])]
    if f["enable_thinking"] != base.get("enable_thinking"):
        out += ["--enable-thinking", str(f["enable_thinking"]).lower()]
    return out


def _lora(f, base):
    """MindSpeed-LLM's LoRA flags; rank 16, alpha 32 and dropout 0 are its defaults, written only when they differ."""
    if not f["lora_target_modules"]:
        return []
    out = ["--lora-target-modules"] + _words(f["lora_target_modules"])
    for name, flag, default in (("lora_r", "--lora-r", 16), ("lora_alpha", "--lora-alpha", 32),
                                ("lora_dropout", "--lora-dropout", 0.0)):
        if f[name] != default:
            out += [flag] + _words(f[name])
    return out


def _tokenizer(f, base):
    model = f["tokenizer_model"]
    return ["--tokenizer-model", model] if model is not None and model != base.get("tokenizer_model") else []


def _load(f, base):
    finetune = ["--finetune"] if f["finetune"] else []
    if f["resume_from_checkpoint"] == "latest" and f["output_dir"]:
        return ["--load", f["output_dir"]] + finetune
    if f["model_name_or_path"]:
        return ["--load", f["model_name_or_path"]] + finetune
    return finetune


def _weighted_split(f, base):
    """The groups inline (a -path file's content was read into the config at translation), or the file the config
    names when it was not read."""
    words = []
    for split in ("train", "valid", "test"):
        inline, path = f[f"{split}_weighted_split_paths"], f[f"{split}_weighted_split_paths_path"]
        if path:
            words += [f"--{split}-weighted-split-paths-path", path]
        elif inline:
            words += [f"--{split}-weighted-split-paths", *([inline] if split == "train" else inline)]
    return words


def _save_parts(f, base):
    return [flag for name, flag in (("save_optim", "--no-save-optim"), ("save_rng", "--no-save-rng")) if not f[name]]


def _optimizer(f, base):
    return ["--optimizer", "sgd"] if f["optimizer"] == "sgd" else []


def _dataloader(f, base):
    return ["--dataloader-type", "cyclic"] if f["dataloader_type"] == "cyclic" else []


def _loss_scale(f, base):
    flags = {"loss_scale": "--loss-scale", "initial_loss_scale": "--initial-loss-scale",
             "min_loss_scale": "--min-loss-scale", "loss_scale_window": "--loss-scale-window",
             "hysteresis": "--hysteresis"}
    return [w for name, flag in flags.items() if f[name] is not None and f[name] != base.get(name)
            for w in (flag, _number(f[name]))]


def _number(value) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _nothing(f, base):
    """Groups whose every value is what the dialect gives without flags (one choice only), or folded away."""
    return []


def _recompute(f, base):
    if not f["recompute"]:
        return []
    model_type = (f.get("architecture") or {}).get("model_type")
    modules = [llama_pattern(model_type, m) for m in f["recompute_modules"]]
    if modules == ["model.layers.{*}"]:
        return ["--recompute-granularity", "full", "--recompute-method", "uniform"]
    names = {"model.layers.{*}.self_attn": "core_attn", "model.layers.{*}.mlp": "mlp",
             "model.layers.{*}.input_layernorm": "layernorm", "model.layers.{*}.post_attention_layernorm": "layernorm"}
    if all(m in names for m in modules):
        chosen = list(dict.fromkeys(names[m] for m in modules))
        return ["--recompute-granularity", "selective", "--recompute-modules"] + chosen
    return _block_recompute(modules, _num_layers(f.get("architecture")))


def _num_layers(arch):
    return (arch or {}).get("num_hidden_layers") or (arch or {}).get("n_layer")


def _dense_layer_flags(dense, layers):
    """Inverse of arch.moe.dense_layers: --first-k-dense-replace / --moe-layer-freq N where they say it, else
    Megatron's list form of --moe-layer-freq (1 marks an MoE layer)."""
    if not dense:
        return []
    for first_k in range(layers + 1):
        for freq in range(1, layers + 1):
            if sorted(set(range(first_k)) | {i for i in range(layers) if freq > 1 and i % freq}) == list(dense):
                return ["--first-k-dense-replace", str(first_k)] + (["--moe-layer-freq", str(freq)] if freq > 1 else [])
    return ["--moe-layer-freq", "[" + ",".join("0" if i in dense else "1" for i in range(layers)) + "]"]


def _block_recompute(modules, layers):
    """Find the Megatron block recompute (first N layers of each of P stages) that names these layers."""
    wanted = set(modules)
    for stages in range(1, (layers or 0) + 1):
        if layers % stages:
            continue
        per_stage = layers // stages
        for n in range(1, per_stage):
            if wanted == {f"model.layers.{i}" for i in range(layers) if i % per_stage < n}:
                pipeline = ["--pipeline-model-parallel-size", str(stages)] if stages > 1 else []
                return ["--recompute-granularity", "full", "--recompute-method",
                        "block", "--recompute-num-layers", str(n)] + pipeline
    return []  # any other per-layer list stays in the YAML only


TANH_GELU = ("gelu_pytorch_tanh", "gelu_new")  # what Megatron's fused bias-GeLU computes


def architecture_flags(arch, values=None) -> List[str]:
    """Inverse of architecture.build_architecture and engine_fields (`values`: the flat config)."""
    values = values or {}
    out = _engine_flags(values, arch)
    if not arch:
        return out
    if arch["model_type"] == "nemotron_h":
        return out + hybrid_flags(arch)
    if arch["model_type"] == "gpt_bigcode" and not arch.get("multi_query", True):
        raise ArchitectureError("gpt_bigcode without multi_query is GPT-2: convert it as model_type gpt2")
    if arch["model_type"] in ("gpt2", "gpt_bigcode"):
        mqa = ["--group-query-attention", "--num-query-groups", "1"] if arch["model_type"] == "gpt_bigcode" else []
        untie = [] if arch.get("tie_word_embeddings", True) else ["--untie-embeddings-and-output-weights"]
        return out + mqa + untie + ["--num-layers", str(arch["n_layer"]), "--hidden-size", str(arch["n_embd"]),
                      "--num-attention-heads", str(arch["n_head"]), "--ffn-hidden-size", str(arch["n_inner"]),
                      "--max-position-embeddings", str(arch["n_positions"]),
                      "--norm-epsilon", str(arch["layer_norm_epsilon"]), "--hidden-dropout", str(arch["resid_pdrop"]),
                      "--attention-dropout", str(arch["attn_pdrop"]),
                      "--init-method-std", str(arch["initializer_range"])] + (
            [] if arch.get("activation_function", "gelu_new") in TANH_GELU else ["--no-bias-gelu-fusion"])
    family = arch["model_type"]
    if family == "bloom":
        return out + bloom_flags(arch)
    if family == "opt":
        return out + opt_flags(arch)
    if family == "gpt_neox":
        return out + gpt_neox_flags(arch) + _rope_flags(arch["rope_parameters"], family)
    if family == "stablelm":
        return out + stablelm_flags(arch) + _rope_flags(arch["rope_parameters"], family)
    rope = arch["rope_parameters"]
    gpt_oss = family == "gpt_oss"
    out += ["--position-embedding-type", "rope", "--normalization", "RMSNorm"]
    out += gemma_flags(arch) if family in ("gemma", "gemma2") else gpt_oss_flags(arch) if gpt_oss else ["--swiglu"]
    out += ["--num-layers", str(arch["num_hidden_layers"]), "--hidden-size", str(arch["hidden_size"]),
            "--ffn-hidden-size", str(arch["intermediate_size"]),
            "--num-attention-heads", str(arch["num_attention_heads"]),
            "--max-position-embeddings", str(arch["max_position_embeddings"]),
            "--norm-epsilon", str(arch["rms_norm_eps"]), "--init-method-std", str(arch["initializer_range"]),
            "--attention-dropout", str(arch["attention_dropout"]),
            "--hidden-dropout", str(arch.get("hidden_dropout") or 0.0)]  # Megatron's own default would be 0.1
    if family in ("deepseek_v3", "deepseek_v2") + DSA_FAMILIES:
        out += mla_flags(arch) + (dsa_flags(arch, values) if family in DSA_FAMILIES else [])
    else:
        out += ["--kv-channels", str(arch["head_dim"])]
    if arch["num_key_value_heads"] != arch["num_attention_heads"]:
        out += ["--group-query-attention", "--num-query-groups", str(arch["num_key_value_heads"])]
    out += _rope_flags(rope, family)
    out += sliding_window_flags(arch.get("sliding_window") if family == "mistral" else None)
    if not arch["tie_word_embeddings"]:
        out.append("--untie-embeddings-and-output-weights")
    if not arch.get("mlp_bias", False) and not gpt_oss:  # gpt-oss keeps Megatron's default biases
        out.append("--disable-bias-linear")
    if family == "glm":
        out.append("--use-glm-rope")
    if family == "qwen2" or (family in ("qwen3", "qwen3_moe", "glm4_moe", "glm") and arch.get("attention_bias")) \
            or (family == "qwen2_moe" and arch.get("qkv_bias")):
        out.append("--add-qkv-bias")
    if family in ("qwen3", "qwen3_moe", "qwen3_next", "minimax_m2") or (family == "glm4_moe"
                                                                      and arch.get("use_qk_norm")):
        out.append("--qk-layernorm")
    if family == "qwen3_next":
        out += linear_attention_flags(arch)
    if family == "granite":
        out += minicpm_flags(arch)
    if family in ENGINE_MODEL_ID and (family not in SIGMOID_FAMILIES
                                      or arch.get("first_k_dense_replace", 0) < arch["num_hidden_layers"]) \
            and not (family == "qwen3_next" and is_dense(arch)):
        out += moe_flags(arch, "qwen2_moe" if family == "qwen3_next" else family)  # Qwen3-Next's MoE is Qwen2-MoE's
        dense = arch.get("mlp_only_layers") or list(range(arch.get("first_k_dense_replace") or 0))
        out += _dense_layer_flags(dense, arch["num_hidden_layers"])
    return out  # the vocabulary comes back through --vocab-size / --padded-vocab-size / --tokenizer-type


def _rope_flags(rope, family) -> List[str]:
    out = ["--rotary-base", _words(rope["rope_theta"])[0]]
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        out += ["--rotary-percent", str(rope["partial_rotary_factor"])]
    return out + rope_scaling_flags(rope, family in ("deepseek_v3", "deepseek_v2") + DSA_FAMILIES)


def _engine_flags(values, arch) -> List[str]:
    """The load-balancing, z-loss, expert-bias and MTP flags of the engine's fields (and the config's aux loss)."""
    arch = arch or {}
    aux = arch.get("router_aux_loss_coef", 0.0) if arch.get("output_router_logits") else 0.0
    out = training_flags(values, aux, arch.get("model_type") in SIGMOID_FAMILIES + ("minimax_m2",))
    if values.get("mtp_num_layers"):
        out += ["--mtp-num-layers", str(values["mtp_num_layers"]),
                "--mtp-loss-scaling-factor", str(values["mtp_loss_scaling_factor"])]
    return out


# Group name (mapping.GROUP_FIELDS) -> its inverse: (flat config, dialect baseline) -> argv.
GROUP_REVERSE = {
    "pipeline": _nothing, "batch": _batch, "steps": _steps, "cp": _nothing, "optimizer": _optimizer,
    "precision": _precision, "fp8": _fp8, "recompute": _recompute, "dataloader": _dataloader, "stage": _stage,
    "instruction": _instruction, "lora": _lora, "tokenizer": _tokenizer, "load": _load, "save_parts": _save_parts,
    "architecture": lambda f, base: architecture_flags(f["architecture"], f),
    "deepspeed": _nothing, "pai": _nothing, "main_grads": _nothing,  # their fields come back through plain rows
    "tokens": lambda f, base: ["--train-tokens", str(f["train_tokens"])] if f["train_tokens"] else [],
    "batch_schedule": _batch_schedule, "decoupled": _decoupled, "loss_scale": _loss_scale,
    "weighted_split": _weighted_split,
}
