"""Checkpoints, exact resume, graceful exits and Hugging Face export: the engine's `CheckpointHooks`.

    layout      iter_XXXXXXX/ and latest_checkpointed_iteration.txt, completeness, which one to resume
    state       what a checkpoint holds (model, optimizer, scheduler, counters, RNG) as one DCP state dict
    save        synchronous / asynchronous DCP save, published by rename, tracker written last
    checksums   CRC-32 of every file, recorded at save, verified at resume (damaged latest: the one before)
    load        resume, --no-load-optim, --no-load-rng, --finetune, resharding to another world size
    megatron/   Megatron-LM checkpoints: read (torch, torch_dist), continue a run from one, write one
    rotation    save_total_limit
    signals     SIGTERM / SIGINT and exit_duration_in_mins, agreed on by every rank
    run_lock    one live run per save directory (a lock file with a heartbeat)
    hf_export   safetensors + config + generation config + tokenizer, streamed one tensor at a time

When saves happen (Megatron's rules): every `save_steps` iterations (0: only at the end), at
every `save_epochs`-th epoch boundary of an epoch-based run (max_steps unset), when a batch-size
ramp-up changes the number of micro-batches (before the first iteration with the new count), at
`exit_interval`, on a caught signal or when `exit_duration_in_mins` has passed (then the
run stops), and at the end of training. A completed run with `save_hf_weights` then writes
<output_dir>/hf_model/. A run stopped early (exit interval, signal, duration) exports nothing:
its checkpoint is the way on.

Preemption: with exit_signal_handler, SIGTERM or SIGINT (from a scheduler, torchrun, Ctrl-C), once
or repeatedly, finishes the iteration, saves and exits 0; the log names the signal and the
checkpoint. Under torchrun the save must fit in torchrun's shutdown timeout (30 s unless
--shutdown-timeout / TORCH_ELASTIC_SHUTDOWN_TIMEOUT says otherwise), after which it SIGKILLs the
ranks; see docs/preemption.md.
"""
import logging
import os
from typing import Callable, Optional

import torch.distributed as dist

from fsdp2_core.models.lora import has_lora

from .hf_export import (
    DEFAULT_MAX_SHARD_BYTES,
    HF_DIR,
    TOKENIZER_DIR,
    export_checkpoint,
    export_model,
    hf_class_name,
    hf_tokenizer,
    inference_config,
)
from .layout import TRACKER, CheckpointError, completeness, iter_dir, latest_complete, read_tracker
from .load import load_checkpoint, resolve
from .lora_export import export_lora
from .megatron.detect import locate as locate_megatron
from .megatron.resume import load_megatron
from .run_lock import RunLock
from .save import Saver
from .signals import ExitSignals, signal_name
from .state import state_to_save

log = logging.getLogger(__name__)

__all__ = ["Checkpointer", "CheckpointError", "export_checkpoint", "export_model", "HF_DIR", "TRACKER",
           "iter_dir", "latest_complete", "read_tracker", "completeness"]


