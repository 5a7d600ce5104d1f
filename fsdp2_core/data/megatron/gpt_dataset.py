"""GPT pretraining samples over indexed datasets, in Megatron-LM's order (`GPTDataset`).

`GPTDataset` cuts one split of one indexed dataset into samples; `BlendedDataset` interleaves
several of them by weight. Both hold only index arrays (memory-mapped from the cache) and read
tokens on demand.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..cache import cached_arrays, description_hash
from . import gpt_indices
from .native import build_blending_indices, build_exhaustive_blending_indices

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_PAD_TOKEN_ID = -1
SPLIT_NAMES = ("train", "valid", "test")


@dataclass
class GPTDataConfig:
    """Everything that shapes GPT samples (plain values, filled by `build_pretraining_datasets`)."""

    seq_length: int
    seed: int
    split: Optional[str] = None
    split_matrix: Optional[List[Optional[Tuple[float, float]]]] = None
    eod: Optional[int] = None
    pad: int = _PAD_TOKEN_ID
    reset_position_ids: bool = False
    reset_attention_mask: bool = False
    eod_mask_loss: bool = False
    create_attention_mask: bool = False
    add_extra_token_to_sequence: bool = True
    drop_last_partial_validation_sequence: bool = True
    shuffle: bool = True
    cache_dir: Optional[str] = None
    mid_level_dataset_surplus: float = 0.005
    mock: bool = False
    tokenizer_id: Optional[str] = None
    fim: Optional[object] = None  # a fim.FIMTransform: samples become fill-in-the-middle samples (not in the key)
    extra: Dict[str, object] = field(default_factory=dict)

    def key(self) -> dict:
        """The fields that determine the index arrays (hashed into cache names)."""
        return {
            "format": CACHE_FORMAT_VERSION,
            "seed": self.seed,
            "seq_length": self.seq_length,
            "split": self.split,
            "split_matrix": self.split_matrix,
            "add_extra_token_to_sequence": self.add_extra_token_to_sequence,
            "drop_last_partial_validation_sequence": self.drop_last_partial_validation_sequence,
            "shuffle": self.shuffle,
        }


class MockGPTLowLevelDataset:
    """Megatron's synthetic corpus: 100,000 documents of 1-4095 tokens counting up, then eod."""

    seed = 0
    size = 100000
    max_sequence_length = 4096

    def __init__(self, vocab_size: int, eod: int) -> None:
        self.vocab_size = vocab_size
        self.eod = eod
        rng = np.random.default_rng(seed=self.seed)
        self.sequence_lengths = rng.integers(
            low=1, high=self.max_sequence_length, size=self.size, dtype=np.int32
        )
        self.path_prefix = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> np.ndarray:
        length = int(self.sequence_lengths[idx])
        sample = np.empty(length, dtype=np.int64)
        sample[:-1] = np.arange(1, length) % self.vocab_size
        sample[-1] = self.eod
        return sample

    def get(self, idx: int, offset: int = 0, length: Optional[int] = None) -> np.ndarray:
        if length is None:
            length = int(self.sequence_lengths[idx]) - offset
        return self[idx][offset: offset + length]

    def token_id_range(self, cache_dir: Optional[str] = None) -> Tuple[int, int]:
        return 0, max(self.vocab_size - 1, self.eod)


class IndexTooLargeError(ValueError):
    """The sample counts asked for need index arrays larger than this machine's memory."""


