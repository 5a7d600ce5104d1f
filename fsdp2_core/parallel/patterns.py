"""Module-name patterns of the config: `{*}` is one name component, `*` any run of characters."""
import re
from functools import lru_cache
from typing import Iterable, List, Tuple

import torch.nn as nn


@lru_cache(maxsize=None)
def _compile(pattern: str) -> "re.Pattern":
    parts = re.split(r"(\{\*\}|\*)", pattern)
    body = "".join("[^.]+" if p == "{*}" else ".*" if p == "*" else re.escape(p) for p in parts)
    return re.compile(body + r"\Z")


def matches(name: str, patterns: Iterable[str]) -> bool:
    return any(_compile(p).match(name) for p in patterns or ())


def matching_modules(model: nn.Module, patterns: Iterable[str]) -> List[Tuple[str, nn.Module]]:
    """(name, module) pairs in model order whose name matches one of `patterns`."""
    return [(name, mod) for name, mod in model.named_modules() if name and matches(name, patterns)]
