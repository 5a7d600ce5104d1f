"""The `mapped` rows of the flag registry: Megatron flags that become canonical fields.

A row either carries its own transform (value -> field), or names a group handled in
`translate.py` / `architecture.py`, where several flags combine (batch, steps, the
architecture, checkpoint paths). The `target` text is what `--list-flags` and the
migration guide show.
"""
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

LR_STYLES = {"constant": "constant", "linear": "linear", "cosine": "cosine",
             "inverse-square-root": "inverse_square_root", "WSD": "wsd"}


@dataclass(frozen=True)
class Rule:
    flags: Tuple[str, ...]
    status: str                # mapped | absorbed | rejected | absorbed-at-default
    target: str                # mapped: canonical field(s); otherwise the reason
    replacement: str = "-"
    apply: Optional[Callable[[Any, Any], None]] = None   # (value, translation) -> None
    group: Optional[str] = None  # handled together with other flags of this group


def to(field_name: str, convert: Callable[[Any], Any] = lambda v: v):
    def apply(value, t):
        t.set(field_name, convert(value))
    return apply


def const(**fields):
    def apply(value, t):
        for name, v in fields.items():
            t.set(name, v)
    return apply


def _lr_style(value):
    if value not in LR_STYLES:
        raise ValueError(f"expects one of {', '.join(LR_STYLES)}, got {value!r}")
    return LR_STYLES[value]


def _both_save_off(value, t):
    t.set("save_optim" if t.current_flag == "--no-save-optim" else "save_rng", False)
    if t.given.get("--no-save-optim") and t.given.get("--no-save-rng"):
        t.set("save_only_model", True)


def _data_path(value, t):
    t.set("dataset", " ".join(value))
    t.set("data_manager_type", "mg")


def _split_path(field_name):
    def apply(value, t):
        t.set(field_name, " ".join(value))
        t.set("data_manager_type", "mg")
    return apply


def M(flags: str, target: str, apply=None, group=None) -> Rule:
    return Rule(tuple(flags.split()), "mapped", target, "-", apply, group)


