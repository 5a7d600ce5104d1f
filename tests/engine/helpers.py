"""Engine test runs: several run_training calls per spawn, hooks that poison one iteration, and a tiny model with
the loss installed beside a synthetic batch."""
import os

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from fsdp2_core.testing.spawn import spawn_runs
from fsdp2_core.testing.tiny import LLAMA, SyntheticDataset, datasets, tiny_config
from fsdp2_core.train.loss import install_loss


def llama_with_loss(rows: int, seed: int):
    """A seeded tiny Llama with `model.lm_loss`, and `rows` synthetic samples with ragged loss masks stacked."""
    torch.manual_seed(0)
    arch = dict(LLAMA)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch.pop("model_type"), **arch))
    install_loss(model)
    data = SyntheticDataset(rows, ragged_mask=True, seed=seed)
    batch = {k: torch.as_tensor(np.stack([data[i][k] for i in range(rows)])) for k in data[0]}
    return model, batch


def run_layout(run):
    """One run_training on every rank: run = (output dir, overrides, ragged_mask); its summary."""
    from fsdp2_core.train import CheckpointHooks, run_training
    out_dir, over, ragged = run
    return run_training(tiny_config(out_dir, **over), datasets=datasets(ragged), checkpoint=CheckpointHooks(),
                        print_fn=lambda s: None)


def spawn_layouts(world, tmp, runs, timeout=300):
    """runs: [(overrides, ragged_mask)], one after another on `world` ranks. Rank 0's summaries."""
    runs = [(os.path.join(str(tmp), f"run{i}"), over, ragged) for i, (over, ragged) in enumerate(runs)]
    return spawn_runs(world, run_layout, runs, timeout=timeout)[0]


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
