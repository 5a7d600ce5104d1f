"""Each family, built from its Megatron flag set, trains on 2 gloo ranks with a falling loss and exports a Hugging
Face model that from_pretrained loads with the trained model's logits; the DeepSeek-V3-style model gives the same
losses with expert, tensor and context parallelism as without; its expert bias moves after every step; the router and
MTP losses are in Megatron's iteration line."""
import numpy as np
import pytest
import torch

from tests.arch.arch_helpers import DSV2_MINDSPEED, DSV3, FAMILIES, export_with_trained_logits, spawn_flag_runs

pytestmark = [pytest.mark.dist, pytest.mark.slow]

PROBE = torch.as_tensor(np.random.default_rng(3).integers(0, 128, size=(2, 32)))


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory):
    names = ["deepseek_v3", "deepseek_v2", "gpt_oss", "minimax_m2", "glm4_moe", "qwen2_moe",
                                  "llama", "mistral", "granite"]
    # MindSpeed's DeepSeek-V2 router with its expert-, device- and communication-level losses per sample
    balanced = (DSV2_MINDSPEED.replace("--moe-aux-loss-coeff 0", "--moe-aux-loss-coeff 0.003")
                + " --moe-device-level-aux-loss-coeff 0.05 --moe-comm-aux-loss-coeff 0.02 --seq-aux")
    summaries = spawn_flag_runs(2, tmp_path_factory.mktemp("families"),
                                [(FAMILIES[name], {}, PROBE) for name in names] + [(balanced, {}, None)])
    names = names + ["deepseek_v2_balanced"]
    return {name: (summaries[0][i], summaries[1][i]) for i, name in enumerate(names)}


@pytest.fixture(scope="module")
def dsv3_layouts(tmp_path_factory):
    layouts = {"dp2": "", "ep2": "--expert-model-parallel-size 2", "tp2": "--tensor-model-parallel-size 2",
               "cp2": "--context-parallel-size 2"}
    over = {}  # with MTP, tensor parallelism runs without sequence parallelism (the translation turns it off)
    runs = [(f"{DSV3} {extra}", over.get(name, {}), None) for name, extra in layouts.items()]
    # MLA under sequence-parallel TP, against data parallelism, without the MTP layer
    no_mtp = DSV3.replace("--mtp-num-layers 1 --mtp-loss-scaling-factor 0.3", "")
    runs += [(no_mtp, {}, None), (f"{no_mtp} --tensor-model-parallel-size 2", {}, None)]
    summaries = spawn_flag_runs(2, tmp_path_factory.mktemp("dsv3"), runs)[0]
    return dict(zip(list(layouts) + ["dp2_no_mtp", "tp2_sp_no_mtp"], summaries))


@pytest.mark.parametrize("name", ["deepseek_v3", "deepseek_v2", "gpt_oss", "minimax_m2", "glm4_moe", "qwen2_moe",
                                  "llama", "mistral", "granite"])
def test_family_trains_and_exports(name, family_runs):
    rank0, rank1 = family_runs[name]
    losses = rank0["losses"]
    assert len(losses) == 8 and losses == rank1["losses"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    hf = export_with_trained_logits(rank0, PROBE)
    assert hf.config.model_type == name


def test_dsv3_logs_megatrons_router_and_mtp_losses(family_runs):
    rank0, _ = family_runs["deepseek_v3"]
    line = next(line for line in rank0["lines"] if " iteration        8/       8 |" in line)
    order = [line.index(name) for name in (" lm loss:", " z_loss:", " seq_load_balancing_loss:", " mtp_1 loss:",
                                           " loss scale:")]
    assert order == sorted(order), line
    extra = rank0["extra_losses"][-1]
    assert set(extra) == {"z_loss", "seq_load_balancing_loss", "mtp_1 loss"}
    assert 0.5 < extra["seq_load_balancing_loss"] < 2.0 and extra["mtp_1 loss"] > rank0["losses"][-1] - 1.0


def test_deepseek_v2_device_and_comm_losses_train_and_are_logged(family_runs):
    rank0, rank1 = family_runs["deepseek_v2_balanced"]
    losses = rank0["losses"]
    assert losses == rank1["losses"] and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    line = next(line for line in rank0["lines"] if " iteration        8/       8 |" in line)
    names = ("seq_load_balancing_loss", "load_balancing_device_level_loss", "load_balancing_comm_level_loss")
    assert all(f" {name}:" in line for name in names), line
    extra = rank0["extra_losses"][-1]
    assert set(names) <= set(extra) and all(0.3 < extra[name] < 3.0 for name in names), extra


def test_expert_bias_moves_by_the_rate_every_step(family_runs):
    for name in ("deepseek_v3", "glm4_moe", "minimax_m2"):  # MiniMax-M2: the bias on the MoE block, not the router
        rank0, rank1 = family_runs[name]
        rate = 1e-3 if name == "glm4_moe" else 1e-2
        steps = [torch.tensor(layers) for layers in rank0["expert_bias"]]
        assert len(steps) == 8 and steps[0].shape[0] == 3 - (name == "glm4_moe")  # MoE layers (+ the MTP layer)
        previous = torch.zeros_like(steps[0])
        for i, bias in enumerate(steps):
            moved = (bias - previous) / rate
            assert torch.allclose(moved, moved.round(), atol=1e-4) and moved.abs().max() <= 1 + 1e-4, (name, i)
            assert (moved != 0).any(), (name, i)  # some expert's load was off the mean
            previous = bias
        for a, b in zip(rank0["expert_bias"], rank1["expert_bias"]):  # every rank holds the same bias
            assert a == b


@pytest.mark.parametrize("layout", ["ep2", "tp2", "cp2"])
def test_dsv3_parallel_layouts_equal_data_parallel(layout, dsv3_layouts):
    reference = dsv3_layouts["dp2"]["losses"]
    np.testing.assert_allclose(dsv3_layouts[layout]["losses"], reference, rtol=0, atol=1e-4)
    for name, value in dsv3_layouts["dp2"]["extra_losses"][-1].items():
        assert abs(dsv3_layouts[layout]["extra_losses"][-1][name] - value) < 1e-4, name


def test_mla_under_sequence_parallel_tensor_parallelism_equals_data_parallel(dsv3_layouts):
    reference = dsv3_layouts["dp2_no_mtp"]["losses"]
    np.testing.assert_allclose(dsv3_layouts["tp2_sp_no_mtp"]["losses"], reference, rtol=0, atol=1e-4)
