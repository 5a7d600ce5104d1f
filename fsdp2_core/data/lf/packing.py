"""Packing tokenized samples into rows of at most `cutoff_len` tokens.

Greedy knapsack: lengths sorted, each row filled by repeatedly taking the longest
sample that still fits. A packed row carries `seq_lens` (its samples' lengths); with
`neat_packing` the collator restarts position ids per sample and keeps attention inside
each sample, so a packed row computes exactly what its samples compute one by one.
"""
import bisect
from collections import defaultdict
from typing import Dict, List


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


def pack_batch(batch: Dict[str, List], cutoff_len: int) -> Dict[str, List]:
    """A batched `datasets.map` function: tokenized samples → packed rows (input_ids, labels, seq_lens)."""
    by_length = defaultdict(list)
    for i, ids in enumerate(batch["input_ids"]):
        by_length[len(ids)].append(i)
    lengths = [len(ids) for ids in batch["input_ids"]]
    out = {"input_ids": [], "labels": [], "seq_lens": [], "_truncated": []}
    for group in greedy_knapsack(lengths, cutoff_len):
        ids, labels, seq_lens, truncated = [], [], [], 0
        for length in group:
            j = by_length[length].pop()
            ids += batch["input_ids"][j]
            labels += batch["labels"][j]
            seq_lens.append(length)
            truncated += batch["_truncated"][j]
        out["input_ids"].append(ids)
        out["labels"].append(labels)
        out["seq_lens"].append(seq_lens)
        out["_truncated"].append(truncated)
    return out
