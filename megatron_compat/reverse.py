"""The reverse: a canonical config -> the Megatron flags that mean it.

Stable by construction and by test: flags -> config -> flags -> config gives the same
config. A flag is written only where the config differs from what the Megatron dialect
would give without it; fields that have no Megatron spelling are listed apart.
"""
from typing import Any, Dict, List, Tuple

from fsdp2_core.config import TrainConfig, config_to_sections

from .translate import MEGATRON_DEFAULTS

# canonical field -> Megatron flag, for plain one-value fields
PLAIN = {
    "tp_size": "--tensor-model-parallel-size", "cp_size": "--context-parallel-size", "ep_size": "--expert-model-parallel-size",
    "per_device_train_batch_size": "--micro-batch-size", "global_batch_size": "--global-batch-size",
    "max_steps": "--train-iters", "lr": "--lr", "min_lr": "--min-lr", "warmup_ratio": "--lr-warmup-fraction",
    "lr_warmup_init": "--lr-warmup-init", "lr_wsd_decay_style": "--lr-wsd-decay-style",
    "weight_decay": "--weight-decay", "start_weight_decay": "--start-weight-decay", "end_weight_decay": "--end-weight-decay",
    "weight_decay_incr_style": "--weight-decay-incr-style", "adam_beta1": "--adam-beta1", "adam_beta2": "--adam-beta2",
    "adam_epsilon": "--adam-eps", "max_grad_norm": "--clip-grad", "seed": "--seed",
    "data_cache_path": "--data-cache-path", "cutoff_len": "--seq-length", "dataloader_num_workers": "--num-workers",
    "template": "--prompt-type", "tokenizer_type": "--tokenizer-type", "tokenizer_model": "--tokenizer-model",
    "tokenizer_name_or_path": "--tokenizer-name-or-path", "vocab_file": "--vocab-file", "merge_file": "--merge-file",
    "vocab_size": "--vocab-size", "make_vocab_size_divisible_by": "--make-vocab-size-divisible-by",
    "padded_vocab_size": "--padded-vocab-size", "output_dir": "--save", "save_steps": "--save-interval",
    "logging_steps": "--log-interval", "eval_interval": "--eval-interval", "eval_iters": "--eval-iters",
    "exit_interval": "--exit-interval", "exit_duration_in_mins": "--exit-duration-in-mins",
    "tensorboard_dir": "--tensorboard-dir", "wandb_project": "--wandb-project", "wandb_exp_name": "--wandb-exp-name",
    "wandb_save_dir": "--wandb-save-dir", "profile_step_start": "--profile-step-start", "profile_step_end": "--profile-step-end",
    "profile_level": "--profile-level", "profile_export_type": "--profile-export-type", "profile_save_path": "--profile-save-path",
}
# canonical field -> (switch flag, the value the switch sets)
SWITCHES = {
    "disable_shuffling": ("--no-shuffle", True), "reset_position_ids": ("--reset-position-ids", True),
    "reset_attention_mask": ("--reset-attention-mask", True), "eod_mask_loss": ("--eod-mask-loss", True),
    "create_attention_mask_in_dataloader": ("--no-create-attention-mask-in-dataloader", False),
    "no_shared_storage": ("--no-shared-storage", True), "mock_data": ("--mock-data", True),
    "packing": ("--pack", True), "is_instruction_dataset": ("--is-instruction-dataset", True), "neat_packing": ("--neat-pack", True), "use_fast_tokenizer": ("--tokenizer-not-use-fast", False),
    "calculate_per_token_loss": ("--calculate-per-token-loss", True), "load_optim": ("--no-load-optim", False),
    "load_rng": ("--no-load-rng", False), "finetune": ("--finetune", True), "save_optim": ("--no-save-optim", False),
    "save_rng": ("--no-save-rng", False), "save_async": ("--async-save", True), "exit_signal_handler": ("--exit-signal-handler", True),
    "check_for_nan_in_loss_and_grad": ("--no-check-for-nan-in-loss-and-grad", False), "profile": ("--profile", True),
    "profile_data_simplification": ("--profile-data-simplification", True), "profile_with_cpu": ("--profile-with-cpu", True),
    "profile_with_stack": ("--profile-with-stack", True), "profile_with_memory": ("--profile-with-memory", True),
    "profile_record_shapes": ("--profile-record-shapes", True), "use_flash_attn": ("--use-flash-attn", True),
    "use_fused_rmsnorm": ("--use-fused-rmsnorm", True), "use_fused_rotary_pos_emb": ("--use-fused-rotary-pos-emb", True),
    "moe_grouped_gemm": ("--moe-grouped-gemm", True), "use_triton_gdn": ("--use-triton-gdn", True),
}
LR_STYLE_FLAGS = {"constant": "constant", "linear": "linear", "cosine": "cosine", "inverse_square_root": "inverse-square-root", "wsd": "WSD"}
# fields derived from others, or with no Megatron meaning to carry
DERIVED = {"gradient_accumulation_steps", "train_from_scratch", "architecture", "dataset", "data_manager_type", "stage",
           "save_only_model", "optimizer", "train_data_path", "valid_data_path", "test_data_path", "model_name_or_path",
           "resume_from_checkpoint", "param_dtype", "reduce_dtype", "recompute", "recompute_modules", "lr_scheduler_type",
           "lr_decay_steps", "lr_warmup_steps", "lr_wsd_decay_steps", "profile_ranks", "cp_type", "split",
           "fp8_format", "fp8_recipe", "fp8_amax_history_len", "fp8_amax_compute_algo", "fp8_param_gather"}


