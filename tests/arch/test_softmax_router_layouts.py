"""DeepSeek-V2 (softmax router over expert groups, shared experts, MLA) and gpt-oss (biased router and experts,
attention sinks, sliding-window layers), built from their Megatron flags with the aux loss and z-loss, give the losses
and router losses of data parallelism alone with expert, sequence-parallel tensor and context parallelism."""
import numpy as np
import pytest

from tests.arch.arch_helpers import DSV2, GPT_OSS, spawn_flag_runs

pytestmark = [pytest.mark.dist, pytest.mark.slow]

LAYOUTS = {"dp2": "", "ep2": "--expert-model-parallel-size 2", "tp2": "--tensor-model-parallel-size 2",
           "cp2": "--context-parallel-size 2"}


@pytest.fixture(scope="module")
def softmax_layouts(tmp_path_factory):
    """DeepSeek-V2 and gpt-oss, each with data, expert, sequence-parallel tensor and context parallelism."""
    runs = [(f"{flags} {extra}", {}, None) for flags in (DSV2, GPT_OSS) for extra in LAYOUTS.values()]
    summaries = spawn_flag_runs(2, tmp_path_factory.mktemp("softmax"), runs)[0]
    return {(name, layout): summaries[i * len(LAYOUTS) + j] for i, name in enumerate(("deepseek_v2", "gpt_oss"))
            for j, layout in enumerate(LAYOUTS)}


@pytest.mark.parametrize("name", ["deepseek_v2", "gpt_oss"])
@pytest.mark.parametrize("layout", ["ep2", "tp2", "cp2"])
def test_softmax_router_families_parallel_layouts_equal_data_parallel(name, layout, softmax_layouts):
    """DeepSeek-V2 (softmax router over groups, shared experts, MLA) and gpt-oss (biased router and experts, sinks,
    window layers), both with the aux loss and z-loss: with expert, sequence-parallel tensor and context parallelism
    the losses and router losses of data parallelism alone."""
    reference = softmax_layouts[name, "dp2"]
    np.testing.assert_allclose(softmax_layouts[name, layout]["losses"], reference["losses"], rtol=0, atol=1e-4)
    assert set(reference["extra_losses"][-1]) == {"z_loss", "load_balancing_loss"}
    for loss, value in reference["extra_losses"][-1].items():
        assert abs(softmax_layouts[name, layout]["extra_losses"][-1][loss] - value) < 1e-4, loss