def available_memory_bytes() -> Optional[int]:
    """MemAvailable of /proc/meminfo (Linux), else the physical memory; None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_index_memory(where: str, what: str, needed: int) -> None:
    """Refuse before allocating index arrays that cannot fit (numpy would fail deep inside with MemoryError)."""
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise IndexTooLargeError(
            f"{where}: {what}; its index arrays need about {needed / 2**30:,.1f} GiB of memory, more than the "
            f"{available / 2**30:,.1f} GiB available. Ask for fewer samples: lower --train-iters or "
            "--global-batch-size (for the valid and test splits also --eval-iters, or raise --eval-interval)")


def _ltor_extras(tokens: np.ndarray, config: GPTDataConfig):
    """loss_mask, position_ids, and (with reset_attention_mask) segment lengths / dense mask."""
    n = tokens.shape[0]
    loss_mask = np.ones(n, dtype=np.float32)
    extras = {}
    needs_eod = config.eod_mask_loss or config.reset_position_ids or config.reset_attention_mask
    eod_positions = np.flatnonzero(tokens == config.eod) if needs_eod else None
    if config.eod_mask_loss:
        loss_mask[eod_positions] = 0.0
    positions = np.arange(n, dtype=np.int64)
    # Segments end after each eod token; tokens of later documents never see earlier ones.
    boundaries = eod_positions[eod_positions < n - 1] + 1 if needs_eod else None
    segment = None
    if config.reset_position_ids or config.reset_attention_mask:
        segment = np.searchsorted(boundaries, positions, side="right")
    if config.reset_position_ids:
        starts = np.concatenate(([0], boundaries))
        position_ids = positions - starts[segment]
    else:
        position_ids = positions
    if config.reset_attention_mask:
        lengths = np.diff(np.concatenate(([0], boundaries, [n])))
        seq_lengths = np.zeros(n, dtype=np.int32)
        seq_lengths[: len(lengths)] = lengths
        extras["seq_lengths"] = torch.from_numpy(seq_lengths)
    if config.create_attention_mask:
        allowed = np.tril(np.ones((n, n), dtype=bool))
        if config.reset_attention_mask:
            allowed &= segment[:, None] == segment[None, :]
        extras["attention_mask"] = torch.from_numpy(~allowed).unsqueeze(0)  # True = masked
    return loss_mask, position_ids, extras


class GPTDataset(torch.utils.data.Dataset):
    """One split of one indexed (or mock) dataset, cut into `seq_length` samples.

    `num_samples=None` builds exactly one epoch. `ds[i]` returns tokens, labels, loss_mask and
    position_ids as Megatron does (plus attention_mask / seq_lengths when asked for).
    """

    def __init__(self, low_level, dataset_path: Optional[str], document_range: Tuple[int, int],
                 num_samples: Optional[int], split_name: str, config: GPTDataConfig) -> None:
        self.dataset = low_level
        self.dataset_path = dataset_path
        self.document_range = (int(document_range[0]), int(document_range[1]))
        self.num_samples = num_samples
        self.index_split = split_name
        self.config = config
        self._extra = int(config.add_extra_token_to_sequence)
        self.unique_identifiers = {
            "class": "GPTDataset",
            "dataset_path": dataset_path,
            "dataset_size": _dataset_fingerprint(low_level),
            "num_samples": num_samples,
            "index_split": split_name,
            "document_range": list(self.document_range),
            "tokenizer": config.tokenizer_id,
            **config.key(),
        }
        self.unique_description_hash = description_hash(self.unique_identifiers)
        self._cache_key = (
            None if config.mock or config.cache_dir is None else config.cache_dir
        )
        arrays = cached_arrays(
            self._cache_key,
            f"{self.unique_description_hash}-GPTDataset-{split_name}",
            self.unique_identifiers,
            ("document_index", "sample_index", "shuffle_index"),
            self._build_indices,
        )
        self.document_index = arrays["document_index"]
        self.sample_index = arrays["sample_index"]
        self.shuffle_index = arrays["shuffle_index"]
        self._cached = None
        # Megatron's GPTFIMDataset: one stream per dataset, seeded with --seed, drawn in reading order
        self._fim_rng = np.random.RandomState(config.seed) if config.fim is not None else None

    # ----------------------------------------------------------------- index building
    def _tokens_per_epoch(self) -> int:
        beg, end = self.document_range
        return int(np.sum(self.dataset.sequence_lengths[beg:end], dtype=np.int64))

    def _build_indices(self) -> Dict[str, np.ndarray]:
        cfg = self.config
        beg, end = self.document_range
        tokens_per_epoch = self._tokens_per_epoch()
        where = f"{self.dataset_path or 'mock data'} ({self.index_split} split)"
        if tokens_per_epoch == 0 or end <= beg:
            raise ValueError(
                f"{where} is empty: documents [{beg}, {end}) of split {cfg.split!r} hold no tokens, "
                f"but {self.num_samples} samples were requested; widen this split in --split or "
                "give the split its own data path"
            )
        num_epochs = gpt_indices.num_epochs_needed(
            tokens_per_epoch, self.num_samples, cfg.seq_length, self._extra
        )
        check_index_memory(
            where, f"{'one epoch' if self.num_samples is None else f'{self.num_samples:,} samples'} was asked for "
            f"({num_epochs:,} passes over its {end - beg:,} documents)",
            gpt_indices.index_bytes(num_epochs, end - beg, tokens_per_epoch, cfg.seq_length))
        separate, before_final = gpt_indices.separate_final_epoch(
            num_epochs, tokens_per_epoch, self.num_samples, cfg.seq_length, self._extra
        )
        rng = np.random.RandomState(cfg.seed)
        documents = np.arange(beg, end, dtype=np.int32)
        document_index = gpt_indices.build_document_index(
            documents, num_epochs, rng, separate, cfg.shuffle
        )
        drop_last = True
        if self.index_split == "valid":
            drop_last = cfg.drop_last_partial_validation_sequence
        sample_index = gpt_indices.build_sample_index(
            self.dataset.sequence_lengths, document_index, cfg.seq_length, num_epochs,
            tokens_per_epoch, drop_last, self._extra,
        )
        total = sample_index.shape[0] - 1
        shuffle_index = gpt_indices.build_shuffle_index(
            before_final if separate else total, total, rng, cfg.shuffle
        )
        return {
            "document_index": document_index,
            "sample_index": sample_index,
            "shuffle_index": shuffle_index,
        }

    def token_id_ranges(self) -> Dict[str, Tuple[int, int]]:
        """{file: (smallest, largest) token id} of the data this split reads (see IndexedDataset.token_id_range)."""
        name = f"{self.dataset_path}.bin" if self.dataset_path else "mock data"
        return {name: tuple(self.dataset.token_id_range(self.config.cache_dir))}

    # ----------------------------------------------------------------- reading
    def __len__(self) -> int:
        return self.sample_index.shape[0] - 1

    def _sample_tokens(self, idx: int) -> Tuple[np.ndarray, np.ndarray]:
        extra = self._extra
        idx = int(self.shuffle_index[idx])
        doc_beg, off_beg = self.sample_index[idx]
        doc_end, off_end = self.sample_index[idx + 1]
        doc_beg, off_beg, doc_end, off_end = int(doc_beg), int(off_beg), int(doc_end), int(off_end)
        get = self.dataset.get
        if doc_beg == doc_end:
            document_ids = [int(self.document_index[doc_beg])]
            parts = [get(document_ids[0], offset=off_beg, length=off_end - off_beg + extra)]
        else:
            document_ids = self.document_index[doc_beg: doc_end + 1].tolist()
            parts = [get(document_ids[0], offset=off_beg)]
            parts.extend(get(d) for d in document_ids[1:-1])
            parts.append(get(document_ids[-1], offset=0, length=off_end + extra))
        text = np.concatenate(parts, dtype=np.int64) if len(parts) > 1 else parts[0].astype(np.int64)
        if self.config.fim is not None:
            text = self.config.fim(text, self._fim_rng)
        wanted = self.config.seq_length + extra
        if text.shape[0] < wanted:
            text = np.concatenate([text, np.full(wanted - text.shape[0], self.config.pad, dtype=np.int64)])
        return text, np.asarray(document_ids, dtype=np.int64)

    def __getitem__(self, idx: Optional[int]) -> Dict[str, torch.Tensor]:
        cfg = self.config
        text, _ = self._sample_tokens(0 if idx is None else idx)
        if self._extra:
            tokens_np, labels_np = text[:-1], text[1:]
        else:
            tokens_np = text
            labels_np = np.roll(text, -1)
            labels_np[-1] = cfg.pad
        cacheable = not (cfg.reset_position_ids or cfg.reset_attention_mask or cfg.eod_mask_loss)
        if cacheable and self._cached is not None:
            loss_mask, position_ids, extras = self._cached
            loss_mask = loss_mask.copy()
        else:
            loss_mask, position_ids, extras = _ltor_extras(tokens_np, cfg)
            if cacheable:
                position_ids = torch.from_numpy(position_ids)
                self._cached = (loss_mask.copy(), position_ids, extras)
        pad = cfg.pad
        if pad >= 0 or (not self._extra) or text[-1] == pad:
            padded = labels_np == pad
            if padded.any():
                loss_mask[padded] = 0.0
            tokens_np = np.where(tokens_np == pad, 0, tokens_np)
            labels_np = np.where(labels_np == pad, 0, labels_np)
        if idx is None:
            loss_mask[:] = 0.0
        if not isinstance(position_ids, torch.Tensor):
            position_ids = torch.from_numpy(position_ids)
        sample = {
            "tokens": torch.from_numpy(tokens_np),
            "labels": torch.from_numpy(labels_np),
            "loss_mask": torch.from_numpy(loss_mask),
            "position_ids": position_ids,
        }
        sample.update(extras)
        return sample


def _dataset_fingerprint(low_level) -> Union[List[int], str]:
    prefix = getattr(low_level, "path_prefix", None)
    if prefix is None:
        return "mock"
    return [len(low_level), int(os.path.getsize(prefix + ".bin"))]


class BlendedDataset(torch.utils.data.Dataset):
    """Interleave datasets by weight (Megatron's `BlendedDataset`).

    With `size`, draw `size` samples, taking at each step the dataset whose share lags its
    normalised weight the most; without, draw exactly `weights[i]` samples from dataset i.
    """

    def __init__(self, datasets: Sequence[GPTDataset], weights: Sequence[Union[int, float]],
                 size: Optional[int], config: GPTDataConfig) -> None:
        if len(datasets) != len(weights):
            raise ValueError(f"{len(datasets)} datasets but {len(weights)} weights")
        if len(datasets) >= 32767:
            raise ValueError(f"cannot blend {len(datasets)} datasets (at most 32766)")
        bad = [w for w in weights if not w > 0]
        if bad:
            raise ValueError(
                f"blend weights must be positive, got {list(weights)}; drop datasets with weight "
                "0 or that hold no samples in this split"
            )
        if size is not None:
            weights = _normalize(weights)
        self.datasets = list(datasets)
        self.split = self.datasets[0].index_split
        self.weights = list(weights)
        self.size = size
        self.config = config
        self.unique_identifiers = {
            "class": "BlendedDataset",
            "datasets": [d.unique_identifiers for d in self.datasets],
            "split": self.split,
            "weights": self.weights,
            "size": self.size,
        }
        self.unique_description_hash = description_hash(self.unique_identifiers)
        cache_dir = None if config.mock else config.cache_dir
        arrays = cached_arrays(
            cache_dir,
            f"{self.unique_description_hash}-BlendedDataset-{self.split}",
            self.unique_identifiers,
            ("dataset_index", "dataset_sample_index"),
            self._build_indices,
        )
        self.dataset_index = arrays["dataset_index"]
        self.dataset_sample_index = arrays["dataset_sample_index"]

    def token_id_ranges(self) -> Dict[str, Tuple[int, int]]:
        out: Dict[str, Tuple[int, int]] = {}
        for dataset in self.datasets:
            out.update(dataset.token_id_ranges())
        return out

    def _build_indices(self) -> Dict[str, np.ndarray]:
        size = self.size if self.size is not None else int(sum(self.weights))
        check_index_memory(f"the {self.split} blend of {len(self.datasets)} datasets",
                           f"{size:,} samples were asked for", size * 10)  # int16 dataset + int64 sample index
        if self.size is not None:
            dataset_index, sample_index = build_blending_indices(self.weights, self.size)
        else:
            dataset_index, sample_index = build_exhaustive_blending_indices(
                [int(w) for w in self.weights]
            )
        counts = np.bincount(dataset_index, minlength=len(self.datasets))
        for i, count in enumerate(counts):
            if len(self.datasets[i]) < count:
                raise IndexError(
                    f"the {self.split} blend draws {count} samples from dataset {i} "
                    f"({self.datasets[i].dataset_path}) which has only {len(self.datasets[i])}; "
                    f"raise mid_level_dataset_surplus (now {self.config.mid_level_dataset_surplus}),"
                    " e.g. two- or ten-fold"
                )
        return {"dataset_index": dataset_index, "dataset_sample_index": sample_index}

    def __len__(self) -> int:
        return self.dataset_index.shape[0]

    def __getitem__(self, idx: int) -> Dict[str, torch.Tensor]:
        dataset_id = self.dataset_index[idx]
        sample = self.datasets[dataset_id][int(self.dataset_sample_index[idx])]
        return {"dataset_id": dataset_id, **sample}


def _normalize(weights: Sequence[float]) -> List[float]:
    w = np.array(weights, dtype=np.float64)
    return (w / np.sum(w)).tolist()
