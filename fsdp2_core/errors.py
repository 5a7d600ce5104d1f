"""The one base class of errors a user can fix: bad flags or config, missing data, unusable checkpoints.

An entry point prints such an error once, as its message alone, and exits with code 2;
anything else is a bug or an environment failure and keeps its traceback
(`fsdp2_core.train.errors.run_reporting_errors`). Subclasses keep their usual builtin base
as well (ConfigError is a ValueError), so existing `except ValueError` code still sees them.
"""


class UserError(Exception):
    """A problem in what the user gave (flags, config, data, checkpoints), worded as what, where and what to do."""
