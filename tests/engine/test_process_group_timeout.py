"""--distributed-timeout-minutes bounds the collectives of the process group the engine creates."""
import time

import pytest
import torch
import torch.distributed as dist

from fsdp2_core.device import init_distributed
from fsdp2_core.testing.spawn import spawn
from fsdp2_core.testing.tiny import tiny_config
from fsdp2_core.train import CheckpointHooks, entry
from megatron_compat.translate import translate

TIMEOUT_MINUTES = 0.05  # 3 seconds


def _one_rank_goes_silent():
    """Rank 1 never joins the all-reduce; rank 0 must fail after the timeout instead of waiting for ever."""
    init_distributed("cpu", timeout_minutes=TIMEOUT_MINUTES)
    timeout = dist.group.WORLD._get_backend(torch.device("cpu")).options._timeout.total_seconds()
    if dist.get_rank() == 1:
        time.sleep(6)
        return timeout, None
    start = time.monotonic()
    try:
        dist.all_reduce(torch.ones(1))
    except RuntimeError:
        return timeout, time.monotonic() - start
    return timeout, None


@pytest.mark.dist
def test_a_silent_rank_fails_the_collective_after_the_timeout():
    (timeout, failed_after), (timeout_1, _) = spawn(2, _one_rank_goes_silent, timeout=60)
    assert timeout == timeout_1 == 3.0
    assert failed_after is not None and failed_after < 5.5, "the all-reduce waited past the timeout"


class _Reached(Exception):
    pass


def test_run_training_hands_the_configured_timeout_to_the_process_group(monkeypatch, tmp_path):
    seen = {}

    def fake_init(device_type=None, timeout_minutes=None):
        seen["timeout_minutes"] = timeout_minutes
        raise _Reached

    monkeypatch.setattr(entry, "init_distributed", fake_init)
    cfg = tiny_config(str(tmp_path))
    cfg.parallel.distributed_timeout_minutes = 25
    with pytest.raises(_Reached):
        entry.run_training(cfg, checkpoint=CheckpointHooks())
    assert seen == {"timeout_minutes": 25}


def test_megatron_flag_and_default():
    base = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
            "--micro-batch-size 2 --train-iters 10 --lr 1e-3 --save /ckpt --mock-data --vocab-size 100 "
            "--tokenizer-type NullTokenizer").split()
    assert translate(base, world_size=1).config.parallel.distributed_timeout_minutes == 10  # Megatron's default
    given = translate(base + ["--distributed-timeout-minutes", "45"], world_size=1).config
    assert given.parallel.distributed_timeout_minutes == 45
