"""Values a converted launch script gives when it runs. tools/convert_args.py writes a path the old script took from
its arguments or its caller's environment (`${1}`, `${DATA_PATH}`), or computed with a command (`$(date +%F)`), into
the YAML as written, and the new launch script passes the real value as an override. Training from the YAML alone
must not take `${1}` for a directory name."""
from __future__ import annotations

import re

from .schema import ConfigError
from .yaml_io import config_to_sections

# `${NAME}` / `${1}` as tools/convert_args.py writes a value the new launch script gives (script_values.py)
RUN_TIME_REFERENCE = re.compile(r"\$\{(?:[A-Za-z_]\w*|[0-9]+)\}")
_UNRESOLVED = re.compile(r"\$\((?!\()|" + RUN_TIME_REFERENCE.pattern)  # not a backtick: chat templates hold code fences


def check_resolved(cfg) -> None:
    """Raise ConfigError naming each text field that still holds a reference only the launch script resolves."""
    found = [(f"{section}.{name}", value) for section, fields in config_to_sections(cfg).items()
             for name, value in fields.items() if isinstance(value, str) and _UNRESOLVED.search(value)]
    if found:
        listed = "; ".join(f"{key} is {value!r}" for key, value in found)
        raise ConfigError(f"{listed}: a value the converted launch script gives when it runs (from its arguments, "
                          f"its environment or a command: see the YAML's header); run that script, or give the "
                          f"value here (--{found[0][0]} VALUE, or in the YAML)")