MAPPED_RULES = [
    # --- parallelism ---
    M("--tensor-model-parallel-size", "parallel.tp_size", to("tp_size")),
    M("--pipeline-model-parallel-size", "folded into FSDP sharding: data-parallel size = world / (tp × cp)", group="batch"),
    M("--context-parallel-size", "parallel.cp_size", to("cp_size")),
    M("--context-parallel-algo", "parallel.cp_type (ulysses; ring-style algorithms become Ulysses when heads divide by cp)", group="cp"),
    M("--expert-model-parallel-size", "parallel.ep_size", to("ep_size")),
    M("--expert-tensor-parallel-size", "experts are never tensor-split (1 accepted; above 1 refused)", group="cp"),
    # --- batch and steps ---
    M("--micro-batch-size", "training.per_device_train_batch_size", to("per_device_train_batch_size")),
    M("--global-batch-size", "training.global_batch_size; gradient_accumulation_steps = global / (micro × dp)", group="batch"),
    M("--train-iters", "training.max_steps", group="steps"),
    M("--train-samples", "training.max_steps = samples ÷ global batch", group="steps"),
    # --- learning rate and optimizer ---
    M("--lr", "training.lr", to("lr")),
    M("--min-lr", "training.min_lr", to("min_lr")),
    M("--lr-decay-style", "training.lr_scheduler_type", to("lr_scheduler_type", _lr_style)),
    M("--lr-decay-iters", "training.lr_decay_steps", group="steps"),
    M("--lr-decay-samples", "training.lr_decay_steps = samples ÷ global batch", group="steps"),
    M("--lr-warmup-iters", "training.lr_warmup_steps", group="steps"),
    M("--lr-warmup-samples", "training.lr_warmup_steps = samples ÷ global batch", group="steps"),
    M("--lr-warmup-fraction", "training.warmup_ratio", to("warmup_ratio")),
    M("--lr-warmup-init", "training.lr_warmup_init", to("lr_warmup_init")),
    M("--lr-wsd-decay-style", "training.lr_wsd_decay_style", to("lr_wsd_decay_style")),
    M("--lr-wsd-decay-iters", "training.lr_wsd_decay_steps", group="steps"),
    M("--lr-wsd-decay-samples", "training.lr_wsd_decay_steps = samples ÷ global batch", group="steps"),
    M("--weight-decay", "training.weight_decay", to("weight_decay")),
    M("--start-weight-decay", "training.start_weight_decay", to("start_weight_decay")),
    M("--end-weight-decay", "training.end_weight_decay", to("end_weight_decay")),
    M("--weight-decay-incr-style", "training.weight_decay_incr_style", to("weight_decay_incr_style")),
    M("--adam-beta1", "training.adam_beta1", to("adam_beta1")),
    M("--adam-beta2", "training.adam_beta2", to("adam_beta2")),
    M("--adam-eps", "training.adam_epsilon", to("adam_epsilon")),
    M("--clip-grad", "training.max_grad_norm", to("max_grad_norm")),
    M("--optimizer", "training.optimizer (adam → adamw: Megatron's Adam decouples weight decay)", group="optimizer"),
    M("--seed", "training.seed", to("seed")),
    M("--bf16", "parallel.param_dtype = bf16", group="precision"),
    M("--fp16", "parallel.param_dtype = fp16", group="precision"),
    # --- float8 / MXFP8 (groups.fp8) ---
    M("--fp8-format", "model.fp8_format (torchao float8 training, FP8 GPUs only); with --fp8-recipe mxfp8: model.quant_recipe mxfp8", group="fp8"),
    M("--fp8-recipe", "model.fp8_recipe (tensorwise / delayed → torchao tensorwise, blockwise → torchao rowwise); mxfp8 → model.quant_recipe mxfp8", group="fp8"),
    M("--fp8-amax-history-len", "model.fp8_amax_history_len (recorded; torchao scales dynamically)", group="fp8"),
    M("--fp8-amax-compute-algo", "model.fp8_amax_compute_algo (recorded; torchao scales dynamically)", group="fp8"),
    M("--fp8-param-gather", "model.fp8_param_gather (torchao float8 all-gather in FSDP)", group="fp8"),
    M("--grad-reduce-in-bf16", "parallel.reduce_dtype = bf16", const(reduce_dtype="bf16")),
    M("--calculate-per-token-loss", "training.calculate_per_token_loss", const(calculate_per_token_loss=True)),
    # --- activation recompute ---
    M("--recompute-granularity", "parallel.recompute + recompute_modules", group="recompute"),
    M("--recompute-method", "parallel.recompute_modules (which layers)", group="recompute"),
    M("--recompute-num-layers", "parallel.recompute_modules (how many layers)", group="recompute"),
    M("--recompute-activations", "parallel.recompute with selective (attention) recompute", group="recompute"),
    M("--recompute-modules", "parallel.recompute_modules", group="recompute"),
    # --- data ---
    M("--data-path", "data.dataset (the prefix list) with data_manager_type mg", _data_path),
    M("--split", "data.split", to("split", lambda v: v.replace(" ", ""))),
    M("--train-data-path", "data.train_data_path", _split_path("train_data_path")),
    M("--valid-data-path", "data.valid_data_path", _split_path("valid_data_path")),
    M("--test-data-path", "data.test_data_path", _split_path("test_data_path")),
    M("--mock-data", "data.mock_data", const(mock_data=True, data_manager_type="mg")),
    M("--data-cache-path", "data.data_cache_path", to("data_cache_path")),
    M("--seq-length", "data.cutoff_len", to("cutoff_len")),
    M("--no-shuffle", "training.disable_shuffling", const(disable_shuffling=True)),
    M("--num-workers", "training.dataloader_num_workers", to("dataloader_num_workers")),
    M("--workers", "data.preprocessing_num_workers", to("preprocessing_num_workers")),
    M("--reset-position-ids", "data.reset_position_ids", const(reset_position_ids=True)),
    M("--reset-attention-mask", "data.reset_attention_mask", const(reset_attention_mask=True)),
    M("--eod-mask-loss", "data.eod_mask_loss", const(eod_mask_loss=True)),
    M("--create-attention-mask-in-dataloader", "data.create_attention_mask_in_dataloader", const(create_attention_mask_in_dataloader=True)),
    M("--no-create-attention-mask-in-dataloader", "data.create_attention_mask_in_dataloader = false", const(create_attention_mask_in_dataloader=False)),
    M("--dataloader-type", "data.dataloader_type (single; cyclic and external refused)", group="dataloader"),
    M("--no-shared-storage", "data.no_shared_storage", const(no_shared_storage=True)),
    M("--pack", "data.packing", const(packing=True)),
    M("--neat-pack", "data.neat_packing", const(neat_packing=True)),
    M("--prompt-type", "data.template (qwen3, llama3 and empty render as MindSpeed-LLM's; preprocessed instruction data needs none)", group="instruction"),
    M("--stage", "training.stage (sft; other stages refused)", group="stage"),
    M("--is-instruction-dataset", "data.is_instruction_dataset: the --data-path prefix holds MindSpeed-LLM instruction data (<prefix>_packed_*_document.bin/.idx)", group="instruction"),
    M("--enable-thinking", "data.enable_thinking (true / false / none)", group="instruction"),
    # --- LoRA (peft) ---
    M("--lora-target-modules", "model.lora_target_modules (linear_qkv → q/k/v_proj, linear_proj → o_proj, linear_fc1 → gate/up_proj, linear_fc2 → down_proj)", group="lora"),
    M("--lora-r", "model.lora_r (with --lora-target-modules)", group="lora"),
    M("--lora-alpha", "model.lora_alpha (with --lora-target-modules)", group="lora"),
    M("--lora-dropout", "model.lora_dropout (with --lora-target-modules)", group="lora"),
    M("--save-lora-to-hf", "training.save_hf_weights: the adapter is exported in PEFT format to <save>/hf_adapter/", const(save_hf_weights=True)),
    # --- tokenizer ---
    M("--tokenizer-type", "model.tokenizer_type", to("tokenizer_type")),
    M("--tokenizer-model", "model.tokenizer_model (and tokenizer_name_or_path for Hugging Face directories)", group="tokenizer"),
    M("--tokenizer-name-or-path", "model.tokenizer_name_or_path", to("tokenizer_name_or_path")),
    M("--vocab-file", "model.vocab_file", to("vocab_file")),
    M("--merge-file", "model.merge_file", to("merge_file")),
    M("--vocab-size", "model.vocab_size", to("vocab_size")),
    M("--make-vocab-size-divisible-by", "model.make_vocab_size_divisible_by", to("make_vocab_size_divisible_by")),
    M("--padded-vocab-size", "model.padded_vocab_size", to("padded_vocab_size")),
    M("--tokenizer-not-use-fast", "model.use_fast_tokenizer = false", const(use_fast_tokenizer=False)),
    # --- checkpoints and run control ---
    M("--save", "training.output_dir", to("output_dir")),
    M("--load", "training.resume_from_checkpoint = latest when equal to --save; else model.model_name_or_path", group="load"),
    M("--no-load-optim", "training.load_optim = false", const(load_optim=False)),
    M("--no-load-rng", "training.load_rng = false", const(load_rng=False)),
    M("--finetune", "training.finetune", const(finetune=True)),
    M("--no-save-optim", "training.save_optim = false (with --no-save-rng: save_only_model)", _both_save_off),
    M("--no-save-rng", "training.save_rng = false (with --no-save-optim: save_only_model)", _both_save_off),
    M("--async-save", "training.save_async", const(save_async=True)),
    M("--save-interval --persistent-save-interval", "training.save_steps", to("save_steps")),
    M("--log-interval", "training.logging_steps", to("logging_steps")),
    M("--eval-interval", "training.eval_interval", to("eval_interval")),
    M("--eval-iters", "training.eval_iters", to("eval_iters")),
    M("--exit-interval", "training.exit_interval", to("exit_interval")),
    M("--exit-duration-in-mins", "training.exit_duration_in_mins", to("exit_duration_in_mins")),
    M("--exit-signal-handler", "training.exit_signal_handler", const(exit_signal_handler=True)),
    M("--no-check-for-nan-in-loss-and-grad", "training.check_for_nan_in_loss_and_grad = false", const(check_for_nan_in_loss_and_grad=False)),
    M("--check-for-nan-in-loss-and-grad", "training.check_for_nan_in_loss_and_grad", const(check_for_nan_in_loss_and_grad=True)),
    M("--tensorboard-dir", "training.tensorboard_dir", to("tensorboard_dir")),
    M("--wandb-project", "training.wandb_project", to("wandb_project")),
    M("--wandb-exp-name", "training.wandb_exp_name", to("wandb_exp_name")),
    M("--wandb-save-dir", "training.wandb_save_dir", to("wandb_save_dir")),
    # --- profiling ---
    M("--profile", "profiling.profile", const(profile=True)),
    M("--profile-step-start", "profiling.profile_step_start", to("profile_step_start")),
    M("--profile-step-end", "profiling.profile_step_end", to("profile_step_end")),
    M("--profile-ranks", "profiling.profile_ranks", to("profile_ranks")),
    M("--profile-level", "profiling.profile_level", to("profile_level")),
    M("--profile-export-type", "profiling.profile_export_type", to("profile_export_type")),
    M("--profile-data-simplification", "profiling.profile_data_simplification", const(profile_data_simplification=True)),
    M("--profile-with-cpu", "profiling.profile_with_cpu", const(profile_with_cpu=True)),
    M("--profile-with-stack", "profiling.profile_with_stack", const(profile_with_stack=True)),
    M("--profile-with-memory", "profiling.profile_with_memory", const(profile_with_memory=True)),
    M("--profile-record-shapes", "profiling.profile_record_shapes", const(profile_record_shapes=True)),
    M("--profile-save-path", "profiling.profile_save_path", to("profile_save_path")),
    # --- fused kernels ---
    M("--use-flash-attn", "optimization.use_flash_attn", const(use_flash_attn=True)),
    M("--use-fused-rmsnorm", "optimization.use_fused_rmsnorm", const(use_fused_rmsnorm=True)),
    M("--use-fused-rotary-pos-emb", "optimization.use_fused_rotary_pos_emb", const(use_fused_rotary_pos_emb=True)),
    M("--moe-grouped-gemm", "optimization.moe_grouped_gemm", const(moe_grouped_gemm=True)),
    M("--use-triton-gdn", "optimization.use_triton_gdn", const(use_triton_gdn=True)),
    Rule(("--local-rank", "--local_rank"), "absorbed", "added by torch.distributed.launch; the rank comes from the environment (LOCAL_RANK)"),
    M("--use-mcore-models", "the engine's models are always the current ones (accepted, no effect)"),
]

