"""What a continued run takes from a Megatron checkpoint, checked in one process: weights, counters, the LR
schedule (refused when the run's differs), Adam's moments where stored per parameter, else one line."""
import types

import pytest
import torch

from tests.megatron_ckpt.conftest import save_dir
from tests.megatron_ckpt.mcore import GBS, ITERATION, MOMENTS

pytestmark = [pytest.mark.dist, pytest.mark.slow]
CONSUMED = ITERATION * GBS + 3


def _run_objects(path, max_lr=1e-3):
    from transformers import AutoModelForCausalLM

    from fsdp2_core.checkpoint.megatron.checkpoint import open_checkpoint
    from fsdp2_core.train.loop import TrainState
    from fsdp2_core.train.lr_schedule import LRSchedule
    from megatron_compat.checkpoint_args import hf_config_for
    config, _ = hf_config_for(open_checkpoint(path))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=max_lr)
    schedule = LRSchedule(max_lr=max_lr, min_lr=1e-4, init_lr=0.0, warmup_steps=2 * GBS, decay_steps=20 * GBS,
                          style="cosine", start_wd=0.01, end_wd=0.01, wd_incr_steps=20 * GBS)
    return model, optimizer, schedule, TrainState()


def _load(path, max_lr=1e-3, **flags):
    from fsdp2_core.checkpoint.megatron.resume import load_megatron
    t = types.SimpleNamespace(finetune=False, load_optim=True, load_rng=True, trust_megatron_pickle=False)
    t.__dict__.update(flags)
    model, optimizer, schedule, state = _run_objects(path, max_lr)
    lines = []
    loaded = load_megatron(path, t, model, optimizer, schedule, state, 0, lines.append)
    return loaded, model, optimizer, schedule, state, lines


def test_moments_and_master_weights_of_a_fully_reshardable_checkpoint(megatron_root):
    loaded, model, optimizer, schedule, state, lines = _load(save_dir(megatron_root, "qwen3", "torch_dist_optim"))
    assert "optimizer moments" in loaded["restored"] and not lines
    assert (state.iteration, state.consumed_train_samples, schedule.num_steps) == (ITERATION, CONSUMED, CONSUMED)
    plain = _load(save_dir(megatron_root, "qwen3", "torch_dist"))[1]  # the same weights, without optimizer state
    before = dict(plain.named_parameters())
    assert len(optimizer.state) == len(list(model.parameters()))
    for name, p in model.named_parameters():
        w = before[name].detach()
        torch.testing.assert_close(p.detach(), MOMENTS["fp32_param"](w), rtol=0, atol=1e-6, msg=name)
        st = optimizer.state[p]
        assert float(st["step"]) == ITERATION
        torch.testing.assert_close(st["exp_avg"], MOMENTS["exp_avg"](w), rtol=0, atol=1e-6, msg=name)
        torch.testing.assert_close(st["exp_avg_sq"], MOMENTS["exp_avg_sq"](w), rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("fmt,why", [("torch", "torch (legacy) checkpoint"),
                                     ("torch_dist", "holds no optimizer state")])
def test_fresh_moments_are_said_in_one_line(megatron_root, fmt, why):
    loaded, _, optimizer, schedule, state, lines = _load(save_dir(megatron_root, "llama", fmt))
    assert len(optimizer.state) == 0 and "optimizer moments" not in loaded["restored"]
    assert len(lines) == 1 and lines[0].startswith(" optimizer moments start fresh:") and why in lines[0]
    assert (state.iteration, state.consumed_train_samples, schedule.num_steps) == (ITERATION, CONSUMED, CONSUMED)


def test_megatrons_default_optimizer_layout_is_named():
    from fsdp2_core.checkpoint.megatron.moments import why_not
    ckpt = types.SimpleNamespace(format="torch_dist", path="CKPT", common={"optimizer": {
        "param_state_sharding_type": "dp_reshardable"}}, reader=types.SimpleNamespace(tensors=lambda: {}))
    assert "stores Megatron's distributed optimizer as dp_reshardable" in why_not(ckpt)


def test_the_adam_step_of_either_optimizer_layout():
    from fsdp2_core.checkpoint.megatron.moments import adam_step
    distributed = {"optimizer": {"param_groups": [{"lr": 1e-3, "step": 9}, {"lr": 1e-3, "step": 9}]}}
    others = {"optimizer": {"state": {"common_step": torch.tensor(7)}, "param_groups": [{"lr": 1e-3}]}}
    chained = [{"optimizer": {"param_groups": [{"step": 4}]}}, {"optimizer": {"param_groups": [{"step": 5}]}}]
    steps = [adam_step(types.SimpleNamespace(common={"optimizer": o})) for o in (distributed, others, chained)]
    assert steps == [9, 7, None]  # two different steps name no single one


def test_a_different_schedule_is_refused_naming_the_field(megatron_root):
    from fsdp2_core.checkpoint.layout import CheckpointError
    with pytest.raises(CheckpointError, match=r"max_lr: run 0.002, checkpoint 0.001"):
        _load(save_dir(megatron_root, "llama", "torch"), max_lr=2e-3)


def test_no_load_optim_and_finetune_as_in_megatron(megatron_root):
    path = save_dir(megatron_root, "llama", "torch_dist")
    loaded, _, _, schedule, state, lines = _load(path, load_optim=False)
    assert (state.iteration, state.consumed_train_samples, schedule.num_steps) == (ITERATION, CONSUMED, 0)
    assert "scheduler" not in loaded["restored"] and "starts at step 0" in lines[0]
    loaded, _, _, schedule, state, _ = _load(path, finetune=True)
    assert (state.iteration, state.consumed_train_samples, schedule.num_steps) == (0, 0, 0)
    assert loaded["restored"] == ["model"]


def test_rng_state_is_restored_unless_no_load_rng(megatron_root):
    import random
    random.seed(99)
    loaded = _load(save_dir(megatron_root, "llama", "torch"))[0]
    assert "rng" in loaded["restored"]
    after = random.random()
    random.seed(99)
    assert "rng" not in _load(save_dir(megatron_root, "llama", "torch"), load_rng=False)[0]["restored"]
    assert random.random() != after
