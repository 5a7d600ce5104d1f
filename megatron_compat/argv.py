"""Split a command line into Megatron flags and FSDP2 names, typed, as argparse would.

Real launch lines carry a few things argparse-based Megatron tolerates: `--local-rank=N`
added by `torch.distributed.launch`, values with literal quotes left by bash
(`--split "'99,1,0'"`), and repeated flags (the last wins). Each is accepted and noted.
"""
import difflib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from fsdp2_core.config import FIELD_INDEX, ConfigError
from fsdp2_core.config.yaml_io import field_name_from_option, parse_overrides

from .flag_spec import FORK_VALUES, FlagSpec, all_specs, spec_for
from .registry import rule_for

_LAUNCHER_FLAGS = ("--local-rank", "--local_rank")


@dataclass
class ParsedArgs:
    megatron: Dict[str, Any] = field(default_factory=dict)   # flag -> typed value, in order given
    fsdp2: Dict[str, Any] = field(default_factory=dict)      # canonical field -> raw value
    yaml_path: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    unknown: List[Tuple[str, List[str]]] = field(default_factory=list)  # (flag, suggestions)
    unknown_values: Dict[str, List[str]] = field(default_factory=dict)  # unknown flag -> the words after it
    errors: List[str] = field(default_factory=list)


def suggest_flags(flag: str, n: int = 3) -> List[str]:
    pool = list(all_specs()) + ["--" + name for name in FIELD_INDEX]
    return difflib.get_close_matches(flag, pool, n=n, cutoff=0.6)


def parse_argv(argv: List[str]) -> ParsedArgs:
    parsed = ParsedArgs()
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            i = _positional(parsed, token, i)
            continue
        flag, has_inline, inline = token.partition("=")
        if flag in _LAUNCHER_FLAGS or flag.replace("_", "-") == "--local-rank":
            i = i + 1 if has_inline else _skip_values(tokens, i + 1)
            parsed.notes.append(f"{flag}: added by the launcher; the rank comes from the environment (LOCAL_RANK)")
            continue
        values, i = _collect(tokens, i + 1, inline if has_inline else None)
        spec = spec_for(flag)
        if flag in FORK_VALUES and not set(values) <= set(FORK_VALUES[flag]) and _is_fsdp2_name(flag):
            spec = None  # the config name, not the fork's flag of the same spelling
        if spec is not None:
            _store_megatron(parsed, spec, values)
        elif _is_fsdp2_name(flag):
            _store_fsdp2(parsed, flag, values)
        else:
            parsed.unknown.append((flag, suggest_flags(flag)))
            parsed.unknown_values[flag] = values
    return parsed


def _positional(parsed, token, i):
    if parsed.yaml_path is None and not parsed.megatron and token.endswith((".yaml", ".yml")):
        parsed.yaml_path = token
    else:
        parsed.errors.append(f"unexpected argument {token!r}: every value must follow a flag")
    return i + 1


def _collect(tokens, start, inline):
    """Values following a flag: the inline `=value`, or tokens up to the next `--option`."""
    if inline is not None:
        return [inline], start
    end = _skip_values(tokens, start)
    return tokens[start:end], end


def _skip_values(tokens, start):
    end = start
    while end < len(tokens) and not (tokens[end].startswith("--") and len(tokens[end]) > 2):
        end += 1
    return end


def _strip_quotes(parsed, flag, value):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        parsed.notes.append(f"{flag}: literal quotes removed from {value} (Megatron tolerates them too)")
        return value[1:-1]
    return value


# A switch written with a boolean value, as forks declare theirs (Habana's `--use-fused-rmsnorm 1`)
_BOOLEAN_WORDS = {"true": True, "1": True, "false": False, "0": False}


def _store_megatron(parsed, spec: FlagSpec, values: List[str]):
    flag = spec.flag
    values = [_strip_quotes(parsed, flag, v) for v in values]
    if not spec.takes_value and len(values) == 1 and values[0].lower() in _BOOLEAN_WORDS:
        on = _BOOLEAN_WORDS[values[0].lower()]
        parsed.notes.append(f"{flag} {values[0]}: a switch written with a boolean value (as forks declare theirs); "
                            f"read as {'given' if on else 'not given'}")
        if not on:
            return
        values = []
    try:
        value = _typed(spec, values)
    except ValueError as exc:
        rule = rule_for(flag)
        if rule is not None and rule.status == "mapped":
            parsed.errors.append(f"{flag}: {exc}")
            return
        value = values  # refused or absorbed anyway: its exact form does not matter
    if flag in parsed.megatron:  # said once per flag, with the value that finally wins
        said = f"{flag} given more than once:"
        parsed.notes[:] = [n for n in parsed.notes if not n.startswith(said)]
        parsed.notes.append(f"{said} the last value ({_show(value)}) wins, as in argparse")
        del parsed.megatron[flag]  # keep order of the winning occurrence
    parsed.megatron[flag] = value


def _typed(spec: FlagSpec, values: List[str]):
    if not spec.takes_value:
        if values:
            raise ValueError(f"takes no value, got {' '.join(values)!r}")
        return True
    expected = {"int": "an integer", "float": "a number", "str": "a string"}[spec.kind]
    if spec.nargs is None and len(values) != 1:
        raise ValueError(f"expects one value ({expected}), got {len(values)}: {' '.join(values)!r}")
    if spec.nargs == "+" and not values:
        raise ValueError(f"expects one or more values ({expected})")
    if isinstance(spec.nargs, int) and len(values) != spec.nargs:
        raise ValueError(f"expects {spec.nargs} values, got {len(values)}")
    convert = {"int": int, "float": float, "str": str}[spec.kind]
    try:
        typed = [convert(v) for v in values]
    except ValueError:
        raise ValueError(f"expects {expected}, got {' '.join(values)!r}{_run_time_hint(values)}") from None
    return typed[0] if spec.nargs is None else typed


def _run_time_hint(values: List[str]) -> str:
    """What to do when the launch script computes the value only when the job runs ($((...)) over a scheduler's
    variable, $(nvidia-smi ...)): the reader keeps such a value as its text."""
    if not any("$(" in v or "`" in v for v in values):
        return ""
    return (": the script computes it only when the job runs (the warnings above name the variables and commands "
            "it uses); give them here with --set NAME=VALUE, or put the number in the script")


def _is_fsdp2_name(flag: str) -> bool:
    try:
        field_name_from_option(flag[2:])
        return True
    except ConfigError:
        return False


def _store_fsdp2(parsed, flag, values):
    try:
        parsed.fsdp2.update(parse_overrides([flag] + values))
    except ConfigError as exc:
        parsed.errors.append(str(exc))


def _show(value):
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)
