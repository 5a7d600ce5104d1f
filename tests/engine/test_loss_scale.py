"""fp16 loss scaling (fsdp2_core/train/loss_scale.py): Megatron's grad scalers, checked against megatron-core's
own classes; in training, a static scale that changes nothing but the arithmetic's range, overflowing fp16
iterations skipped while the dynamic scale backs off (not counted as divergence), and the scale resumed exactly."""
import os
import random
import re
from unittest import mock

import pytest
import torch

from fsdp2_core.config import build_config
from fsdp2_core.config.schema import ConfigError
from fsdp2_core.testing.spawn import spawn
from fsdp2_core.train.loss_scale import LossScaler, build_loss_scaler

megatron_scaler = pytest.importorskip("megatron.core.optimizer.grad_scaler")


def _on_cpu(*args, device=None, **kw):
    return _TENSOR(*args, **kw)


_TENSOR = torch.tensor


def test_dynamic_scaler_follows_megatron_core_step_by_step():
    """The same overflow pattern (bursts and calm stretches) through both: identical scale and trackers."""
    rng = random.Random(3)
    pattern = [rng.random() < 0.35 if k % 40 < 20 else False for k in range(400)]
    with mock.patch.object(megatron_scaler.torch, "tensor", _on_cpu):  # megatron-core puts its scale on CUDA
        theirs = megatron_scaler.DynamicGradScaler(initial_scale=2.0 ** 9, min_scale=8.0, growth_factor=2.0,
                                                   backoff_factor=0.5, growth_interval=7, hysteresis=3)
    ours = LossScaler(2.0 ** 9, dynamic=True, min_scale=8.0, growth_interval=7, hysteresis=3)
    scales = set()
    for found_inf in pattern:
        theirs.update(found_inf)
        ours.update(found_inf)
        assert ours.scale == float(theirs.scale) and ours.state_dict()["growth_tracker"] == theirs._growth_tracker
        assert ours.hysteresis_tracker == theirs._hysteresis_tracker
        scales.add(ours.scale)
    assert min(scales) == 8.0 and len(scales) > 5  # it backed off to the floor and grew again


def test_unscale_multiplies_by_megatron_core_inverse():
    with mock.patch.object(megatron_scaler.torch, "tensor", _on_cpu):
        theirs = megatron_scaler.ConstantGradScaler(12.0)
    grads = [torch.randn(5, 3), torch.randn(7)]
    expected = [g * theirs.inv_scale for g in grads]
    LossScaler(12.0).unscale(grads)
    assert all(torch.equal(g, e) for g, e in zip(grads, expected))


def test_which_scaler_a_config_gets(tmp_path):
    cfg = build_config({"output_dir": str(tmp_path), "model_name_or_path": "x", "param_dtype": "fp16",
                        "initial_loss_scale": 1024.0, "hysteresis": 4})
    scaler = build_loss_scaler("fp16", cfg.training)
    assert (scaler.scale, scaler.dynamic, scaler.hysteresis, scaler.growth_interval) == (1024.0, True, 4, 1000)
    assert build_loss_scaler("bf16", cfg.training) is None
    cfg.training.loss_scale = 12.0
    assert (build_loss_scaler("bf16", cfg.training).scale, build_loss_scaler("fp16", cfg.training).dynamic) == \
        (12.0, False)
    with pytest.raises(ConfigError, match=r"min_loss_scale \(2048.0\) is above initial_loss_scale \(1024.0\)"):
        build_config({"output_dir": str(tmp_path), "model_name_or_path": "x", "min_loss_scale": 2048.0,
                      "initial_loss_scale": 1024.0})
    with pytest.raises(ConfigError, match=r"loss_scale must be > 0 \(or unset for dynamic fp16 scaling\), got -1.0"):
        build_config({"output_dir": str(tmp_path), "model_name_or_path": "x", "loss_scale": -1.0})


SCALE = re.compile(r" loss scale: ([\d.]+) \|")