ARCH_TARGETS = {
    "--num-layers": "num_hidden_layers", "--hidden-size": "hidden_size", "--ffn-hidden-size": "intermediate_size",
    "--num-attention-heads": "num_attention_heads", "--group-query-attention": "num_key_value_heads (with --num-query-groups)",
    "--num-query-groups": "num_key_value_heads", "--kv-channels": "head_dim",
    "--max-position-embeddings": "max_position_embeddings", "--position-embedding-type": "model family (learned → GPT-2, rope → Llama/Qwen)",
    "--use-rotary-position-embeddings": "rope position embeddings", "--no-position-embedding": "no learned position table (rope families)",
    "--rotary-base": "rope_theta", "--rotary-percent": "partial_rotary_factor", "--normalization": "model family (LayerNorm → GPT-2, RMSNorm → Llama/Qwen)",
    "--norm-epsilon": "rms_norm_eps / layer_norm_epsilon", "--swiglu": "hidden_act silu with a gated MLP",
    "--untie-embeddings-and-output-weights": "tie_word_embeddings = false", "--disable-bias-linear": "attention_bias / mlp_bias = false",
    "--add-qkv-bias": "bias on q, k, v only (Qwen2 family)", "--qk-layernorm": "q_norm/k_norm (Qwen3 family)",
    "--num-experts": "num_experts (Qwen3-MoE / Mixtral)", "--moe-router-topk": "num_experts_per_tok",
    "--moe-ffn-hidden-size": "moe_intermediate_size", "--moe-intermediate-size": "moe_intermediate_size",
    "--moe-aux-loss-coeff": "router_aux_loss_coef", "--moe-router-load-balancing-type": "aux_loss kept; none sets the coefficient to 0",
    "--norm-topk-prob": "norm_topk_prob", "--init-method-std": "initializer_range",
    "--first-k-dense-replace": "mlp_only_layers (the first k layers are dense; -1 or 0: none)",
    "--moe-layer-freq": "mlp_only_layers (every N-th layer has experts; -1, 0 or 1: every layer)",
    "--attention-dropout": "attention_dropout", "--hidden-dropout": "hidden dropout (GPT-2 resid/embd dropout; must be 0 for Llama/Qwen)",
}
MAPPED_RULES += [M(flag, f"model.architecture.{target}", group="architecture") for flag, target in ARCH_TARGETS.items()]
