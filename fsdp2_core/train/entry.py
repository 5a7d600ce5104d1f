"""`run_training(cfg, checkpoint=...)`: device → mesh → model → parallelize → optimizer → data → loop."""
import logging
import os
import random
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist

from fsdp2_core.config import ConfigError, global_batch_size, padded_vocab_size, resolve_batch
from fsdp2_core.config.batch_schedule import build_batch_schedule, has_batch_schedule
from fsdp2_core.config.run_time_values import check_resolved
from fsdp2_core.device import init_distributed
from fsdp2_core.kernels import apply_kernels
from fsdp2_core.models.build import build_model, count_parameters, materialize
from fsdp2_core.models.lora import apply_lora
from fsdp2_core.models.tokens import extend_tokenizer, resize_model_vocab
from fsdp2_core.parallel import build_mesh, forget_meshes, parallelize
from fsdp2_core.parallel.fsdp import ignored_parameters
from fsdp2_core.parallel.replicate import apply_replicate, broadcast_parameters
from fsdp2_core.quant import apply_quantization, check_quantization
from fsdp2_core.quant.float8 import check_fp8_hardware

from .checkpoint_hooks import CheckpointHooks
from .data import build_datasets, build_tokenizer, check_token_ids, epochs_to_steps, micro_batches
from .determinism import enable_determinism
from .launcher_watch import LauncherWatch
from .loop import Data, TrainState, train
from .loss import install_loss, register_loss_with_fsdp
from .loss_scale import build_loss_scaler
from .lr_schedule import build_schedule
from .metrics import MetricsSink, flops_per_token
from .optimizer import build_optimizer, describe_optimizer
from .output_dir import check_output_dir
from .profiler import StepProfiler
from .step import RunContext

log = logging.getLogger(__name__)
ARCHITECTURE_DIR = "architecture"  # <output_dir>/architecture/config.json: what a from-scratch run trains


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _vocab_size(cfg, tokenizer) -> Optional[int]:
    """Megatron's padded vocabulary for architectures that do not fix vocab_size themselves."""
    m = cfg.model
    if m.padded_vocab_size:
        return m.padded_vocab_size
    size = getattr(tokenizer, "vocab_size", None) if tokenizer is not None else m.vocab_size
    return padded_vocab_size(size, m.make_vocab_size_divisible_by, cfg.parallel.tp_size) if size else None


def _train_samples(t, gbs: int, batches) -> Optional[int]:
    """Samples the data must hold: Megatron's request (train_samples, else iterations × global batch), or what a
    batch schedule consumes over the run when that is more (Megatron would run out of data there)."""
    if t.max_steps <= 0:
        return None
    requested = t.train_samples or t.max_steps * gbs
    return max(requested, batches.samples_after(t.max_steps)) if batches is not None else requested


def write_architecture(cfg, model) -> None:
    """A run built from an architecture (e.g. Megatron flags) leaves its Hugging Face config beside the output."""
    if cfg.model.model_name_or_path or not cfg.training.output_dir:
        return
    if dist.is_initialized() and dist.get_rank() != 0:
        return
    model.config.save_pretrained(os.path.join(cfg.training.output_dir, ARCHITECTURE_DIR))


def build_parallel_model(cfg, device, mesh, tokenizer=None):
    """The model, sharded and ready: eager build then shard, or meta build, shard, fill shard by shard."""
    m, seed = cfg.model, cfg.training.seed
    meta = m.init_model_with_meta_device
    check_quantization(cfg, device.type)  # refuse before building: HIF8 off Ascend, FP8 flags without FP8 hardware
    check_fp8_hardware(cfg, device.type)
    model = build_model(cfg, device.torch_device, meta=meta, vocab_size=_vocab_size(cfg, tokenizer), seed=seed)
    write_architecture(cfg, model)
    if tokenizer is not None and hasattr(tokenizer, "add_special_tokens") and not meta:
        added = extend_tokenizer(tokenizer, m)
        resize_model_vocab(model, tokenizer, m, added, seed)
    apply_kernels(model, cfg)  # fused kernels of `optimization` (no-op when a registered family installed them)
    apply_quantization(model, cfg, device.type)  # mxfp8 / float8 before parallelism; LoRA adapters stay unquantised
    apply_lora(model, cfg)  # LoRA adapters (peft) in place, only they train; no-op when lora_r is 0
    install_loss(model)
    parallelize(model, cfg, mesh)
    register_loss_with_fsdp(model)
    if meta:
        materialize(model, cfg, device.torch_device, seed)
    group = getattr(model, "_fsdp2_replicate_group", None)
    if group is not None:  # replicated: every rank starts from rank 0's weights, then its gradient hooks attach
        broadcast_parameters(model, group)
        apply_replicate(model, group)
    model.train()
    return model


