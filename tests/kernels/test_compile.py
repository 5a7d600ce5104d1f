"""compile_blocks: each transformer block's forward compiled (before recompute and FSDP); same losses as eager."""

import pytest
import torch.nn as nn

from tests.kernels.train_helpers import train_runs


@pytest.mark.slow
@pytest.mark.dist
def test_compiled_blocks_train_like_eager(tmp_path):
    base = {"max_steps": 4, "global_batch_size": 2}
    eager, compiled = train_runs(2, tmp_path, [base, {**base, "compile_blocks": True, "recompute": True,
                                                      "recompute_modules": ["model.layers.{*}"]}], timeout=500)
    assert len(compiled["losses"]) == 4
    assert eager["compiled_graphs"] == 0 and compiled["compiled_graphs"] >= 1  # compiled, not silently eager
    for a, b in zip(eager["losses"], compiled["losses"]):
        assert abs(a - b) <= 1e-4 * abs(a), (eager["losses"], compiled["losses"])


def test_apply_compile_keeps_parameter_names():
    from transformers import AutoConfig, AutoModelForCausalLM

    from fsdp2_core.kernels.compile import apply_compile
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=64))
    names = [n for n, _ in model.named_parameters()]
    assert apply_compile(model) == 2
    assert [n for n, _ in model.named_parameters()] == names
    assert all(getattr(b, "_fsdp2_compiled", False) for b in model.model.layers)
    from fsdp2_core.config import ConfigError
    with pytest.raises(ConfigError, match="compile_blocks"):
        apply_compile(nn.Sequential(nn.Linear(2, 2)))
