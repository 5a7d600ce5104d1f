"""`build_pretraining_datasets`: Megatron-LM's `BlendedMegatronDatasetBuilder` for GPT, by value.

Takes the `--data-path` list (or per-split lists), `--split`, `--seq-length`, `--seed` and the
(train, valid, test) sample counts, and returns the three datasets in Megatron's sample order.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..cache import build_then_share
from .fim import FIMSettings, FIMTransform
from .gpt_dataset import (
    SPLIT_NAMES,
    BlendedDataset,
    GPTDataConfig,
    GPTDataset,
    MockGPTLowLevelDataset,
    _normalize,
)
from .indexed_dataset import IndexedDataset
from .weighted_split import (
    GroupEntry,
    NamedDataset,
    WeightedGroup,
    document_range,
    entry_sample_counts,
    parse_groups,
)

logger = logging.getLogger(__name__)

Blend = Tuple[List[str], Optional[List[float]]]
RAW_SUFFIXES = (".json", ".jsonl", ".parquet", ".arrow")


# ------------------------------------------------------------------ parsing
def parse_data_path(data_path: Union[None, str, Sequence[str]], flag: str = "--data-path"
                    ) -> Optional[Blend]:
    """Megatron's reading of a `--data-path` list: `[w1, p1, w2, p2, ...]` or `[p1, p2, ...]`."""
    if data_path is None:
        return None
    items = data_path.split() if isinstance(data_path, str) else [str(x) for x in data_path]
    items = [x.strip() for x in items if x.strip()]
    if not items:
        return None
    weights: Optional[List[float]] = None
    prefixes = items
    if len(items) % 2 == 0:
        try:
            weights = [float(w) for w in items[0::2]]
            prefixes = items[1::2]
        except ValueError:
            weights, prefixes = None, items
    for prefix in prefixes:
        if _is_number(prefix) and not _exists_as_data(prefix):
            raise ValueError(
                f"{flag} {' '.join(items)}: {prefix!r} is a number where a dataset prefix belongs; "
                "give weights and prefixes in pairs ('0.3 path/a 0.7 path/b') or prefixes alone"
            )
    if weights is not None:
        if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
            raise ValueError(f"{flag}: weights {weights} must be non-negative with a positive sum")
    return prefixes, weights


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _exists_as_data(prefix: str) -> bool:
    return IndexedDataset.exists(prefix) or os.path.isfile(prefix)


def parse_split(split: str) -> List[float]:
    """'969,30,1' -> normalised [train, valid, test] fractions (missing parts are 0)."""
    if not isinstance(split, str):
        split = ",".join(str(x) for x in split)
    try:
        values = [float(x) for x in re.findall(r"[.0-9]+", split)]
    except ValueError:
        values = None
    if not values or len(values) > 3 or sum(values) <= 0:
        raise ValueError(
            f"split {split!r} does not parse: give up to three non-negative weights for "
            "train,valid,test with a positive sum, e.g. '969,30,1' or '98,2,0'"
        )
    values = values + [0.0] * (3 - len(values))
    return _normalize(values)


def split_matrix(fractions: Sequence[float]) -> List[Optional[Tuple[float, float]]]:
    """[0.9, 0.1, 0] -> [(0, 0.9), (0.9, 1.0), None]: each split's share of the documents."""
    bounds = functools.reduce(lambda acc, x: acc + [acc[-1] + x], fractions, [0])
    return [(lo, hi) if hi > lo else None for lo, hi in zip(bounds[:-1], bounds[1:])]


