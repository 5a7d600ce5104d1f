"""bigscience's / bigcode's second data mode: `--{train,valid,test}-weighted-split-paths[-path]`.

Each flag gives dataset groups ("NAME: WEIGHT START:END PATH, ..."), inline (one shell word per group) or in a
file of one line with every group in double quotes (the `-path` spelling, read here at translation so the config
holds the groups themselves; a file that is not on this machine, the cluster's, is kept by path and read when the
data is built). As in the forks, training takes one group, and the mode excludes --data-path and
--split (their arguments.py asserts it).
"""
import os
from typing import NamedTuple

from fsdp2_core.data.megatron.weighted_split import parse_groups, read_groups_file

from .registry import rule_for
from .report import ReportLine

SPLITS = ("train", "valid", "test")
EXCLUSIVE = ("--data-path", "--split", "--train-data-path", "--valid-data-path", "--test-data-path", "--mock-data")


def weighted_split(t) -> None:
    """Write data.{train,valid,test}_weighted_split_paths from whichever spelling each split was given in."""
    given = [f for s in SPLITS for f in (_flag(s), _flag(s) + "-path") if f in t.given]
    if not given:
        return
    clash = [f for f in EXCLUSIVE if f in t.given]
    if clash:
        t.errors.append(f"{given[0]} and {' / '.join(clash)} are exclusive: bigscience's and bigcode's Megatron "
                        "take the data either as weighted split groups or as --data-path with --split (their "
                        f"arguments.py asserts it); drop {' / '.join(clash)}")
        return
    texts = {s: _groups_of(t, s) for s in SPLITS}
    if any(v is False for v in texts.values()):
        return  # the error is recorded
    if texts["train"] is None:
        t.errors.append(f"{given[0]} needs the training group --train-weighted-split-paths (or its -path file): "
                        "the forks build validation and test groups only beside it")
        return
    for s in SPLITS:
        if isinstance(texts[s], LaterFile):  # not on this machine: the data reads it when it is built
            t.set(f"{s}_weighted_split_paths_path", texts[s].path)
            t.notes.append(f"WARNING: {_flag(s)}-path {texts[s].path} is not on this machine: kept as "
                           f"data.{s}_weighted_split_paths_path and read when the data is built (its groups are "
                           "checked then)")
        elif texts[s] is not None:
            t.set(f"{s}_weighted_split_paths", texts[s][0] if s == "train" else texts[s])
    t.set("data_manager_type", "mg")
    for flag in given:
        t.lines.append(ReportLine(flag, t.given[flag], "mapped", rule_for(flag).target))


class LaterFile(NamedTuple):
    """A group file named by a -path flag that is not on this machine (the cluster's): read at run time."""
    path: str


def _flag(split: str) -> str:
    return f"--{split}-weighted-split-paths"


def _groups_of(t, split):
    """This split's group strings (checked), None when not given, False after recording an error."""
    inline, file_flag = _flag(split), _flag(split) + "-path"
    if inline in t.given and file_flag in t.given:
        t.errors.append(f"{inline} and {file_flag} both give the {split} groups; keep one")
        return False
    try:
        if file_flag in t.given:
            path = str(t.given[file_flag])
            if not os.path.exists(path):
                return LaterFile(path)
            texts, where = read_groups_file(path, file_flag), f"{file_flag} {path}:"
        elif inline in t.given:
            value = t.given[inline]
            texts, where = ([value] if isinstance(value, str) else [str(v) for v in value]), inline
        else:
            return None
        parse_groups(texts, where, single=(split == "train"))
    except ValueError as exc:
        t.errors.append(str(exc))
        return False
    return texts
