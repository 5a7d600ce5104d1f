"""Megatron's single sampler, resume in O(1), and cache building on one rank of two."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fsdp2_core.data.megatron import (
    MegatronPretrainingSampler,
    build_pretraining_datasets,
)


def reference_single_sampler(total, consumed, mbs, rank, dp, drop_last=True):
    """Megatron-LM's MegatronPretrainingSampler.__iter__, as a plain loop."""
    batch = []
    for idx in range(consumed, total):
        batch.append(idx)
        if len(batch) == mbs * dp:
            yield batch[rank * mbs:(rank + 1) * mbs]
            batch = []
    if batch and not drop_last:
        yield batch[rank * mbs:(rank + 1) * mbs]


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("total,consumed,mbs,dp", [(103, 0, 2, 4), (103, 40, 3, 2), (64, 63, 1, 1)])
def test_single_sampler_matches_megatron(total, consumed, mbs, dp, drop_last):
    for rank in range(dp):
        got = list(MegatronPretrainingSampler(total, consumed, mbs, rank, dp, drop_last))
        assert got == list(reference_single_sampler(total, consumed, mbs, rank, dp, drop_last))


def test_resume_is_constant_time_and_equal_to_skipping():
    full = MegatronPretrainingSampler(10**12, 0, 4, 1, 8)
    it = iter(full)
    skipped = [next(it) for _ in range(5)]
    resumed = MegatronPretrainingSampler(10**12, 5 * 32, 4, 1, 8)
    assert next(iter(resumed)) == next(it)
    late = MegatronPretrainingSampler(10**12, 10**12 - 64, 4, 1, 8)  # no replay of 10^12 samples
    assert next(iter(late)) == list(range(10**12 - 64 + 4, 10**12 - 64 + 8))
    assert skipped[0] == [4, 5, 6, 7]


def test_sampler_errors_name_the_values():
    with pytest.raises(ValueError, match="consumed_samples=10 is not below total_samples=10"):
        MegatronPretrainingSampler(10, 10, 1, 0, 1)
    with pytest.raises(ValueError, match="data_parallel_rank=2"):
        MegatronPretrainingSampler(10, 0, 1, 2, 2)


def _rank_main(rank, world, prefix, cache, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from fsdp2_core.data.megatron.gpt_dataset import GPTDataset

    built = []
    original = GPTDataset._build_indices
    GPTDataset._build_indices = lambda self: built.append(1) or original(self)

    class Tok:
        vocab_size, eod = 1000, 999

    train, valid, _ = build_pretraining_datasets([prefix], "90,10,0", 32, 5, (40, 8, 0),
                                                 cache_dir=cache, tokenizer=Tok())
    sampler = MegatronPretrainingSampler(len(train), 0, 2, rank, world)
    batches = [torch.stack([train[i]["tokens"] for i in b]) for b in list(sampler)[:3]]
    torch.save({"built": len(built), "batches": batches}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.dist
def test_two_ranks_build_once_and_share(tmp_path, corpora):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(2, corpora["c"], str(tmp_path / "cache"), port, str(tmp_path)),
             nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert r0["built"] == 2 and r1["built"] == 0  # rank 0 built train+valid, rank 1 mapped them
    single, _, _ = build_pretraining_datasets([corpora["c"]], "90,10,0", 32, 5, (40, 8, 0),
                                              cache_dir=str(tmp_path / "other"),
                                              tokenizer=type("T", (), {"vocab_size": 1000, "eod": 999})())
    for k in range(3):  # rank r holds samples [4k + 2r, 4k + 2r + 2) of the single-process order
        for r, res in enumerate((r0, r1)):
            expected = torch.stack([single[4 * k + 2 * r + j]["tokens"] for j in range(2)])
            assert torch.equal(res["batches"][k], expected)
