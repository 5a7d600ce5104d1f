"""Read and write the sectioned YAML layout, and apply command-line overrides.

Layout: `model / data / parallel / training / optimization / profiling`. On reading,
a field may sit under any section or at the top level (MindSpeed-LLM YAMLs put the
fused-op switches under `training`, for example). On writing, each field goes to its
home section.
"""
import dataclasses
import os
import tempfile
import typing
from typing import Any, Dict, Optional, Sequence

import yaml

from .arguments import SECTIONS, TrainConfig
from .schema import FIELD_INDEX, ConfigError, closest_fields, coerce, describe_type, field_section, field_type
from .validate import validate


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own error names it
                break
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {first + 1}); keep one",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


def load_yaml_file(path: str) -> Any:
    """The document of a YAML file; a missing, unreadable, binary or malformed file is a ConfigError naming it."""
    if os.path.isdir(path):
        raise ConfigError(f"config file {path} is a directory; give the YAML file inside it")
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a text file (byte {exc.start} is not UTF-8); give a YAML config") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def read_yaml_values(path: str) -> Dict[str, Any]:
    """Flatten a config YAML into {field: raw value}, rejecting unknown keys with suggestions."""
    doc = load_yaml_file(path)
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (model, data, parallel, training, ...)")
    return flatten_sections(doc, source=path)


def flatten_sections(doc: Dict[str, Any], source: str = "config") -> Dict[str, Any]:
    values: Dict[str, Any] = {}
    for key, value in doc.items():
        if key in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section '{key}' must be a mapping of fields, got {value!r}")
            for name, item in value.items():
                _put(values, name, item, f"{source}: section '{key}'")
        else:
            _put(values, key, value, f"{source}: top level")
    return values


def _put(values, name, value, where):
    if name not in FIELD_INDEX:
        hint = closest_fields(str(name))
        extra = f"; did you mean {', '.join(hint)}?" if hint else "; see docs/config_reference.md for the fields"
        raise ConfigError(f"{where}: unknown key '{name}'{extra}")
    values[name] = value


def parse_overrides(args: Sequence[str]) -> Dict[str, Any]:
    """`--training.lr 1e-4`, `--lr 1e-4`, `--tp_size 2`, `--tp-size=2`; a bare boolean means true."""
    values: Dict[str, Any] = {}
    i = 0
    args = list(args)
    while i < len(args):
        token = args[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}: overrides look like --section.field VALUE or "
                              "--field VALUE")
        key, _, inline = token[2:].partition("=")
        name = field_name_from_option(key)
        if inline or "=" in token:
            value, i = inline, i + 1
        elif field_type(name) is bool and (i + 1 >= len(args) or args[i + 1].startswith("--")):
            value, i = True, i + 1
        else:
            value, i = _take_values(name, args, i + 1)
        values[name] = value
    return values


def _take_values(name, args, start):
    """One value, or every value up to the next option for list fields."""
    tp = field_type(name)
    is_list = typing.get_origin(tp) is list or any(typing.get_origin(a) is list for a in typing.get_args(tp))
    end = start
    while end < len(args) and not (args[end].startswith("--") and len(args[end]) > 2):
        end += 1
        if not is_list:
            break
    if end == start:
        raise ConfigError(f"--{name} needs a value ({describe_type(tp)})")
    chunk = args[start:end]
    return (chunk if is_list else chunk[0]), end


def field_name_from_option(key: str) -> str:
    """Resolve 'training.lr', 'lr', 'tp-size' to a field name, or fail with suggestions."""
    section, dot, name = key.rpartition(".")
    name = name.replace("-", "_")
    if dot and section not in SECTIONS:
        raise ConfigError(f"--{key}: unknown section '{section}'; sections are {', '.join(SECTIONS)}")
    if name not in FIELD_INDEX:
        hint = closest_fields(name)
        extra = f"; did you mean {', '.join('--' + h for h in hint)}?" if hint else ""
        raise ConfigError(f"--{key}: unknown option{extra}")
    return name


def build_config(values: Dict[str, Any], base: Optional[TrainConfig] = None, check: bool = True) -> TrainConfig:
    """Coerce raw values onto a config (defaults, or `base`) and validate once."""
    cfg = base if base is not None else TrainConfig()
    errors = []
    for name, raw in values.items():
        try:
            setattr(getattr(cfg, field_section(name)), name, coerce(name, raw))
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError("invalid values:\n  - " + "\n  - ".join(errors))
    return validate(cfg) if check else cfg


def load_config(path: Optional[str], overrides: Sequence[str] = ()) -> TrainConfig:
    values = read_yaml_values(path) if path else {}
    values.update(parse_overrides(overrides))
    return build_config(values)


def config_to_sections(cfg: TrainConfig, only_changed: bool = False) -> Dict[str, Dict[str, Any]]:
    """Sectioned plain-data view; with only_changed, fields equal to the reference default are left out."""
    default = TrainConfig()
    out: Dict[str, Dict[str, Any]] = {}
    for section in SECTIONS:
        part, base = getattr(cfg, section), getattr(default, section)
        items = {}
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if only_changed and value == getattr(base, f.name):
                continue
            items[f.name] = value
        if items:
            out[section] = items
    return out


def dump_yaml(cfg: TrainConfig, only_changed: bool = False) -> str:
    return yaml.safe_dump(config_to_sections(cfg, only_changed), sort_keys=False,
                          default_flow_style=False, allow_unicode=True)


def write_text_atomic(path: str, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
