"""Weighted dataset groups of bigscience's / bigcode's Megatron forks (`--train-weighted-split-paths`).

A group is written `"NAME: W1 S1:E1 PATH1, W2 S2:E2 PATH2"`: each entry is a `.bin/.idx` prefix restricted to
its documents [round(S·N), round(E·N)) of N, blended with the other entries by weight. Training takes one
group; validation and test take several, each evaluated on its own under its NAME. The `-path` spelling of
the flags names a file of one line holding the groups, each in double quotes.

Pure parsing here (no dataset is opened); `builder.build_weighted_group` builds the datasets.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

FORMAT = '"NAME: WEIGHT START:END PATH, WEIGHT START:END PATH, ..."'


@dataclass(frozen=True)
class GroupEntry:
    weight: float
    start: float   # fraction of the documents where the entry begins
    end: float     # fraction where it ends (exclusive)
    path: str      # the .bin/.idx prefix


@dataclass(frozen=True)
class WeightedGroup:
    name: str
    entries: Tuple[GroupEntry, ...]


@dataclass(frozen=True)
class NamedDataset:
    """One validation (or test) group's dataset and the name it is evaluated and logged under."""
    name: str
    dataset: Any

    def __len__(self) -> int:
        return len(self.dataset)

    def token_id_ranges(self):
        return self.dataset.token_id_ranges()


def parse_group(text: str, flag: str) -> WeightedGroup:
    """One group string -> WeightedGroup; ValueError names `flag`, the group and what is wrong."""
    where = f"{flag} {text!r}"
    if ":" not in text:
        raise ValueError(f"{where}: no 'NAME:' before the entries; write each group as {FORMAT}")
    name, _, body = text.partition(":")  # the forks take the name up to the first colon
    name = name.strip()
    if not name:
        raise ValueError(f"{where}: the group has no name before ':'; write each group as {FORMAT}")
    entries = [_parse_entry(part, where) for part in body.split(",")]
    return WeightedGroup(name, tuple(entries))


def _parse_entry(part: str, where: str) -> GroupEntry:
    words = part.split()
    if len(words) != 3:
        hint = " (separate the entries with commas)" if len(words) > 3 and len(words) % 3 == 0 else ""
        raise ValueError(f"{where}: entry {part.strip()!r} has {len(words)} words, not the three WEIGHT START:END "
                         f"PATH{hint}; write each group as {FORMAT}")
    weight_text, range_text, path = words
    weight = _number(weight_text, "weight", part, where)
    bounds = range_text.split(":")
    if len(bounds) != 2:
        raise ValueError(f"{where}: entry {part.strip()!r}: range {range_text!r} is not START:END (fractions of "
                         "the documents, e.g. 0:0.95)")
    start, end = (_number(b, "range bound", part, where) for b in bounds)
    if not 0 <= start < end <= 1:
        raise ValueError(f"{where}: entry {part.strip()!r}: range {range_text} needs 0 <= START < END <= 1 "
                         "(fractions of the documents)")
    if weight < 0 or not math.isfinite(weight):
        raise ValueError(f"{where}: entry {part.strip()!r}: weight {weight_text} must be a non-negative number")
    return GroupEntry(weight, start, end, path)


def _number(text: str, what: str, part: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: entry {part.strip()!r}: {what} {text!r} is not a number") from None


def parse_groups(texts: Sequence[str], flag: str, single: bool = False) -> List[WeightedGroup]:
    """Several group strings; `single` (the training flag) allows exactly one, as the forks do."""
    groups = [parse_group(t, flag) for t in texts]
    if not groups:
        raise ValueError(f"{flag} has no group: give one as {FORMAT}")
    if single and len(groups) != 1:
        raise ValueError(f"{flag}: {len(groups)} groups given, but training takes exactly one group "
                         f"(the forks allow one); blend its datasets inside it: {FORMAT}")
    for g in groups:
        if len(g.entries) > 1 and sum(e.weight for e in g.entries) <= 0:
            raise ValueError(f"{flag}: group {g.name!r}: the weights of its entries sum to 0")
    return groups


def read_groups_file(path: str, flag: str) -> List[str]:
    """The groups of a `--*-weighted-split-paths-path` file: one line, each group in double quotes."""
    if not os.path.isfile(path):
        raise ValueError(f"{flag} {path}: no such file; it should hold one line with the groups, each in double "
                         f"quotes: {FORMAT}")
    with open(path, encoding="utf-8") as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"{flag} {path}: {len(lines)} lines, the forks read exactly one (the groups, each in "
                         "double quotes, separated by spaces)")
    line = lines[0].strip()
    if len(line) < 2 or not (line.startswith('"') and line.endswith('"')):
        raise ValueError(f"{flag} {path}: the line must start and end with a double quote, each group quoted: "
                         f'"G1: 1 0:0.9 /data/a" "G2: 1 0.9:1 /data/a"')
    return line[1:-1].split('" "')


def document_range(entry: GroupEntry, num_documents: int) -> Tuple[int, int]:
    """[round(S·N), round(E·N)) with Python's rounding (half to even), as the forks' get_split_by_range_."""
    return round(entry.start * float(num_documents)), round(entry.end * float(num_documents))


def entry_sample_counts(weights: Sequence[float], num_samples: int) -> Tuple[List[float], List[int]]:
    """(normalised weights, samples per entry) as the forks' get_datasets_weights_and_num_samples: each entry
    gets ceil(num_samples · weight · 1.005), the 0.5% surplus covering the blend's uneven draws."""
    total = 0.0
    for w in weights:
        total += w
    normalised = [w / total for w in weights]
    return normalised, [int(math.ceil(num_samples * w * 1.005)) for w in normalised]