class Checkpointer:
    """The engine's checkpoint hooks (the protocol of fsdp2_core.train.checkpoint_hooks.CheckpointHooks); the entry
    points hand one to `run_training`."""

    def __init__(self, cfg, hf_max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES):
        self.cfg = cfg
        self.t = cfg.training
        self.hf_max_shard_bytes = hf_max_shard_bytes
        self.saved_iteration: Optional[int] = None
        self.loaded: Optional[dict] = None
        self.exit_reason: Optional[str] = None
        self.hf_dir: Optional[str] = None
        self.run_lock: Optional[RunLock] = None
        self.signals: Optional[ExitSignals] = None

    # ------------------------------------------------------------------ run_training's calls
    def setup(self, *, device, tokenizer=None, train_iters: int, global_batch: int,
              steps_per_epoch: Optional[int] = None, print_fn: Optional[Callable[[str], None]] = None,
              launcher_watch=None, **_) -> None:
        """Collective (creates the checkpoint process group, takes the save directory's lock): once before `load`.

        `launcher_watch` (fsdp2_core.train.launcher_watch): its `safe_point` guards each checkpoint write,
        and it is told when a signal has started a graceful stop and how to release the lock."""
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        # DCP's own collectives run on a separate gloo group: an asynchronous save's thread must not
        # interleave with the training collectives, and gloo carries them on any accelerator.
        self.group = dist.new_group(backend="gloo") if dist.is_initialized() and self.world > 1 else None
        self.tokenizer = tokenizer
        self.train_iters, self.global_batch = train_iters, global_batch
        self.epoch_every = steps_per_epoch * self.t.save_epochs if steps_per_epoch and self.t.save_epochs else None
        self.print = print_fn or (lambda s: print(s, flush=True) if self.rank == 0 else None)
        self.save_dir = self.t.output_dir
        self._lock_save_dir()
        self.saver = Saver(self.save_dir, self.group, self.rank, bool(self.t.save_async), self.t.save_total_limit,
                           guard=launcher_watch.safe_point if launcher_watch is not None else None,
                           retain_interval=self.t.save_retain_interval)
        self.signals = ExitSignals(bool(self.t.exit_signal_handler), self.t.exit_duration_in_mins,
                                   device.torch_device, self.rank)
        self.signals.install()
        if launcher_watch is not None:
            launcher_watch.stopping = lambda: self.signals.stopping
            launcher_watch.on_exit.append(self._release_lock)

    def _lock_save_dir(self) -> None:
        """Rank 0 takes <output_dir>/run.lock; every rank raises the same CheckpointError when a live run holds it."""
        error = None
        if self.rank == 0 and self.save_dir:
            self.run_lock = RunLock(self.save_dir, warn=self._warn)
            try:
                self.run_lock.acquire()
            except CheckpointError as exc:
                self.run_lock, error = None, str(exc)
        if self.group is not None:
            box = [error]
            dist.broadcast_object_list(box, src=0, group=self.group)
            error = box[0]
        if error:
            raise CheckpointError(error)

    def close(self) -> None:
        """When the run ends, however it ends: the signal handlers go back, the save directory's lock goes."""
        if self.signals is not None:
            self.signals.restore()
        self._release_lock()

    def _release_lock(self) -> None:
        lock, self.run_lock = self.run_lock, None
        if lock is not None:
            lock.release()

    def _warn(self, text: str) -> None:
        log.warning(text)
        self.print(f"WARNING: {text}")

    def load(self, state, model, optimizer, schedule) -> None:
        request = self.t.resume_from_checkpoint
        if request and request != "latest" and locate_megatron(request) is not None:
            self.loaded = load_megatron(request, self.t, model, optimizer, schedule, state, self.rank, self.print)
            self.print(f" loaded Megatron {self.loaded['format']} checkpoint {self.loaded['path']} at iteration "
                       f"{state.iteration}, consumed samples {state.consumed_train_samples} "
                       f"(restored {', '.join(self.loaded['restored'])})")
            return
        path = resolve(self.t.resume_from_checkpoint, self.save_dir, self.rank, self.group, warn=self._warn)
        if path is None:
            return
        self.loaded = load_checkpoint(path, self.t, model, optimizer, schedule, state, self.rank, self.world,
                                      self.global_batch, self.group, warn=self._warn)
        self.print(f" loaded checkpoint from {path} at iteration {state.iteration} "
                   f"(restored {', '.join(self.loaded['restored'])})")

    def after_step(self, state, model, optimizer, schedule) -> bool:
        self.saver.poll()
        it = state.iteration
        due = bool(self.t.save_steps) and it % self.t.save_steps == 0
        due = due or (self.epoch_every is not None and it % self.epoch_every == 0)
        if self.t.exit_interval and it % self.t.exit_interval == 0:
            self.exit_reason = f"exit_interval {self.t.exit_interval}"
        why = self.signals.should_exit()
        if why == "signal":
            self.exit_reason = f"{signal_name(self.signals.agreed)} received"
            self.print(f" {signal_name(self.signals.agreed)} received: saving a checkpoint at iteration {it}, "
                       "then exiting")
        elif why == "duration":
            self.exit_reason = f"exit_duration_in_mins {self.t.exit_duration_in_mins}"
        if due or self.exit_reason:
            self.save(state, model, optimizer, schedule)
        if self.exit_reason:
            self.saver.wait()
            self.print(f" exiting program at iteration {it} ({self.exit_reason}); resume with "
                       f"resume_from_checkpoint: latest")
            return True
        return False

    def batch_size_changed(self, state, model, optimizer, schedule) -> None:
        if self.saved_iteration != state.iteration:  # after_step may have saved this iteration already
            self.save(state, model, optimizer, schedule)

    def finish(self, state, model, optimizer, schedule) -> None:
        try:
            it = state.iteration
            if it > 0 and it != self.saved_iteration and not (self.loaded and self.loaded["iteration"] == it):
                self.save(state, model, optimizer, schedule)
            self.saver.wait()
            if self.t.save_hf_weights and self.exit_reason is None and it >= self.train_iters and has_lora(model):
                written = export_lora(model, self.cfg, self.save_dir, self.tokenizer,
                                      self.group, self.hf_max_shard_bytes)
                self.hf_dir = written.get("merged")  # LoRA: the adapter, and the merged model on request
                self.print(f" LoRA export written to {', '.join(written.values())}")
            elif self.t.save_hf_weights and self.exit_reason is None and it >= self.train_iters:
                self.hf_dir = os.path.join(self.save_dir, HF_DIR)
                export_model(model, self.hf_dir, tokenizer=self.tokenizer, max_shard_bytes=self.hf_max_shard_bytes,
                             group=self.group)
                self.print(f" Hugging Face model written to {self.hf_dir}")
        finally:
            self.signals.restore()

    # ------------------------------------------------------------------ saving
    def save(self, state, model, optimizer, schedule) -> None:
        t = self.t
        with_optim = t.save_optim and not t.save_only_model
        with_rng = t.save_rng and not t.save_only_model
        sd = state_to_save(model, optimizer, schedule, state, self.rank, with_optim, with_rng)
        info = {"format": "fsdp2_core.checkpoint/1", "world_size": self.world,
                "consumed_train_samples": state.consumed_train_samples, "global_batch_size": self.global_batch,
                "train_iters": self.train_iters, "sections": sorted(sd)}

        def extras(directory: str) -> None:
            config = getattr(model, "config", None)
            if config is None:
                return
            inference_config(config, hf_class_name(model), None).save_pretrained(directory)
            gen = getattr(model, "generation_config", None)
            if gen is not None:
                gen.save_pretrained(directory)
            tok = hf_tokenizer(self.tokenizer)
            if tok is not None:
                tok.save_pretrained(os.path.join(directory, TOKENIZER_DIR))

        self.saver.save(state.iteration, sd, extras, info)
        self.saved_iteration = state.iteration
        self.print(f" {'saving' if t.save_async else 'saved'} checkpoint at iteration {state.iteration} to "
                   f"{self.save_dir}{' (in the background)' if t.save_async else ''}")
