"""What reading a launch script gives: the launch line found, its settings, the warnings."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import NamedTuple


class ShellReadError(ValueError):
    """The script cannot be read: a syntax error, or no launch line."""


class ShellWarning(NamedTuple):
    line: int
    message: str


@dataclass
class LaunchScript:
    path: str
    entry: str                      # the script as passed to the launcher, e.g. "pretrain_gpt.py"
    entry_line: int                 # line of the launch command
    argv: list[str]                 # arguments after the entry script, as bash would pass them
    launcher: str                   # torchrun | torch.distributed.launch | torch.distributed.run | python
    launcher_args: list[str]        # arguments between the launcher and the entry script
    nproc_per_node: str | None = None
    nnodes: str | None = None
    node_rank: str | None = None
    master_addr: str | None = None
    master_port: str | None = None
    exports: dict[str, str] = field(default_factory=dict)      # exported env, in export order
    export_lines: dict[str, int] = field(default_factory=dict)  # line of each export
    warnings: list[ShellWarning] = field(default_factory=list)
    # exports whose value used variables the script never set (e.g. PATH=/x:$PATH): the value with
    # each such reference kept as "\x00NAME\x00", so the new script can refer to the caller's $NAME
    export_templates: dict[str, str] = field(default_factory=dict)

    @property
    def entry_name(self) -> str:
        return os.path.basename(self.entry)

    @property
    def world_size(self) -> int | None:
        """nproc_per_node x nnodes (each defaults to 1, as in torchrun); None if not numeric."""
        try:
            nproc = int(self.nproc_per_node) if self.nproc_per_node is not None else 1
            nnodes = int(self.nnodes) if self.nnodes is not None else 1
        except ValueError:
            return None
        return nproc * nnodes
