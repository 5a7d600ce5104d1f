"""Megatron's `cyclic` sampler (--dataloader-type cyclic): the order Megatron-LM's MegatronPretrainingRandomSampler
(megatron/training/datasets/data_samplers.py) gives, worked out here from its rule, its epochs, its resume, and the
micro-batches the loop reads with it."""
import numpy as np
import pytest
import torch

from fsdp2_core.data.megatron.sampler import MegatronPretrainingRandomSampler
from fsdp2_core.train.data import micro_batches


def perm(n, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    return torch.randperm(n, generator=g).tolist()


def take(sampler, steps):
    """`steps` micro-batches, iterating the sampler again at each epoch's end (Megatron's cyclic_iter)."""
    out = []
    while len(out) < steps:
        for batch in sampler:
            out.append(batch)
            if len(out) == steps:
                break
    return out


def test_sharded_order_is_each_ranks_bucket_permuted_by_the_epoch():
    """total 11, micro 2, dp 2: buckets of (11 // 4) × 2 = 4 samples, rank r from 4r, one sample never read."""
    for rank in range(2):
        sampler = MegatronPretrainingRandomSampler(11, 0, 2, rank, 2)
        order = [4 * rank + x for x in perm(4, 0)]
        assert take(sampler, 2) == [order[:2], order[2:]]
        assert sampler.consumed_samples == 8  # one epoch: 11 - 11 % 4 samples
        assert take(sampler, 2) == [[4 * rank + x for x in perm(4, 1)][k:k + 2] for k in (0, 2)]  # epoch 1


def test_unsharded_order_deals_one_permutation_to_the_ranks():
    everything = perm(10, 0)  # (10 // 2) × 2 samples
    for rank in range(2):
        mine = everything[rank::2]
        assert take(MegatronPretrainingRandomSampler(10, 0, 2, rank, 2, data_sharding=False), 2) == [mine[:2],
                                                                                                      mine[2:4]]


@pytest.mark.parametrize("sharding", [True, False])
def test_resume_anywhere_continues_the_same_order(sharding):
    for rank in range(2):
        whole = take(MegatronPretrainingRandomSampler(24, 0, 2, rank, 3, sharding), 10)
        for at in (1, 4, 6):  # inside epoch 0, at its end, inside epoch 1 (6 draws of 2 × 3 = 36 > 24)
            resumed = MegatronPretrainingRandomSampler(24, at * 6, 2, rank, 3, sharding)
            assert take(resumed, 10 - at) == whole[at:], (rank, at)


def test_the_loop_reads_the_cyclic_order_and_never_runs_dry():
    data = [{"x": np.array([i])} for i in range(9)]
    batches = micro_batches(data, 0, 2, 1, 2, order="cyclic")
    expected = [[4 + x for x in perm(4, epoch)] for epoch in range(3)]
    got = [next(batches)["x"].reshape(-1).tolist() for _ in range(6)]  # 2 micro-batches per epoch, 3 epochs
    assert got == [e[k:k + 2] for e in expected for k in (0, 2)]