def megatron_sample_counts(train_iters: Optional[int], global_batch_size: int,
                           eval_interval: Optional[int], eval_iters: int,
                           train_samples: Optional[int] = None) -> Tuple[int, int, int]:
    """(train, valid, test) sample counts as Megatron-LM's training loop requests them.

    train = train_samples or train_iters * global_batch_size; valid covers an evaluation every
    `eval_interval` iterations plus the final one; test = eval_iters * global_batch_size.
    """
    if train_samples:
        train = int(train_samples)
        if train_iters is None:
            train_iters = train // global_batch_size
    elif train_iters is not None:
        train = int(train_iters) * global_batch_size
    else:
        raise ValueError("give train_iters (--train-iters) or train_samples (--train-samples)")
    evaluations = (train_iters // eval_interval + 1) if eval_interval else 1
    return train, evaluations * eval_iters * global_batch_size, eval_iters * global_batch_size


def _sizes_per_dataset(weights: Sequence[float], sizes: Sequence[Optional[int]],
                       surplus: float = 0.0) -> List[List[int]]:
    out = []
    for w in weights:
        row = []
        for size in sizes:
            if size is None:
                raise ValueError(
                    "a weighted blend needs a sample count for every split it builds; pass "
                    "num_samples for each split, or give prefixes without weights"
                )
            row.append(int(math.ceil(math.ceil(size * w) * (1 + surplus))))
        out.append(row)
    return out


# ------------------------------------------------------------------ building
class _Builder:
    def __init__(self, config: GPTDataConfig, sizes: Sequence[Optional[int]], tokenizer=None):
        self.config = config
        self.sizes = list(sizes)
        self.tokenizer = tokenizer
        self._low_level: Dict[Optional[str], object] = {}

    def low_level(self, prefix: Optional[str]):
        if prefix not in self._low_level:
            if prefix is None:
                tok = self.tokenizer
                if tok is None or getattr(tok, "vocab_size", None) is None:
                    raise ValueError("mock data needs a tokenizer with vocab_size and eod")
                self._low_level[None] = MockGPTLowLevelDataset(tok.vocab_size, tok.eod)
            else:
                dataset = IndexedDataset(prefix)
                dataset.check_sequences()  # a damaged .idx is refused here, not trained on
                dataset.token_id_range(self.config.cache_dir)  # scanned once (builder rank first), then cached
                self._low_level[prefix] = dataset
        return self._low_level[prefix]

    def splits_of(self, prefix: Optional[str], matrix, sizes) -> List[Optional[GPTDataset]]:
        low = self.low_level(prefix)
        n = len(low)
        out: List[Optional[GPTDataset]] = []
        for i, bounds in enumerate(matrix):
            if bounds is None:
                out.append(None)
                continue
            beg = int(round(bounds[0] * float(n)))
            end = int(round(bounds[1] * float(n)))
            out.append(GPTDataset(low, prefix, (beg, end), sizes[i], SPLIT_NAMES[i], self.config))
        return out

    def blend(self, prefixes: List[str], weights: Optional[List[float]], matrix,
              sizes: Sequence[Optional[int]], only: Optional[int] = None) -> List[object]:
        """Top-level datasets for one distribution (`only`: build just that split)."""
        if weights is not None:
            weights = _normalize(weights)
        if len(prefixes) == 1 and weights is None:
            return self.splits_of(prefixes[0], matrix, sizes)
        wanted = [i for i in range(3) if matrix[i] is not None and (only is None or i == only)]
        if weights is None:
            buffer = [[None] * 3 for _ in prefixes]
        else:
            target = _sizes_per_dataset(weights, sizes)
            buffer = _sizes_per_dataset(weights, sizes, self.config.mid_level_dataset_surplus)
        mids = [self.splits_of(p, matrix, buffer[k]) for k, p in enumerate(prefixes)]
        top: List[object] = [None] * 3
        for i in wanted:
            datasets = [m[i] for m in mids]
            if weights is not None:
                size = sum(row[i] for row in target)
                top[i] = BlendedDataset(datasets, weights, size, self.config)
            else:
                lengths = [len(d) for d in datasets]
                size = None if sizes[i] is None else min(sizes[i], sum(lengths))
                top[i] = BlendedDataset(datasets, lengths, size, self.config)
        return top


WEIGHTED_FLAGS = ("--train-weighted-split-paths", "--valid-weighted-split-paths", "--test-weighted-split-paths")


class _GroupBuilder(_Builder):
    """The forks' build_dataset_group: one GPTDataset per entry over its document range, blended by weight."""

    def entry_dataset(self, group: WeightedGroup, entry: GroupEntry, num_samples: Optional[int],
                      split: int) -> GPTDataset:
        low = self.low_level(entry.path)
        beg, end = document_range(entry, len(low))
        if end <= beg:
            raise ValueError(
                f"{WEIGHTED_FLAGS[split]}: group {group.name!r}: range {entry.start:g}:{entry.end:g} of "
                f"{entry.path} holds no document (documents [{beg}, {end}) of {len(low)}); widen the range")
        return GPTDataset(low, entry.path, (beg, end), num_samples, SPLIT_NAMES[split], self.config)

    def group_dataset(self, group: WeightedGroup, split: int):
        num_samples = self.sizes[split]
        if len(group.entries) == 1:  # the forks ignore the weight of a lone entry and ask it for every sample
            return self.entry_dataset(group, group.entries[0], num_samples, split)
        if num_samples is None:
            raise ValueError(f"{WEIGHTED_FLAGS[split]}: group {group.name!r} blends {len(group.entries)} datasets, "
                             "which needs the split's sample count (num_samples)")
        zero = [e.path for e in group.entries if not e.weight > 0]
        if zero:  # the forks would build them and, ties aside, never draw from them
            raise ValueError(f"{WEIGHTED_FLAGS[split]}: group {group.name!r}: {', '.join(zero)} with weight 0; the "
                             "engine blends positive weights only: drop the entry from the group")
        weights, counts = entry_sample_counts([e.weight for e in group.entries], num_samples)
        datasets = [self.entry_dataset(group, e, c, split) for e, c in zip(group.entries, counts)]
        return BlendedDataset(datasets, weights, num_samples, self.config)


def _parse_weighted(weighted) -> List[Optional[List[WeightedGroup]]]:
    """(train group, valid groups, test groups) strings -> parsed groups per split (None where not given)."""
    parsed: List[Optional[List[WeightedGroup]]] = []
    for i, texts in enumerate(list(weighted) + [None] * (3 - len(weighted))):
        if texts is None:
            parsed.append(None)
            continue
        texts = [texts] if isinstance(texts, str) else list(texts)
        parsed.append(parse_groups(texts, WEIGHTED_FLAGS[i], single=(i == 0)))
    if parsed[0] is None and any(parsed[1:]):
        raise ValueError("--valid-weighted-split-paths / --test-weighted-split-paths need the training group "
                         "--train-weighted-split-paths, as in the forks")
    return parsed


def _default_cache_dir(prefixes: Sequence[str]) -> Optional[str]:
    directory = os.path.join(os.path.dirname(os.path.abspath(prefixes[0])), "index-cache")
    parent = os.path.dirname(directory)
    if os.access(directory if os.path.isdir(directory) else parent, os.W_OK):
        return directory
    logger.warning("cannot write %s; dataset indices will not be cached (pass cache_dir)", directory)
    return None


def build_pretraining_datasets(
    data_path: Union[None, str, Sequence[str]] = None,
    split: Optional[str] = "969,30,1",
    seq_length: int = 2048,
    seed: int = 1234,
    num_samples: Sequence[Optional[int]] = (None, None, None),
    cache_dir: Optional[str] = None,
    tokenizer=None,
    train_data_path=None,
    valid_data_path=None,
    test_data_path=None,
    mock: bool = False,
    reset_position_ids: bool = False,
    reset_attention_mask: bool = False,
    eod_mask_loss: bool = False,
    create_attention_mask: bool = False,
    no_shared_storage: bool = False,
    shuffle: bool = True,
    add_extra_token_to_sequence: bool = True,
    drop_last_partial_validation_sequence: bool = True,
    mid_level_dataset_surplus: float = 0.005,
    raw_json_key: str = "text",
    fim: Optional[FIMSettings] = None,
    weighted_groups: Optional[Sequence] = None,
):
    """(train, valid, test) datasets, sample for sample Megatron-LM's GPTDataset builder.

    data_path: `--data-path` as Megatron parses it; or per-split `train/valid/test_data_path`;
    or `mock=True` (no paths either) for Megatron's synthetic data. `num_samples` are the
    minimum sample counts per split (see `megatron_sample_counts`). A split is None where its
    `--split` share is zero or it has no data path. `shuffle=False` is `--no-shuffle`.
    Raw json/jsonl/parquet/arrow files are tokenized once with `tokenizer` and cached.
    `fim` turns every sample into a fill-in-the-middle sample as Megatron-LM's GPTFIMDataset does
    (`--fim-data`; see fim.py); a rate of 0 leaves the samples as they are.
    `weighted_groups` = (train group, valid groups, test groups) in the forks' `--*-weighted-split-paths` syntax
    (see weighted_split.py), instead of data paths and split: train is then one dataset, valid and test lists of
    `NamedDataset` (one per group, each evaluated on its own), or None where no group is given.
    """
    sizes = list(num_samples) + [None] * (3 - len(num_samples))
    per_split_raw = [train_data_path, valid_data_path, test_data_path]
    per_split = [parse_data_path(p, f"--{n}-data-path") for p, n in zip(per_split_raw, SPLIT_NAMES)]
    blend = parse_data_path(data_path)
    weighted = _parse_weighted(weighted_groups) if weighted_groups is not None and any(weighted_groups) else None
    if weighted is not None and (blend is not None or any(per_split) or mock):
        raise ValueError("--train/valid/test-weighted-split-paths and --data-path / --train-data-path / --mock-data "
                         "are exclusive (the forks' two data modes); give one or the other")
    if blend is not None and any(per_split):
        raise ValueError(
            "--data-path and --train/valid/test-data-path are exclusive; give one or the other"
        )
    is_mock = bool(mock)
    if is_mock and (blend is not None or any(per_split)):
        raise ValueError("mock data takes no data path; drop --mock-data or the data paths")
    if not is_mock and blend is None and not any(per_split) and weighted is None:
        raise ValueError("no training data: give the dataset prefixes (--data-path, or --train-data-path/"
                         "--valid-data-path/--test-data-path), or ask for synthetic data with --mock-data")

    pad, eod, tokenizer_id = _special_ids(tokenizer)
    fim_transform = _fim_transform(fim, tokenizer, is_mock)
    if (reset_position_ids or reset_attention_mask or eod_mask_loss) and eod is None:
        raise ValueError(
            "reset_position_ids / reset_attention_mask / eod_mask_loss need the eod token id: "
            "pass the tokenizer"
        )

    def resolve(b: Optional[Blend]) -> Optional[Blend]:
        if b is None:
            return None
        prefixes = [_resolve_prefix(p, tokenizer, cache_dir, raw_json_key) for p in b[0]]
        return prefixes, b[1]

    blend = resolve(blend)
    per_split = [resolve(b) for b in per_split]
    if weighted is not None:
        weighted = [None if gs is None else [_resolve_group(g, flag, tokenizer, cache_dir, raw_json_key) for g in gs]
                    for gs, flag in zip(weighted, WEIGHTED_FLAGS)]
    all_prefixes = (blend[0] if blend else []) + [p for b in per_split if b for p in b[0]]
    all_prefixes += [e.path for gs in (weighted or []) if gs for g in gs for e in g.entries]
    if not is_mock and cache_dir is None:
        cache_dir = _default_cache_dir(all_prefixes)

    if is_mock:
        fractions = parse_split("1,1,1")  # Megatron ignores --split for mock data
        split_used = "1,1,1"
    elif blend is not None:
        if split is None:
            raise ValueError("--split is required with --data-path")
        fractions = parse_split(split)
        split_used = split
    else:
        fractions, split_used = None, None
    config = GPTDataConfig(
        seq_length=seq_length, seed=seed, split=split_used,
        split_matrix=split_matrix(fractions) if fractions else None,
        eod=eod, pad=pad, reset_position_ids=reset_position_ids,
        reset_attention_mask=reset_attention_mask, eod_mask_loss=eod_mask_loss,
        create_attention_mask=create_attention_mask,
        add_extra_token_to_sequence=add_extra_token_to_sequence,
        drop_last_partial_validation_sequence=drop_last_partial_validation_sequence,
        shuffle=shuffle, cache_dir=cache_dir, mid_level_dataset_surplus=mid_level_dataset_surplus,
        mock=is_mock, tokenizer_id=tokenizer_id, fim=fim_transform,
    )

    def build():
        builder = _Builder(config, sizes, tokenizer)
        if is_mock:
            return tuple(builder.splits_of(None, config.split_matrix, sizes))
        if weighted is not None:
            groups = _GroupBuilder(config, sizes, tokenizer)
            train = groups.group_dataset(weighted[0][0], 0)
            evals = [None if gs is None else [NamedDataset(g.name, groups.group_dataset(g, i)) for g in gs]
                     for i, gs in ((1, weighted[1]), (2, weighted[2]))]
            return (train, *evals)
        if blend is not None:
            return tuple(builder.blend(blend[0], blend[1], config.split_matrix, sizes))
        out: List[object] = [None] * 3
        for i, b in enumerate(per_split):
            if b is None:
                continue
            matrix = [None] * 3
            matrix[i] = (0.0, 1.0)
            sizes_i = [0, 0, 0]
            sizes_i[i] = sizes[i]
            out[i] = builder.blend(b[0], b[1], matrix, sizes_i, only=i)[i]
        return tuple(out)

    return build_then_share(build, no_shared_storage)


def _fim_transform(fim: Optional[FIMSettings], tokenizer, is_mock: bool) -> Optional[FIMTransform]:
    """The FIM transform the settings ask for, None when FIM is off (no settings, or a rate of 0)."""
    if fim is None or not fim.rate:
        return None  # rate 0: plain GPT samples (bigcode's gpt_dataset.py returns them untouched)
    if is_mock:
        raise ValueError("fill-in-the-middle data (--fim-data / --fim-rate) needs real text, and Megatron-LM refuses "
                         "it with --mock-data too; drop one of the two")
    if fim.split_sample and fim.fragment_rate is None:
        raise ValueError(f"--fim-split-sample {fim.split_sample} needs --fim-fragment-rate (the FIM rate of each "
                         "fragment); Megatron-LM has no default for it")
    if tokenizer is None:
        raise ValueError("fill-in-the-middle data (--fim-data / --fim-rate) needs the tokenizer (--tokenizer-type "
                         "HuggingFaceTokenizer --tokenizer-model DIR)")
    return FIMTransform(fim, tokenizer)


def _resolve_prefix(prefix: str, tokenizer, cache_dir: Optional[str], json_key: str) -> str:
    if prefix.lower().endswith(RAW_SUFFIXES) and os.path.isfile(prefix):
        from .raw import ensure_indexed_dataset

        if tokenizer is None:
            raise ValueError(f"{prefix} is a raw text file; pass a tokenizer to tokenize it once")
        return ensure_indexed_dataset(prefix, tokenizer, cache_dir, json_key=json_key)
    if not IndexedDataset.exists(prefix):
        missing = [p for p in (prefix + ".bin", prefix + ".idx") if not os.path.isfile(p)]
        raise FileNotFoundError(
            f"dataset prefix {prefix!r}: missing {' and '.join(missing)}; give the prefix without "
            ".bin/.idx (e.g. data/corpus_text_document) or a .jsonl/.parquet file"
        )
    return prefix


def _resolve_group(group: WeightedGroup, flag: str, tokenizer, cache_dir, json_key) -> WeightedGroup:
    entries = []
    for e in group.entries:
        try:
            path = _resolve_prefix(e.path, tokenizer, cache_dir, json_key)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{flag}: group {group.name!r}: {exc}") from None
        entries.append(GroupEntry(e.weight, e.start, e.end, path))
    return WeightedGroup(group.name, tuple(entries))


def _special_ids(tokenizer) -> Tuple[int, Optional[int], Optional[str]]:
    """(pad, eod, identity) with Megatron's rule: a pad id equal to another special id is -1."""
    if tokenizer is None:
        return -1, None, None
    eod = getattr(tokenizer, "eod", None)
    try:
        pad = tokenizer.pad
    except (AttributeError, NotImplementedError):  # ours raise AttributeError, megatron-core's NotImplementedError
        pad = None
    if pad is None:
        pad = -1
    specials = []
    try:
        specials = [v for k, v in tokenizer.special_tokens_dict.items() if k != "pad_token"]
    except (AttributeError, IndexError, ValueError):
        specials = []
    if not specials:
        for name in ("eos", "eod"):
            try:
                value = getattr(tokenizer, name)
            except (AttributeError, NotImplementedError):
                continue
            specials.append(value)
    if pad in specials:
        pad = -1
    identity = getattr(tokenizer, "identity", None) or type(tokenizer).__name__
    return int(pad), (None if eod is None else int(eod)), str(identity)