def _runs(tmp):
    """On one rank: fp32 with and without a static scale; fp16 from a scale that overflows; fp16 cut at 6 and
    resumed, beside the same run uninterrupted."""
    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.testing.tiny import datasets, tiny_config
    from fsdp2_core.train import CheckpointHooks, run_training

    def run(name, **over):
        lines = []
        cfg = tiny_config(os.path.join(tmp, over.pop("out", name)), save_hf_weights=False, **over)
        hooks = Checkpointer(cfg) if over.get("save_steps") or over.get("resume_from_checkpoint") else \
            CheckpointHooks()
        summary = run_training(cfg, datasets=datasets(), checkpoint=hooks, print_fn=lines.append)
        return summary, [float(m.group(1)) for m in map(SCALE.search, lines) if m]

    fp16 = dict(param_dtype="fp16", max_steps=14, initial_loss_scale=2.0 ** 24, hysteresis=1,
                loss_scale_window=4, max_skipped_iterations=0)
    return {"fp32": run("fp32"), "static": run("static", loss_scale=1024.0),
            "fp16": run("fp16", **fp16),
            "part": run("part", save_steps=6, exit_interval=6, out="resumed", **fp16),
            "rest": run("rest", resume_from_checkpoint="latest", out="resumed", **fp16),
            "bf16_part": run("bf16_part", param_dtype="bf16", max_steps=14, save_steps=4, exit_interval=4,
                             out="switched"),
            "switched": run("switched", resume_from_checkpoint="latest", out="switched", **fp16)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    result, = spawn(1, _runs, str(tmp_path_factory.mktemp("loss_scale")), timeout=400)
    return result


@pytest.mark.dist
@pytest.mark.slow
def test_a_static_power_of_two_scale_changes_nothing_in_fp32(runs):
    (plain, plain_scales), (scaled, scaled_scales) = runs["fp32"], runs["static"]
    assert scaled["losses"] == plain["losses"] and scaled["grad_norms"] == plain["grad_norms"]
    assert set(plain_scales) == {1.0} and set(scaled_scales) == {1024.0}


@pytest.mark.dist
@pytest.mark.slow
def test_fp16_overflows_are_skipped_while_the_scale_backs_off(runs):
    summary, scales = runs["fp16"]
    overflows, before = [], 2.0 ** 24
    for scale in scales:  # hysteresis 1: an overflow halves the scale at once
        overflows.append(scale < before)
        before = scale
    assert summary["skipped_iterations"] == sum(overflows) > 0, scales
    assert summary["nan_iterations"] == 0  # and max_skipped_iterations 0 did not stop it: overflows do not count
    expected = LossScaler(2.0 ** 24, dynamic=True, growth_interval=4, hysteresis=1)
    for overflow, scale in zip(overflows, scales):
        expected.update(overflow)
        assert scale == expected.scale, scales
    assert any(b == 2 * a for a, b in zip(scales, scales[1:])), scales  # window 4: grown after four clean ones
    assert all(loss < 10 for loss in summary["losses"])


@pytest.mark.dist
@pytest.mark.slow
def test_the_scale_resumes_where_it_stopped(runs):
    (full, full_scales), (part, part_scales), (rest, rest_scales) = runs["fp16"], runs["part"], runs["rest"]
    assert part["iteration"] == 6 and rest["iteration"] == 14
    assert part_scales + rest_scales == full_scales
    assert part["losses"] + rest["losses"] == full["losses"]


@pytest.mark.dist
@pytest.mark.slow
def test_a_checkpoint_without_loss_scale_state_resumes_with_a_fresh_scale(runs):
    """A bf16 run's checkpoint holds no scaler state: the fp16 run that resumes it starts from initial_loss_scale."""
    (switched, scales) = runs["switched"]
    assert switched["iteration"] == 14 and len(scales) == 10
    assert scales[0] in (2.0 ** 24, 2.0 ** 23)  # the first iteration after the resume kept or halved the initial