def to_megatron(cfg: TrainConfig) -> Tuple[List[str], List[str]]:
    """Return (argv, fields kept only in YAML because Megatron has no flag for them)."""
    flat = {name: value for part in config_to_sections(cfg).values() for name, value in part.items()}
    baseline = _dialect_baseline()
    argv: List[str] = []
    for name, flag in PLAIN.items():
        if flat[name] is not None and flat[name] != baseline.get(name):
            argv += [flag] + _words(flat[name])
    for name, (flag, sets) in SWITCHES.items():
        if flat[name] == sets and baseline.get(name) != sets:
            argv.append(flag)
    argv += _precision(flat) + _fp8(flat) + _schedule(flat) + _data(flat) + _checkpoint(flat) + _recompute(flat) + _profile_ranks(flat)
    argv += architecture_flags(flat.get("architecture"))
    leftover = [name for name, value in flat.items()
                if name not in PLAIN and name not in SWITCHES and name not in DERIVED and value != baseline.get(name)]
    return argv, leftover


def _dialect_baseline() -> Dict[str, Any]:
    base = {name: value for part in config_to_sections(TrainConfig()).values() for name, value in part.items()}
    base.update(MEGATRON_DEFAULTS)
    return base


def _words(value) -> List[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return [str(int(value))]
    return [str(value)]


def _precision(f):
    out = {"bf16": ["--bf16"], "fp16": ["--fp16"], "fp32": []}[f["param_dtype"]]
    return out + (["--grad-reduce-in-bf16"] if f["reduce_dtype"] == "bf16" else [])


def _fp8(f):
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
    return out + (["--fp8-param-gather"] if f["fp8_param_gather"] else [])


def _steps_flag(value, gbs, iters_flag, samples_flag):
    if float(value).is_integer():
        return [iters_flag, str(int(value))]
    return [samples_flag, str(round(value * gbs))]  # fractional steps came from a sample count


def _schedule(f):
    out = ["--lr-decay-style", LR_STYLE_FLAGS[f["lr_scheduler_type"]]] if f["lr_scheduler_type"] != "linear" else []
    gbs = f["global_batch_size"] or 1
    for name, iters, samples in (("lr_decay_steps", "--lr-decay-iters", "--lr-decay-samples"),
                                 ("lr_warmup_steps", "--lr-warmup-iters", "--lr-warmup-samples"),
                                 ("lr_wsd_decay_steps", "--lr-wsd-decay-iters", "--lr-wsd-decay-samples")):
        if f[name] is not None:
            out += _steps_flag(f[name], gbs, iters, samples)
    return out


def _data(f):
    out = []
    if f["data_manager_type"] == "mg" and isinstance(f["dataset"], str) and f["dataset"]:
        out += ["--data-path"] + f["dataset"].split() + ["--split", f["split"]]
    for name, flag in (("train_data_path", "--train-data-path"), ("valid_data_path", "--valid-data-path"), ("test_data_path", "--test-data-path")):
        if f[name]:
            out += [flag] + f[name].split()
    if f["stage"] == "sft":
        out += ["--stage", "sft"]
    return out


def _checkpoint(f):
    if f["resume_from_checkpoint"] == "latest" and f["output_dir"]:
        return ["--load", f["output_dir"]]
    if f["model_name_or_path"]:
        return ["--load", f["model_name_or_path"]]
    return []


def _recompute(f):
    if not f["recompute"]:
        return []
    modules = f["recompute_modules"]
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
    """Inverse of architecture._dense_layers for the layouts Megatron can say."""
    for first_k in range(layers + 1):
        for freq in range(1, layers + 1):
            if sorted(set(range(first_k)) | {i for i in range(layers) if freq > 1 and i % freq}) == list(dense):
                return ["--first-k-dense-replace", str(first_k), "--moe-layer-freq", str(freq)]
    return []


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
                return ["--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", str(n)] + pipeline
    return []  # any other per-layer list stays in the YAML only


def _profile_ranks(f):
    return ["--profile-ranks"] + [str(r) for r in f["profile_ranks"]] if f["profile_ranks"] != [0] else []


def architecture_flags(arch) -> List[str]:
    """Inverse of architecture.build_architecture."""
    if not arch:
        return []
    if arch["model_type"] == "gpt2":
        return ["--num-layers", str(arch["n_layer"]), "--hidden-size", str(arch["n_embd"]), "--num-attention-heads", str(arch["n_head"]),
                "--ffn-hidden-size", str(arch["n_inner"]), "--max-position-embeddings", str(arch["n_positions"]),
                "--norm-epsilon", str(arch["layer_norm_epsilon"]), "--hidden-dropout", str(arch["resid_pdrop"]),
                "--attention-dropout", str(arch["attn_pdrop"]), "--init-method-std", str(arch["initializer_range"])]
    out = ["--position-embedding-type", "rope", "--normalization", "RMSNorm", "--swiglu",
           "--num-layers", str(arch["num_hidden_layers"]), "--hidden-size", str(arch["hidden_size"]),
           "--ffn-hidden-size", str(arch["intermediate_size"]), "--num-attention-heads", str(arch["num_attention_heads"]),
           "--kv-channels", str(arch["head_dim"]), "--max-position-embeddings", str(arch["max_position_embeddings"]),
           "--norm-epsilon", str(arch["rms_norm_eps"]), "--init-method-std", str(arch["initializer_range"]),
           "--attention-dropout", str(arch["attention_dropout"]), "--hidden-dropout", "0.0",
           "--rotary-base", _words(arch["rope_parameters"]["rope_theta"])[0]]
    if arch["num_key_value_heads"] != arch["num_attention_heads"]:
        out += ["--group-query-attention", "--num-query-groups", str(arch["num_key_value_heads"])]
    if "partial_rotary_factor" in arch["rope_parameters"]:
        out += ["--rotary-percent", str(arch["rope_parameters"]["partial_rotary_factor"])]
    if not arch["tie_word_embeddings"]:
        out.append("--untie-embeddings-and-output-weights")
    family = arch["model_type"]
    if not arch.get("mlp_bias", False):
        out.append("--disable-bias-linear")
    if family == "qwen2" or (family in ("qwen3", "qwen3_moe") and arch.get("attention_bias")):
        out.append("--add-qkv-bias")
    if family in ("qwen3", "qwen3_moe"):
        out.append("--qk-layernorm")
    if family in ("qwen3_moe", "mixtral"):
        out += ["--num-experts", str(arch["num_local_experts"]), "--moe-router-topk", str(arch["num_experts_per_tok"]),
                "--moe-aux-loss-coeff", str(arch["router_aux_loss_coef"])]
        out += ["--moe-ffn-hidden-size", str(arch["moe_intermediate_size"] if family == "qwen3_moe" else arch["intermediate_size"])]
        if arch.get("norm_topk_prob"):
            out.append("--norm-topk-prob")
        if arch.get("mlp_only_layers"):
            out += _dense_layer_flags(arch["mlp_only_layers"], arch["num_hidden_layers"])
    return out  # the vocabulary comes back through --vocab-size / --padded-vocab-size / --tokenizer-type
