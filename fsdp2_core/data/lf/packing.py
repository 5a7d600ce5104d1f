"""Packing tokenized samples into rows of `cutoff_len` tokens, LLaMA-Factory's convention.

With packing each sample is cut to `cutoff_len - 1` tokens (`sample_budget`), rows are filled
to at most `cutoff_len - 1` tokens and then padded to exactly `cutoff_len` (pad id, label
-100), so every row has at least one padding token, as LLaMA-Factory's packed rows do; the
number of rows (so the steps per epoch) is the same as there.

Greedy knapsack: lengths sorted, each row filled by repeatedly taking the longest sample that
still fits. A packed row carries `seq_lens` (its samples' lengths, padding excluded); the
collator restarts position ids per sample and, with `neat_packing`, keeps attention inside each
sample, so a neat-packed row computes exactly what its samples compute one by one.
"""
import bisect
from collections import defaultdict
from typing import Dict, List

IGNORE_INDEX = -100


def sample_budget(cutoff_len: int, packing: bool) -> int:
    """Tokens one sample may keep: cutoff_len, or cutoff_len - 1 when rows are packed (one for padding)."""
    return cutoff_len - 1 if packing else cutoff_len


def greedy_knapsack(lengths: List[int], capacity: int) -> List[List[int]]:
    """Groups of lengths, each summing to at most `capacity` (every length must be <= capacity)."""
    remaining = sorted(lengths)
    groups = []
    while remaining:
        group, room = [], capacity
        while True:
            i = bisect.bisect(remaining, room)
            if i == 0:
                break
            room -= remaining[i - 1]
            group.append(remaining.pop(i - 1))
        if not group:
            raise ValueError(f"a sample of {remaining[0]} tokens does not fit cutoff_len {capacity}")
        groups.append(group)
    return groups


def pack_batch(batch: Dict[str, List], cutoff_len: int, pad_id: int) -> Dict[str, List]:
    """A batched `datasets.map` function: tokenized samples → packed rows (input_ids, labels, seq_lens),
    each padded to `cutoff_len`."""
    by_length = defaultdict(list)
    for i, ids in enumerate(batch["input_ids"]):
        by_length[len(ids)].append(i)
    lengths = [len(ids) for ids in batch["input_ids"]]
    out = {"input_ids": [], "labels": [], "seq_lens": [], "_truncated": []}
    for group in greedy_knapsack(lengths, sample_budget(cutoff_len, True)):
        ids, labels, seq_lens, truncated = [], [], [], 0
        for length in group:
            j = by_length[length].pop()
            ids += batch["input_ids"][j]
            labels += batch["labels"][j]
            seq_lens.append(length)
            truncated += batch["_truncated"][j]
        pad = cutoff_len - len(ids)
        out["input_ids"].append(ids + [pad_id] * pad)
        out["labels"].append(labels + [IGNORE_INDEX] * pad)
        out["seq_lens"].append(seq_lens)
        out["_truncated"].append(truncated)
    return out
