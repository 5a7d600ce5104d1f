"""Field lookup and value coercion for the canonical config.

Every field name is unique across sections, so a flat name finds its home section.
Values from YAML or the command line are coerced to the annotated type here, with
an error that names the field and the expected type.
"""
import dataclasses
import difflib
import typing
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

from fsdp2_core.errors import UserError

from .arguments import SECTIONS


class ConfigError(UserError, ValueError):
    """A configuration problem, worded for the user: what, where, and what to do.

    `problems` lists (key, text) per broken rule when several were collected: the key is the field
    name (or `architecture.<Hugging Face key>`), so a front end can name the flag that set it.
    """

    def __init__(self, message: str, problems: Sequence[Tuple[Optional[str], str]] = ()):
        super().__init__(message)
        self.problems: List[Tuple[Optional[str], str]] = list(problems)


def _build_index() -> Dict[str, Tuple[str, dataclasses.Field]]:
    index = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.name not in index, f"field {f.name} defined twice"
            f_type = hints[f.name]
            index[f.name] = (section, f, f_type)
    return index


FIELD_INDEX = _build_index()


def field_section(name: str) -> str:
    return FIELD_INDEX[name][0]


def field_type(name: str):
    return FIELD_INDEX[name][2]


def closest_fields(name: str, candidates=None, n: int = 3) -> List[str]:
    pool = list(candidates if candidates is not None else FIELD_INDEX)
    return difflib.get_close_matches(name, pool, n=n, cutoff=0.6)


def describe_type(tp) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is Union:
        parts = [describe_type(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return f"{text} (or null)" if type(None) in args else text
    if origin in (list, List):
        return f"a list of {describe_type(args[0])}"
    if origin in (dict, Dict):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}
_NULL = {"none", "null", "~", ""}


def coerce(name: str, value: Any, tp=None) -> Any:
    """Coerce `value` to field `name`'s type; raise ConfigError naming the field otherwise."""
    tp = tp if tp is not None else field_type(name)
    try:
        return _coerce(value, tp)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: got {value!r}, expected {describe_type(tp)}") from exc


def _coerce(value, tp):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NULL):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(exc)
        raise ValueError(errors)
    if origin is Literal:
        if value in args:
            return value
        raise ValueError(value)
    if origin in (list, List):
        items = value
        if isinstance(value, str):
            items = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(items, (list, tuple)):
            items = [items]
        return [_coerce(v, args[0]) for v in items]
    if origin in (dict, Dict):
        if isinstance(value, dict):
            return dict(value)
        raise TypeError(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(value)
    if tp is int:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise TypeError(value)
    if tp is float:
        if isinstance(value, bool):
            raise TypeError(value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError(value)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeError(value)
    if tp is Any:
        return value
    raise TypeError(f"unsupported type {tp}")
