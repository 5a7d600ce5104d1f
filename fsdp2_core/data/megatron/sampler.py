"""Megatron-LM's `single` pretraining sampler over the data-parallel group.

Samples are taken in dataset order from `consumed_samples` on; every micro-batch step takes the
next `micro_batch_size * data_parallel_size` indices and hands rank r the r-th slice of
`micro_batch_size`. Resuming at any consumed-sample count is arithmetic, nothing is replayed.
"""
from __future__ import annotations

from typing import Iterator, List


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