def _data(cfg, splits, consumed: int, mesh, dp: int) -> Data:
    """This rank's micro-batch iterators; by epochs (max_steps <= 0) the train set is read again each epoch."""
    t = cfg.training
    train_ds, valid_ds, test_ds = splits
    micro = t.per_device_train_batch_size
    loader = dict(workers=t.dataloader_num_workers, seed=t.seed, persistent_workers=t.dataloader_persistent_workers,
                  prefetch_factor=t.dataloader_prefetch_factor)
    order = dict(order=cfg.data.dataloader_type, data_sharding=cfg.data.data_sharding)  # valid/test alike, as Megatron

    def evaluation(ds):
        if isinstance(ds, list):  # named groups (--valid-weighted-split-paths): one iterator each
            named = [(g.name, evaluation(g.dataset)) for g in ds]
            return [(name, batches) for name, batches in named if batches is not None] or None
        return micro_batches(ds, 0, micro, mesh.dp_rank, dp, cyclic=True, **order) if ds is not None and len(ds) \
            else None
    return Data(train=micro_batches(train_ds, consumed, micro, mesh.dp_rank, dp, cyclic=t.max_steps <= 0, **loader,
                                    **order),
                valid=evaluation(valid_ds), test=evaluation(test_ds))


def run_training(cfg, datasets: Optional[Sequence] = None, *, checkpoint: CheckpointHooks,
                 print_fn: Optional[Callable[[str], None]] = None, peak_tflops: Optional[float] = None) -> dict:
    """Train per `cfg`. `datasets` = (train, valid, test) overrides the configured data (tests, tools).

    `checkpoint` is what saves and resumes: the entry points hand the engine's
    `fsdp2_core.checkpoint.Checkpointer(cfg)`; `CheckpointHooks()` trains without checkpoints. It is an
    argument because checkpointing sits beside training, not below it (docs/architecture.md).

    Returns a summary: final iteration, consumed samples, per-iteration losses / grad norms / learning
    rates, validation and test losses, skipped and NaN iteration counts, last throughput figures.
    """
    if checkpoint is None:
        raise TypeError("run_training needs its checkpoint hooks: fsdp2_core.checkpoint.Checkpointer(cfg) saves and "
                        "resumes, fsdp2_core.train.CheckpointHooks() trains without checkpoints")
    watch = LauncherWatch()  # under torchrun: stop within seconds if torchrun dies
    watch.start()
    created_group = not dist.is_initialized()
    settings = enable_determinism() if cfg.training.deterministic else None  # before any communicator exists
    device = init_distributed(timeout_minutes=cfg.parallel.distributed_timeout_minutes)
    rank, world = dist.get_rank(), dist.get_world_size()
    print_fn = print_fn or (lambda s: print(s, flush=True) if rank == 0 else None)
    if settings is not None:
        print_fn("deterministic mode: torch.use_deterministic_algorithms(True)"
                 + (f"; environment: {', '.join(settings)}" if settings else ""))
    t = cfg.training
    check_resolved(cfg)  # `${1}` left for the converted launch script to give is no directory name
    check_output_dir(t.output_dir, rank)  # a file or a read-only --save stops every rank here, together
    dp = resolve_batch(cfg, world)
    mesh = build_mesh(cfg.parallel, world, device.type)
    gbs = global_batch_size(cfg, dp)
    batches = build_batch_schedule(t, gbs, cfg.data.cutoff_len) if has_batch_schedule(t) else None
    seed_everything(t.seed)

    m = cfg.model
    wants_tokens = m.resize_vocab or m.add_tokens or m.add_special_tokens or m.new_special_tokens_config
    tokenizer = build_tokenizer(cfg) if datasets is None or wants_tokens else None
    model = build_parallel_model(cfg, device, mesh, tokenizer)
    optimizer = build_optimizer(model, t)
    print_fn(describe_optimizer(optimizer))

    if datasets is None:
        if t.max_steps <= 0 and cfg.data.data_manager_type == "mg":
            raise ConfigError("pretraining (mg) data needs max_steps (--train-iters): its sample counts derive from it")
        datasets = build_datasets(cfg, t.max_steps, gbs, tokenizer, _train_samples(t, gbs, batches))
    train_ds, valid_ds, test_ds = (list(datasets) + [None, None])[:3]
    check_token_ids([d for split in (train_ds, valid_ds, test_ds) if split is not None
                     for d in (split if isinstance(split, list) else [split])],
                    getattr(getattr(model, "config", None), "vocab_size", None))
    train_iters = t.max_steps if t.max_steps > 0 else epochs_to_steps(len(train_ds), t.num_train_epochs, gbs)
    schedule = build_schedule(t, train_iters, gbs)

    state = TrainState()
    scaler = build_loss_scaler(cfg.parallel.param_dtype, t)
    if scaler is not None and scaler.dynamic:
        state.loss_scale = scaler.state_dict()  # so a resume restores it (the checkpoint's template has it)
    hooks = checkpoint
    data = None
    try:
        if hasattr(hooks, "setup"):
            hooks.setup(device=device, tokenizer=tokenizer, train_iters=train_iters, global_batch=gbs,
                        steps_per_epoch=len(train_ds) // gbs if t.max_steps <= 0 else None, print_fn=print_fn,
                        launcher_watch=watch)
        hooks.load(state, model, optimizer, schedule)
        if scaler is not None:
            scaler.load_state_dict(state.loss_scale or {})
        schedule.apply(optimizer)
        if batches is not None:  # from the resumed position on, as Megatron checks after loading
            batches.check_divisible(t.per_device_train_batch_size, dp, train_iters - state.iteration,
                                    state.consumed_train_samples)
        data = _data(cfg, (train_ds, valid_ds, test_ds), state.consumed_train_samples, mesh, dp)
        ignored = list(ignored_parameters(model, cfg.parallel.ignored_modules))
        ctx = RunContext(cfg, model, optimizer, schedule, mesh, device, t.gradient_accumulation_steps, gbs, ignored,
                         batch_schedule=batches, loss_scaler=scaler)
        hf_config = getattr(model, "config", None)
        flops_token = flops_per_token(hf_config, count_parameters(model, exclude_input_embedding=True),
                                      cfg.data.cutoff_len)
        sink = MetricsSink(t, rank)
        profiler = StepProfiler(cfg.profiling, rank, device)
        try:
            hist = train(ctx, state, train_iters, data, hooks, sink, profiler, flops_token,
                         device.peak_tflops(peak_tflops), print_fn)
        finally:
            sink.close()
    finally:
        if data is not None:
            data.close()  # loader workers are shut down by the rank, after its last checkpoint
        if hasattr(hooks, "close"):  # hooks that do not derive from CheckpointHooks may lack it
            hooks.close()
    summary = {"iteration": state.iteration, "train_iters": train_iters,
               "consumed_train_samples": state.consumed_train_samples, "global_batch_size": gbs,
               "gradient_accumulation_steps": t.gradient_accumulation_steps, "losses": hist.losses,
               "grad_norms": hist.grad_norms, "learning_rates": hist.lrs, "global_batch_sizes": hist.global_batches,
               "valid": hist.valid,
               "test_loss": hist.test_loss, "skipped_iterations": state.skipped_iters,
               "nan_iterations": state.nan_iters, "throughput": hist.throughput, "world_size": world,
               "extra_losses": hist.extra_losses}
    if created_group:
        dist.destroy_process_group()
        forget_meshes()
    return summary
