"""Megatron-LM's pretraining samplers over the data-parallel group: `single` (MegatronPretrainingSampler) and
`cyclic` (MegatronPretrainingRandomSampler).

Samples are taken in dataset order from `consumed_samples` on; every micro-batch step takes the
next `micro_batch_size * data_parallel_size` indices and hands rank r the r-th slice of
`micro_batch_size`. Resuming at any consumed-sample count is arithmetic, nothing is replayed.
"""
from __future__ import annotations

from typing import Iterator, List

import torch


class MegatronPretrainingSampler:
    """Batch sampler: yields this rank's list of `micro_batch_size` sample indices per step."""

    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int,
                 data_parallel_rank: int, data_parallel_size: int, drop_last: bool = True) -> None:
        if total_samples <= 0:
            raise ValueError(f"no sample to draw: total_samples={total_samples}")
        if not 0 <= consumed_samples < total_samples:
            raise ValueError(
                f"consumed_samples={consumed_samples} is not below total_samples={total_samples}: "
                "the run has used up this dataset; request more samples (--train-iters / "
                "--train-samples) or restart the data position"
            )
        if micro_batch_size <= 0 or data_parallel_size <= 0:
            raise ValueError(
                f"micro_batch_size={micro_batch_size} and data_parallel_size={data_parallel_size} "
                "must be positive"
            )
        if not 0 <= data_parallel_rank < data_parallel_size:
            raise ValueError(
                f"data_parallel_rank={data_parallel_rank} outside [0, {data_parallel_size})"
            )
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.data_parallel_rank = data_parallel_rank
        self.data_parallel_size = data_parallel_size
        self.micro_batch_times_data_parallel_size = micro_batch_size * data_parallel_size
        self.drop_last = drop_last

    def __len__(self) -> int:
        return self.total_samples

    def get_start_end_idx(self):
        start = self.data_parallel_rank * self.micro_batch_size
        return start, start + self.micro_batch_size

    def num_steps(self) -> int:
        """Number of micro-batch steps still to yield."""
        remaining = self.total_samples - self.consumed_samples
        full, rest = divmod(remaining, self.micro_batch_times_data_parallel_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[List[int]]:
        step = self.micro_batch_times_data_parallel_size
        start, end = self.get_start_end_idx()
        first = self.consumed_samples
        full = (self.total_samples - first) // step
        for k in range(full):
            base = first + k * step
            yield list(range(base + start, base + end))
        base = first + full * step
        if base < self.total_samples and not self.drop_last:
            batch = list(range(base, self.total_samples))
            yield batch[start:end]


class MegatronPretrainingRandomSampler:
    """Megatron-LM's `cyclic` sampler (megatron/training/datasets/data_samplers.py,
    MegatronPretrainingRandomSampler): epochs over the dataset, each in a random order seeded by the epoch number.

    With data sharding (Megatron's default) rank r owns the contiguous bucket of (total // (micro × dp)) × micro
    samples starting at r × bucket, and reads it in the order torch.randperm(bucket, seed=epoch) gives; without
    it, one permutation of the whole set (cut to a multiple of micro) is dealt out rank by rank. The epoch and the
    place in it follow from `consumed_samples`, so a resume is arithmetic; the samples that do not fill a last
    micro-batch of every rank are never read. Iterating again continues with the next epoch.
    """

    def __init__(self, total_samples: int, consumed_samples: int, micro_batch_size: int, data_parallel_rank: int,
                 data_parallel_size: int, data_sharding: bool = True) -> None:
        if total_samples <= 0:
            raise ValueError(f"no sample to draw: total_samples={total_samples}")
        if micro_batch_size <= 0 or data_parallel_size <= 0:
            raise ValueError(f"micro_batch_size={micro_batch_size} and data_parallel_size={data_parallel_size} "
                             "must be positive")
        if not 0 <= data_parallel_rank < data_parallel_size:
            raise ValueError(f"data_parallel_rank={data_parallel_rank} outside [0, {data_parallel_size})")
        self.total_samples = total_samples
        self.consumed_samples = consumed_samples
        self.micro_batch_size = micro_batch_size
        self.data_parallel_rank = data_parallel_rank
        self.data_parallel_size = data_parallel_size
        self.data_sharding = data_sharding
        self.micro_batch_times_data_parallel_size = micro_batch_size * data_parallel_size
        self.last_batch_size = total_samples % self.micro_batch_times_data_parallel_size
        if total_samples < self.micro_batch_times_data_parallel_size:
            raise ValueError(f"total_samples={total_samples} is fewer than one draw of micro batch "
                             f"{micro_batch_size} × data-parallel size {data_parallel_size}")

    def __len__(self) -> int:
        return self.total_samples

    def _order(self, epoch: int, epoch_samples: int) -> List[int]:
        g = torch.Generator()  # torch's permutation, seeded by the epoch as Megatron seeds it
        g.manual_seed(epoch)
        if self.data_sharding:
            bucket = (self.total_samples // self.micro_batch_times_data_parallel_size) * self.micro_batch_size
            start = self.data_parallel_rank * bucket
            return [start + x for x in torch.randperm(bucket, generator=g).tolist()[epoch_samples //
                                                                                      self.data_parallel_size:]]
        full = (self.total_samples // self.micro_batch_size) * self.micro_batch_size
        active = torch.randperm(full, generator=g).tolist()[epoch_samples:]
        return active[self.data_parallel_rank::self.data_parallel_size]

    def __iter__(self) -> Iterator[List[int]]:
        active_total = self.total_samples - self.last_batch_size
        epoch, epoch_samples = divmod(self.consumed_samples, active_total)
        if epoch_samples % self.micro_batch_times_data_parallel_size:
            raise ValueError(f"consumed_samples={self.consumed_samples} is not a whole number of draws of "
                             f"{self.micro_batch_times_data_parallel_size}")
        batch: List[int] = []
        for index in self._order(epoch, epoch_samples):
            batch.append(index)
            if len(batch) == self.micro_batch_size:
                self.consumed_samples += self.micro_batch_times_data_parallel_size
                yield batch
                batch = []
