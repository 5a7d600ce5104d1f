"""DeepSeek-V2 (softmax router over expert groups, shared experts, MLA), gpt-oss (biased router and experts, attention
sinks, sliding-window layers) and MiniMax-M2 (sigmoid router with the expert bias on its block, q/k norms over all
heads), built from their Megatron flags with their router losses, give the losses and router losses of data
parallelism alone with expert, sequence-parallel tensor (not MiniMax-M2, which refuses it) and context parallelism."""
import numpy as np
import pytest

from tests.arch.arch_helpers import DSV2, GPT_OSS, MINIMAX_M2, spawn_flag_runs

pytestmark = [pytest.mark.dist, pytest.mark.slow]

LAYOUTS = {"dp2": "", "ep2": "--expert-model-parallel-size 2", "tp2": "--tensor-model-parallel-size 2",
           "cp2": "--context-parallel-size 2"}
RUNS = [(name, flags, layout) for name, flags in (("deepseek_v2", DSV2), ("gpt_oss", GPT_OSS),
                                                   ("minimax_m2", MINIMAX_M2))
        for layout in LAYOUTS if (name, layout) != ("minimax_m2", "tp2")]
LOSSES = {"deepseek_v2": {"z_loss", "load_balancing_loss"}, "gpt_oss": {"z_loss", "load_balancing_loss"},
          "minimax_m2": {"z_loss", "seq_load_balancing_loss"}}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    # 4 steps (BASE trains 8): enough for the bias, router losses and losses to diverge if a layout were wrong
    runs = [(f"{flags} {LAYOUTS[layout]} --train-iters 4", {}, None) for _, flags, layout in RUNS]
    summaries = spawn_flag_runs(2, tmp_path_factory.mktemp("layouts"), runs)[0]
    return {(name, layout): summary for (name, _, layout), summary in zip(RUNS, summaries)}


@pytest.mark.parametrize("name,layout", [(name, layout) for name, _, layout in RUNS if layout != "dp2"])
def test_parallel_layouts_equal_data_parallel(name, layout, layouts):
    reference = layouts[name, "dp2"]
    np.testing.assert_allclose(layouts[name, layout]["losses"], reference["losses"], rtol=0, atol=1e-4)
    assert set(reference["extra_losses"][-1]) == LOSSES[name]
    for loss, value in reference["extra_losses"][-1].items():
        assert abs(layouts[name, layout]["extra_losses"][-1][loss] - value) < 1e-4, loss
    if name == "minimax_m2":  # the expert bias (on the MoE block) moves alike, summed over the data-parallel ranks
        np.testing.assert_allclose(layouts[name, layout]["expert_bias"], reference["expert_bias"], rtol=0, atol=1e-6)
