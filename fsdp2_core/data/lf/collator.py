"""SFTCollator: tokenized (or packed) samples → one right-padded micro-batch for the engine.

Output (all tensors, batch-first):
  tokens        input ids, padded with the pad id to a multiple of 8 (lcm(8, 2 × cp) with context parallel)
  labels        the next-token targets (shifted within each sample), -100 where nothing is trained or padded
  loss_mask     1.0 where labels are trained
  position_ids  0.. per row; in packed rows restarting at 0 for every packed sample, padding 0 (LLaMA-Factory's
                packed position ids)
  attention_mask  plain packing only: [b, L] ones, a key mask hiding nothing. It says attention crosses samples as
                in LLaMA-Factory's plain packing: without it transformers (and the engine's attention core) would
                read the restarted position ids as sample boundaries and keep samples apart.
  cu_seqlens    neat packing only: cumulative sample lengths over the flattened batch (varlen kernels), int32
With neat packing these restarting position ids (and cu_seqlens) are the sample boundaries: the engine gives them
to attention in the form its implementation takes (fsdp2_core/models/packed.py), so no [b, 1, L, L] mask is built
here, and no token sees another sample.
"""
import math
from typing import Dict, List, Sequence

import numpy as np
import torch

IGNORE_INDEX = -100


def pad_multiple(cp_size: int = 1) -> int:
    return 8 if cp_size <= 1 else math.lcm(8, 2 * cp_size)


def shift_labels(labels: Sequence[int], seq_lens: Sequence[int]) -> np.ndarray:
    """Next-token targets inside each sample: the last token of a sample predicts nothing."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full_like(labels, IGNORE_INDEX)
    start = 0
    for n in seq_lens:
        out[start:start + n - 1] = labels[start + 1:start + n]
        start += n
    return out


def packed_positions(seq_lens: Sequence[int], length: int) -> np.ndarray:
    """0.. per packed sample, 0 over the padding after them."""
    positions = np.zeros(length, dtype=np.int64)
    start = 0
    for n in seq_lens:
        positions[start:start + n] = np.arange(n)
        start += n
    return positions


class SFTCollator:
    def __init__(self, pad_token_id: int, neat_packing: bool = False, cp_size: int = 1, multiple_of: int = None,
                 packing: bool = False):
        self.pad_id = int(pad_token_id)
        self.neat = neat_packing
        self.packing = packing or neat_packing
        self.multiple = multiple_of or pad_multiple(cp_size)

    def __call__(self, samples: List[Dict]) -> Dict[str, torch.Tensor]:
        longest = max(len(s["input_ids"]) for s in samples)
        length = -(-longest // self.multiple) * self.multiple
        b = len(samples)
        tokens = np.full((b, length), self.pad_id, dtype=np.int64)
        labels = np.full((b, length), IGNORE_INDEX, dtype=np.int64)
        positions = np.zeros((b, length), dtype=np.int64)
        cu = [0]
        for r, s in enumerate(samples):
            n = len(s["input_ids"])
            seq_lens = list(s.get("seq_lens") or [n])
            real = sum(seq_lens)  # a packed row's padding (to cutoff_len) follows its samples
            tokens[r, :n] = s["input_ids"]
            labels[r, :n] = shift_labels(s["labels"], seq_lens)
            segments = seq_lens + ([length - real] if length > real else [])
            for seg in segments:
                cu.append(cu[-1] + seg)
            positions[r] = packed_positions(seq_lens, length) if self.packing else np.arange(length)
        batch = {"tokens": torch.from_numpy(tokens), "labels": torch.from_numpy(labels),
                 "loss_mask": torch.from_numpy((labels != IGNORE_INDEX).astype(np.float32)),
                 "position_ids": torch.from_numpy(positions)}
        if self.neat:
            batch["cu_seqlens"] = torch.tensor(cu, dtype=torch.int32)
        elif self.packing:
            batch["attention_mask"] = torch.ones((b, length), dtype=torch.int64)
        return batch
