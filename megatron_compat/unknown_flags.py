"""The escape hatch for flags nobody here knows: the user vouches for them, and they are ignored, loudly.

A fork's script may carry flags this project has never seen (its own logging, its own switches). They are
refused by default, because an unknown flag may change what training means. A user who knows that the
remaining ones do not matter says so:

    python tools/convert_args.py run.sh --allow-unknown-flags                 every unknown flag
    python tools/convert_args.py run.sh --allow-unknown-flags=--foo,--bar     only these
    pretrain_gpt.py ... --allow-unknown-flags[=--foo,--bar]
    FSDP2_ALLOW_UNKNOWN_FLAGS=all | --foo,--bar                               for a launch script's own line

Each flag ignored this way is listed in the report (and the converted YAML's header) as a WARNING.
Flags the registry rejects stay refused: they have a known reason.
"""
import os
from dataclasses import dataclass
from typing import FrozenSet, List, Mapping, Optional, Sequence, Tuple

OPTION = "--allow-unknown-flags"
ENV_VAR = "FSDP2_ALLOW_UNKNOWN_FLAGS"
EVERY = "all"


@dataclass(frozen=True)
class Vouch:
    """Which unknown flags the user vouches for: every one, or the named ones."""
    every: bool = False
    flags: FrozenSet[str] = frozenset()
    source: str = OPTION

    def covers(self, flag: str) -> bool:
        return self.every or flag in self.flags


def parse_vouch(text: str, source: str) -> Vouch:
    """`all` (or nothing) vouches for every unknown flag; `--foo,--bar` for those."""
    text = text.strip()
    if text in ("", EVERY, "1", "true", "yes"):
        return Vouch(every=True, source=source)
    flags = [f.strip() for f in text.replace(" ", ",").split(",") if f.strip()]
    bad = [f for f in flags if not f.startswith("--")]
    if bad:
        raise ValueError(f"{source}: expects `all` or flags such as --foo,--bar; got {', '.join(bad)}")
    return Vouch(flags=frozenset(flags), source=source)


def take_option(argv: Sequence[str]) -> Tuple[List[str], Optional[str]]:
    """argv without `--allow-unknown-flags[=LIST]`, and its value ('' when given bare; None when absent)."""
    rest, value = [], None
    for token in argv:
        if token == OPTION:
            value = value or ""
        elif token.startswith(OPTION + "="):
            value = token[len(OPTION) + 1:]
        else:
            rest.append(token)
    return rest, value


def vouch_from(option_value: Optional[str], environ: Optional[Mapping[str, str]] = None) -> Optional[Vouch]:
    """The vouch the command line (first) or the environment gives; None when neither does."""
    environ = os.environ if environ is None else environ  # read at call time: libraries may rebind os.environ
    if option_value is not None:
        return parse_vouch(option_value, OPTION)
    if environ.get(ENV_VAR):
        return parse_vouch(environ[ENV_VAR], ENV_VAR)
    return None
