"""How each Megatron / MindSpeed-LLM flag is spelled and parsed, read from the reference lists.

The three lists in `data/` (upstream Megatron-LM, MindSpeed-LLM additions, flags of older
Megatron releases) give every spelling with its argparse type or action, nargs and
default. This module only answers "how many values does this flag take, of what type,
and what is its Megatron default"; what a flag *means* lives in the registry.
"""
import ast
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Dict, Optional, Tuple

DATA_DIR = os.path.join(os.path.dirname(__file__), "data")
REFERENCE_FILES = ("megatron_lm_flags.tsv", "mindspeed_llm_flags.tsv", "megatron_legacy_flags.tsv", "extra_flags.tsv",
                   "fork_flags.tsv")
_BOOL_ACTIONS = ("store_true", "store_false", "BooleanOptionalAction", "store_const")


@dataclass(frozen=True)
class FlagSpec:
    flag: str
    kind: str            # "switch" (no value), "int", "float", "str"
    nargs: Any           # None (one value), "+", "*", or an int
    default: Any         # Megatron's default, parsed where it is a literal
    dest: str
    source: str          # which reference list it came from
    negates: bool = False  # store_false: giving the flag sets dest to False
    group: str = ""        # the reference list's group column (for fork_flags.tsv: the fork)

    @property
    def takes_value(self) -> bool:
        return self.kind != "switch"


def _parse_type(type_text: str) -> Tuple[str, Any, bool]:
    text = type_text.strip()
    if any(action in text for action in _BOOL_ACTIONS) and "nargs" not in text:
        return "switch", None, text.startswith("store_false")
    nargs = None
    match = re.search(r"nargs=([+*]|\d+)", text)
    if match:
        nargs = match.group(1) if match.group(1) in "+*" else int(match.group(1))
    kind = "str"
    if text.startswith("int"):
        kind = "int"
    elif text.startswith("float"):
        kind = "float"
    return kind, nargs, False


def _parse_default(text: str) -> Any:
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # an expression such as int(os.getenv(...)); kept as text


def _read_rows(filename: str):
    with open(os.path.join(DATA_DIR, filename), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#") or line.startswith("flag\t"):
                continue
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 5 and cols[0].startswith("--"):
                yield cols


# A fork flag spelled like an FSDP2 config name is the fork's only with one of these values (Pai-Megatron-Patch's
# dataset kinds); any other value keeps the config name's meaning (`--dataset alpaca`).
FORK_VALUES = {"--dataset": ("MMAP", "JSON-SFT", "LLama-Pretrain-Idxmap", "LLama-Pretrain-Raw", "LLama-SFT",
                             "LLama-SFT-Raw", "Bloom-SFT", "Qwen-VL-SFT", "LLava-SFT", "ChatGLM-Pretrain-Raw",
                             "GLM130B-WIKITEXT103", "WIKITEXT103", "LAMBADA")}

# Types wider than upstream's, for values forks write: their --rotary-base (and its --rope-theta) is a float, and
# Megatron-LM v1's --warmup was a fraction of the training iterations (today's --lr-warmup-fraction).
WIDER_KINDS = {"--rotary-base": "float", "--warmup": "float"}


@lru_cache(maxsize=1)
def all_specs() -> Dict[str, FlagSpec]:
    """Every known spelling -> its spec; upstream Megatron-LM wins where lists overlap."""
    specs: Dict[str, FlagSpec] = {}
    for filename in REFERENCE_FILES:
        for cols in _read_rows(filename):
            spellings, group, type_text, default, dest = cols[0].split(), cols[1], cols[2], cols[3], cols[4]
            if type_text.startswith("(upstream flag)"):
                continue  # a choice extension of an upstream flag: parse as upstream does
            kind, nargs, negates = _parse_type(type_text)
            kind = WIDER_KINDS.get(spellings[0], kind)
            for spelling in spellings:
                if spelling not in specs:
                    specs[spelling] = FlagSpec(spelling, kind, nargs, _parse_default(default), dest, filename, negates,
                                               group)
    return specs


def spec_for(flag: str) -> Optional[FlagSpec]:
    return all_specs().get(flag)


def reference_spellings(filename: str):
    """Spellings listed in one reference file (for coverage checks)."""
    return [s for cols in _read_rows(filename) for s in cols[0].split()]
