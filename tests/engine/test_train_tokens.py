"""training.train_tokens (Megatron-DeepSpeed's --train-tokens beside --train-samples): the run stops before the first
iteration that would start with that many tokens consumed, while the LR schedule and the data keep the run's
length in samples, as Megatron-DeepSpeed's train loop (`while iteration < train_iters and consumed_train_tokens <
train_tokens`)."""
import os

import pytest

from fsdp2_core.config import ConfigError
from fsdp2_core.testing.spawn import spawn
from fsdp2_core.testing.tiny import SEQ


def _runs(tmp):
    from fsdp2_core.testing.tiny import datasets, tiny_config
    from fsdp2_core.train import CheckpointHooks, run_training

    def run(name, **over):
        cfg = tiny_config(os.path.join(tmp, name), save_hf_weights=False, max_steps=-1, train_samples=40, **over)
        return run_training(cfg, datasets=datasets(), checkpoint=CheckpointHooks(), print_fn=lambda s: None)

    # 4 samples × SEQ tokens per iteration: 6 iterations hold 24 × SEQ tokens, one more than that needs a 7th
    return {"whole": run("whole"), "tokens": run("tokens", train_tokens=24 * SEQ + 1),
            "exact": run("exact", train_tokens=24 * SEQ)}


@pytest.mark.dist
@pytest.mark.slow
def test_train_tokens_end_the_run_on_the_samples_schedule(tmp_path):
    result, = spawn(1, _runs, str(tmp_path), timeout=300)
    whole, tokens, exact = result["whole"], result["tokens"], result["exact"]
    assert (whole["iteration"], whole["train_iters"]) == (10, 10)  # 40 samples ÷ 4
    assert (tokens["iteration"], tokens["train_iters"], tokens["consumed_train_samples"]) == (7, 10, 28)
    assert exact["iteration"] == 6  # reached exactly: no further iteration starts
    for cut in (tokens, exact):  # same schedule (decay over 40 samples) and data as the whole run, cut short
        n = cut["iteration"]
        assert cut["learning_rates"] == whole["learning_rates"][:n] and cut["losses"] == whole["losses"][:n]


def test_train_tokens_must_be_positive(tmp_path):
    from fsdp2_core.testing.tiny import tiny_config
    with pytest.raises(ConfigError, match=r"training.train_tokens must be >= 1, got 0"):
        tiny_config(tmp_path, train_tokens=0)
