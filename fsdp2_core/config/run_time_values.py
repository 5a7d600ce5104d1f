"""Values a converted launch script gives when it runs. tools/convert_args.py writes a path the old script took from
its arguments or its caller's environment (`${1}`, `${DATA_PATH}`), or computed with a command (`$(date +%F)`), into
the YAML as written, and the new launch script passes the real value as an override. Training from the YAML alone
must not take `${1}` for a directory name."""
from __future__ import annotations

import re

from .schema import FIELD_INDEX, ConfigError, field_section

_UNRESOLVED = re.compile(r"\$\((?!\()|\$\{(?:[A-Za-z_]\w*|[0-9]+)\}")  # not a backtick: chat templates hold code fences


def check_resolved(cfg) -> None:
    """Raise ConfigError naming each text field that still holds a reference only the launch script resolves."""
    found = [(f"{field_section(name)}.{name}", value) for name in FIELD_INDEX
             for value in [getattr(getattr(cfg, field_section(name)), name)]
             if isinstance(value, str) and _UNRESOLVED.search(value)]
    if found:
        listed = "; ".join(f"{key} is {value!r}" for key, value in found)
        raise ConfigError(f"{listed}: a value the converted launch script gives when it runs (from its arguments, "
                          f"its environment or a command: see the YAML's header); run that script, or give the "
                          f"value here (--{found[0][0]} VALUE, or in the YAML)")
