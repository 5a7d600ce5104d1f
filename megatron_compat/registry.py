"""The flag registry: one row per flag spelling, mapped | absorbed | rejected.

Rows come from two places: `mapping.MAPPED_RULES` (flags with a canonical meaning and a
transform) and `data/flag_status.tsv` (flags accepted with no effect, or refused, each
with its reason and the nearest replacement). `--list-flags`, the migration guide and
the reverse conversion all read these same rows.
"""
import csv
import os
from functools import lru_cache
from typing import Dict, List, Optional

from .flag_spec import DATA_DIR, spec_for
from .mapping import MAPPED_RULES, Rule

STATUS_FILE = os.path.join(DATA_DIR, "flag_status.tsv")
STATUSES = ("mapped", "absorbed", "rejected", "absorbed-at-default")


def _status_rows() -> List[Rule]:
    if not os.path.exists(STATUS_FILE):
        return []
    with open(STATUS_FILE, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [Rule((row["flag"],), row["status"], row["reason"], row.get("replacement") or "-") for row in reader]


@lru_cache(maxsize=1)
def registry() -> Dict[str, Rule]:
    """Spelling -> rule. Mapped rows win over the status table where both name a flag."""
    rows: Dict[str, Rule] = {}
    for rule in _status_rows():
        for flag in rule.flags:
            rows[flag] = rule
    for rule in MAPPED_RULES:
        for flag in rule.flags:
            rows[flag] = rule
    return rows


def rule_for(flag: str) -> Optional[Rule]:
    return registry().get(flag)


def status_for(flag: str, value) -> str:
    """The effective status for this value: absorbed-at-default resolves by the value."""
    rule = rule_for(flag)
    if rule is None:
        return "unknown"
    if rule.status != "absorbed-at-default":
        return rule.status
    return "absorbed" if is_megatron_default(flag, value) else "rejected"


def is_megatron_default(flag: str, value) -> bool:
    spec = spec_for(flag)
    if spec is None:
        return False
    if not spec.takes_value:
        return False  # a switch given on the command line always asks for something
    default = spec.default
    if isinstance(value, list) and not isinstance(default, list):
        return len(value) == 1 and _same(value[0], default)
    return _same(value, default)


def _same(a, b) -> bool:
    if isinstance(b, bool) and isinstance(a, str) and a.lower() in ("true", "false"):
        return (a.lower() == "true") == b  # a fork's boolean-valued flag: --use-torch-compile=false
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def list_flags_lines() -> List[str]:
    """`<flag>\t<mapped|absorbed|rejected>\t<target or reason>` for every spelling, sorted."""
    lines = []
    for flag, rule in sorted(registry().items()):
        status = rule.status
        text = rule.target
        if status == "absorbed-at-default":
            status, text = "absorbed", f"{text} (at its default value; any other value is rejected)"
        if rule.status == "rejected" and rule.replacement not in ("", "-"):
            text = f"{text}; instead: {rule.replacement}"
        lines.append(f"{flag}\t{status}\t{text}")
    return lines
