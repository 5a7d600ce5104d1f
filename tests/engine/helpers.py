"""Tiny models, synthetic data and gloo rank spawning for the engine tests."""
import os
import socket
import traceback

import numpy as np
import torch
import torch.multiprocessing as mp

from fsdp2_core.config import build_config

VOCAB, SEQ = 128, 32
LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": VOCAB,
         "max_position_embeddings": 64, "tie_word_embeddings": False}


class SyntheticDataset:
    """Deterministic Megatron-style samples: tokens, labels shifted by one, a loss mask, positions."""

    def __init__(self, n: int, seq: int = SEQ, vocab: int = VOCAB, seed: int = 0, ragged_mask: bool = False):
        rng = np.random.default_rng(seed)
        self.text = rng.integers(0, vocab, size=(n, seq + 1), dtype=np.int64)
        self.mask = np.ones((n, seq), dtype=np.float32)
        if ragged_mask:  # different token counts per sample, to exercise per-token normalisation
            for i in range(n):
                self.mask[i, rng.integers(seq // 4, seq):] = 0.0
        self.seq = seq

    def __len__(self):
        return len(self.text)

    def __getitem__(self, i):
        return {"tokens": self.text[i, :-1], "labels": self.text[i, 1:], "loss_mask": self.mask[i],
                "position_ids": np.arange(self.seq, dtype=np.int64)}


def tiny_config(tmp, **over):
    values = {"architecture": dict(LLAMA), "output_dir": str(tmp), "param_dtype": "fp32", "reduce_dtype": "fp32",
              "cutoff_len": SEQ, "max_steps": 10, "lr": 1e-3, "min_lr": 1e-4, "warmup_ratio": 0.1,
              "per_device_train_batch_size": 1, "global_batch_size": 4, "seed": 7, "stage": "pt",
              "data_manager_type": "mg", "logging_steps": 1, "train_from_scratch": True}
    values.update(over)
    return build_config(values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, fn, args, queue):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), FSDP2_DEVICE="cpu")
    torch.set_num_threads(1)
    try:
        queue.put((rank, fn(*args), None))
    except BaseException:  # report the failure to the parent instead of hanging it
        queue.put((rank, None, traceback.format_exc()))


def spawn(world: int, fn, *args, timeout: float = 240):
    """Run fn(*args) on `world` gloo ranks; return the results by rank, raising a rank's error."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, fn, args, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = {}
    try:
        for _ in range(world):
            rank, value, err = queue.get(timeout=timeout)
            if err:
                raise RuntimeError(f"rank {rank} failed:\n{err}")
            results[rank] = value
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return [results[r] for r in range(world)]


def datasets(ragged_mask: bool = False):
    return (SyntheticDataset(64, ragged_mask=ragged_mask), SyntheticDataset(16, seed=1, ragged_mask=ragged_mask),
            SyntheticDataset(8, seed=2, ragged_mask=ragged_mask))


def run_layouts(tmp, runs):
    """On every rank: run_training once per (overrides, port, ragged); return the summaries."""
    from fsdp2_core.train import run_training
    out = []
    for i, (over, port, ragged) in enumerate(runs):
        os.environ["MASTER_PORT"] = str(port)
        cfg = tiny_config(os.path.join(str(tmp), f"run{i}"), **over)
        out.append(run_training(cfg, datasets=datasets(ragged), print_fn=lambda s: None))
    return out


def spawn_layouts(world, tmp, runs, timeout=300):
    """runs: [(overrides, ragged_mask)]; each run gets its own port. Rank 0's summaries."""
    return spawn(world, run_layouts, str(tmp), [(o, free_port(), r) for o, r in runs], timeout=timeout)[0]


class NaNOnce:
    """Checkpoint hooks that poison the loss of one iteration (to test skipping), recording lines."""

    def __init__(self, bad_iteration: int):
        self.bad = bad_iteration
        self.calls = 0

    def load(self, state, model, optimizer, schedule):
        inner = model.lm_loss
        hooks = self

        def poisoned(*a, **k):
            s, n = inner(*a, **k)
            return (s * float("nan"), n) if hooks.iteration == hooks.bad else (s, n)

        self.iteration = 1
        model.lm_loss = poisoned

    def after_step(self, state, *_):
        self.iteration = state.iteration + 1
        return False

    def finish(self, *_):
        pass


def run_with_nan_and_profile(tmp):
    from fsdp2_core.train import run_training
    lines = []
    cfg = tiny_config(tmp, max_steps=6, eval_interval=3, eval_iters=2, profile=True, profile_step_start=1,
                      profile_step_end=3, profile_save_path=os.path.join(str(tmp), "prof"))
    summary = run_training(cfg, datasets=datasets(), checkpoint=NaNOnce(4), print_fn=lines.append)
    return summary, lines
