"""The rules of the parameter reference, checked once on a complete config."""
from .arguments import TrainConfig
from .schema import ConfigError


def validate(cfg: TrainConfig) -> TrainConfig:
    """Normalise implied settings, then raise ConfigError listing every broken rule."""
    if cfg.data.neat_packing:
        cfg.data.packing = True  # neat_packing implies packing
    errors = []
    for check in (_check_essentials, _check_data_rules, _check_parallel, _check_training, _check_profiling):
        errors.extend(check(cfg))
    if errors:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(errors))
    return cfg


def _check_essentials(cfg):
    errors = []
    m = cfg.model
    if not m.model_name_or_path and not m.architecture:
        errors.append(
            "model: neither model_name_or_path nor an architecture is given; set model.model_name_or_path to a "
            "Hugging Face model directory, or give the Megatron architecture flags (--num-layers, --hidden-size, "
            "--num-attention-heads, ...)")
    if not cfg.training.output_dir:
        errors.append("training.output_dir is required: set output_dir (Megatron --save) to where checkpoints and "
                      "logs go")
    return errors


def _check_data_rules(cfg):
    d, errors = cfg.data, []
    if d.eval_dataset and d.val_size:
        errors.append(f"data: eval_dataset ({d.eval_dataset!r}) and val_size ({d.val_size}) exclude each other; "
                      "keep one")
    if d.train_on_prompt and d.mask_history:
        errors.append("data: train_on_prompt and mask_history exclude each other; keep one")
    if d.streaming and d.max_samples is not None:
        errors.append(f"data: streaming and max_samples ({d.max_samples}) exclude each other; drop max_samples")
    if d.streaming and d.val_size and float(d.val_size) != int(d.val_size):
        errors.append(f"data: streaming needs an integer val_size (a sample count), got {d.val_size}")
    if d.val_size < 0:
        errors.append(f"data: val_size must be >= 0, got {d.val_size}")
    if d.val_size and not d.dataset:
        errors.append("data: val_size needs a dataset to split")
    if d.cutoff_len <= 0:
        errors.append(f"data: cutoff_len must be positive, got {d.cutoff_len}")
    try:
        weights = [float(x) for x in d.split.replace("/", ",").split(",")]
        if len(weights) > 3 or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError
    except ValueError:
        errors.append(f"data: split {d.split!r} must be up to three non-negative weights like '969,30,1'")
    if d.interleave_probs and d.mix_strategy == "concat":
        errors.append("data: interleave_probs only applies with mix_strategy interleave_under or interleave_over")
    return errors


def _check_parallel(cfg):
    p, errors = cfg.parallel, []
    for name in ("tp_size", "ep_size", "ep_fsdp_size", "cp_size"):
        if getattr(p, name) < 1:
            errors.append(f"parallel.{name} must be >= 1, got {getattr(p, name)}")
    if p.fsdp_size is not None and p.fsdp_size < 1:
        errors.append("parallel.fsdp_size must be >= 1 (or unset to shard over every data-parallel rank), got "
                      f"{p.fsdp_size}")
    if p.distributed_timeout_minutes is not None and p.distributed_timeout_minutes <= 0:
        errors.append(f"parallel.distributed_timeout_minutes must be positive (or unset for PyTorch's default), "
                      f"got {p.distributed_timeout_minutes}")
    if not p.fsdp_modules:
        errors.append("parallel.fsdp_modules must not be empty; the default is ['model.layers.{*}', "
                      "'model.embed_tokens', 'lm_head']")
    for name in ("num_to_forward_prefetch", "num_to_backward_prefetch"):
        if getattr(p, name) < 0:
            errors.append(f"parallel.{name} must be >= 0, got {getattr(p, name)}")
    return errors


def _check_training(cfg):
    t, errors = cfg.training, []
    if t.per_device_train_batch_size < 1:
        errors.append(f"training.per_device_train_batch_size must be >= 1, got {t.per_device_train_batch_size}")
    if t.gradient_accumulation_steps < 1:
        errors.append(f"training.gradient_accumulation_steps must be >= 1, got {t.gradient_accumulation_steps}")
    if t.max_steps <= 0 and t.num_train_epochs <= 0:
        errors.append("training: set max_steps > 0 (Megatron --train-iters) or num_train_epochs > 0")
    if t.lr < 0 or t.min_lr < 0:
        errors.append(f"training: lr ({t.lr}) and min_lr ({t.min_lr}) must be >= 0")
    if t.min_lr > t.lr:
        errors.append(f"training: min_lr ({t.min_lr}) is above lr ({t.lr})")
    if not 0.0 <= t.warmup_ratio <= 1.0:
        errors.append(f"training.warmup_ratio must be in [0, 1], got {t.warmup_ratio}")
    if t.weight_decay_incr_style != "constant" and (t.start_weight_decay is None or t.end_weight_decay is None):
        errors.append("training: weight_decay_incr_style other than constant needs start_weight_decay and "
                      "end_weight_decay")
    if t.save_steps < 0:
        errors.append(f"training.save_steps must be >= 0 (0 saves only at the end), got {t.save_steps}")
    if t.save_total_limit is not None and t.save_total_limit < 1:
        errors.append(f"training.save_total_limit must be >= 1 or null, got {t.save_total_limit}")
    if not 0.0 <= t.z_loss_coeff < float("inf"):
        errors.append(f"training.z_loss_coeff must be a finite number >= 0 (0 turns the z-loss off), "
                      f"got {t.z_loss_coeff}")
    if t.chunk_loss_size is not None and t.chunk_loss_size < 1:
        errors.append(f"training.chunk_loss_size must be >= 1, got {t.chunk_loss_size}")
    if t.finetune and t.resume_from_checkpoint is None and not cfg.model.model_name_or_path:
        errors.append("training.finetune needs a checkpoint to load: set resume_from_checkpoint or "
                      "model_name_or_path (--load)")
    return errors


def _check_profiling(cfg):
    p, errors = cfg.profiling, []
    if p.profile_step_start < 0:
        errors.append(f"profiling.profile_step_start must be >= 0, got {p.profile_step_start}")
    if p.profile_step_end != -1 and p.profile_step_end <= p.profile_step_start:
        errors.append(f"profiling.profile_step_end ({p.profile_step_end}) must be -1 or above profile_step_start "
                      f"({p.profile_step_start})")
    return errors
