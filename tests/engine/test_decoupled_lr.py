"""--decoupled-lr / --decoupled-min-lr: the embedding and output layer on their own LR, as megatron-core computes it.

megatron-core 0.16.1 builds the parameter groups itself (optimizer._get_param_groups with the standard overrides:
no weight decay for biases and 1-D parameters, max_lr/min_lr for parameters marked
`is_embedding_or_output_parameter`, which Megatron's language models set on the word embeddings and the output
layer); its OptimizerParamScheduler then sets every group's LR. Ours must give every parameter the same LR and
weight decay at every step of a warmup + decay, with the increments of a batch-size ramp-up, and log the same LR.
"""
import warnings

import pytest
import torch

from fsdp2_core.config.batch_schedule import RampupBatch
from fsdp2_core.testing.spawn import spawn
from fsdp2_core.testing.tiny import LLAMA, tiny_config
from fsdp2_core.train.lr_schedule import build_schedule
from fsdp2_core.train.optimizer import build_optimizer, logged_lr, param_groups

warnings.filterwarnings("ignore", category=UserWarning)
pytest.importorskip("megatron.core.optimizer")
pytestmark = [pytest.mark.dist, pytest.mark.slow]

ITERS, GBS = 60, 32
RAMP = RampupBatch(8, 8, 400, GBS)  # increments of 8, 16, 24, then 32 samples per step
GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "vocab_size": 96, "n_positions": 64,
        "tie_word_embeddings": True}


def _model(architecture):
    from transformers import AutoConfig, AutoModelForCausalLM
    arch = dict(architecture)
    config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config)


def _megatron_groups(model, t):
    """megatron-core's own parameter groups for `model`, with Megatron's embedding/output marks."""
    from megatron.core.optimizer import OptimizerConfig, _get_param_groups
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        module.weight.is_embedding_or_output_parameter = True  # what setup_embeddings_and_output_layer marks
    config = OptimizerConfig(lr=t.lr, min_lr=t.min_lr, decoupled_lr=t.decoupled_lr, decoupled_min_lr=t.decoupled_min_lr,
                             weight_decay=t.weight_decay)
    return _get_param_groups([model], config, None)


def compare_with_megatron(tmp, architecture, overrides):
    """Step both schedules side by side; (decoupled parameter names, worst difference, group counts)."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler, get_canonical_lr_for_logging
    t = tiny_config(tmp, architecture=architecture, max_steps=ITERS, global_batch_size=GBS, lr=3e-4, min_lr=3e-5,
                    weight_decay=0.1, lr_scheduler_type="cosine", lr_warmup_steps=6, lr_warmup_init=1e-6,
                    **overrides).training
    model = _model(architecture)
    ours = build_optimizer(model, t)
    theirs = type("Opt", (), {})()
    theirs.param_groups = _megatron_groups(model, t)
    schedule = build_schedule(t, ITERS, GBS)
    schedule.apply(ours)
    ref = OptimizerParamScheduler(theirs, init_lr=t.lr_warmup_init, max_lr=t.lr, min_lr=t.min_lr,
                                  lr_warmup_steps=schedule.warmup_steps, lr_decay_steps=schedule.decay_steps,
                                  lr_decay_style="cosine", start_wd=t.weight_decay, end_wd=t.weight_decay,
                                  wd_incr_steps=schedule.wd_incr_steps, wd_incr_style="constant")
    names = {id(p): n for n, p in model.named_parameters()}
    worst, consumed, decoupled = 0.0, 0, set()
    for it in range(ITERS + 3):
        mine = {id(p): (g["lr"], g["weight_decay"]) for g in ours.param_groups for p in g["params"]}
        ref_lr = {id(p): (g["lr"], g["weight_decay"]) for g in theirs.param_groups for p in g["params"]}
        assert mine.keys() == ref_lr.keys()
        for key, (lr, wd) in ref_lr.items():
            worst = max(worst, abs(mine[key][0] - lr) / lr, abs(mine[key][1] - wd))
            if mine[key][0] != pytest.approx(lr, rel=1e-12, abs=0) or mine[key][1] != pytest.approx(wd, abs=1e-15):
                raise AssertionError(f"iteration {it}, {names[key]}: ours {mine[key]}, megatron-core {(lr, wd)}")
        assert logged_lr(ours) == pytest.approx(get_canonical_lr_for_logging(theirs.param_groups), rel=1e-12)
        decoupled |= {names[id(p)] for g in ours.param_groups if g.get("is_decoupled_lr") for p in g["params"]}
        increment = RAMP.global_batch(consumed)
        consumed += increment
        schedule.step(ours, increment)
        ref.step(increment)
    return sorted(decoupled), worst, len(ours.param_groups), len(theirs.param_groups)


CASES = {
    "untied": (LLAMA, dict(decoupled_lr=1e-3, decoupled_min_lr=1e-5), ["lm_head.weight", "model.embed_tokens.weight"]),
    "decoupled-min-lr-default": (LLAMA, dict(decoupled_lr=1e-3), ["lm_head.weight", "model.embed_tokens.weight"]),
    "tied": (dict(LLAMA, tie_word_embeddings=True), dict(decoupled_lr=2e-4, decoupled_min_lr=0.0),
             ["model.embed_tokens.weight"]),                                         # the one shared weight
    "gpt2-learned-positions": (GPT2, dict(decoupled_lr=1e-3, decoupled_min_lr=1e-5), ["transformer.wte.weight"]),
    "off": (LLAMA, dict(), []),
}


def compare_all(tmp):
    import torch.distributed as dist
    dist.init_process_group("gloo")  # megatron-core gathers the group keys over the world
    try:
        return {name: compare_with_megatron(tmp, arch, over) for name, (arch, over, _) in CASES.items()}
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    return spawn(1, compare_all, str(tmp_path_factory.mktemp("decoupled")))[0]


@pytest.mark.parametrize("case", CASES)
def test_decoupled_lr_equals_megatron_core(compared, case):
    got, worst, ours, theirs = compared[case]
    assert got == CASES[case][2] and ours == theirs and worst < 1e-12


def test_decoupled_groups_keep_weight_decay_grouping(tmp_path):
    t = tiny_config(tmp_path, decoupled_lr=1e-3).training
    groups = param_groups(_model(LLAMA), t)
    assert [(len(g["params"]), g["wd_mult"], g.get("is_decoupled_lr"), g.get("default_config")) for g in groups] == [
        (14, 1.0, None, None), (5, 0.0, None, None), (2, 1.0, True, False)]  # older checkpoints' keys elsewhere
    assert [len(g["params"]) for g in param_groups(_model(LLAMA), tiny_config(tmp_path).training)] == [16, 5]
