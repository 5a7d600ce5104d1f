"""What reading a launch script gives: the launch line found, its launchers, its settings, the warnings."""
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
class Stage:
    """One launcher the launch line passes through, e.g. `srun -N 2 --ntasks-per-node=8` or `numactl --membind=0`."""
    kind: str                       # srun | mpirun | deepspeed | numactl | uv run | torchrun | ... (launchers.py)
    program: list[str]              # the words that name it, as written: ["/usr/bin/mpirun"], ["uv", "run"]
    args: list[str]                 # its options, as bash passes them
    line: int
    values: dict[str, str] = field(default_factory=dict)  # its options by canonical name, e.g. {"ntasks": "16"}


@dataclass
class Output:
    """Where one level of the launch line sends its output, expanded: output redirections as (operator, target),
    e.g. ("2>&", "1"), (">>", "logs/train.log"), and the commands it pipes into with their own output
    redirections, e.g. [(["tee", "logs/train.log"], [])]."""
    redirects: list[tuple[str, str]]
    pipe_into: list[tuple[list[str], list[tuple[str, str]]]]


@dataclass
class LaunchScript:
    path: str
    entry: str                      # the script as passed to the launcher, e.g. "pretrain_gpt.py"
    entry_line: int                 # line of the launch command
    argv: list[str]                 # arguments after the entry script, as bash would pass them
    launcher: str                   # what starts the entry: torchrun | torch.distributed.launch | torch.distributed.run
    #                                 | deepspeed | msrun | python
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
    # launchers around the one that starts the entry, outermost first: srun, mpirun, numactl, uv run, ...
    wrappers: list[Stage] = field(default_factory=list)
    world_size: int | None = 1      # number of training processes; None when only known at run time
    world_size_source: str = "a single python process"  # where world_size comes from, in words
    # a bare `python` launch that reads a per-rank launcher's rank variables ($OMPI_COMM_WORLD_RANK): that launcher
    # (mpirun, srun, jsrun) starts this script once per rank from outside it; None otherwise
    started_by: str | None = None
    rank_variable: str | None = None  # the rank variable that says so, e.g. OMPI_COMM_WORLD_RANK
    # a script the per-rank launcher runs with the entry as its first argument, not here to read: taken to start
    # python with its arguments in each task (LUMI's `srun ... launch.sh pretrain_gpt.py ...`); None otherwise
    rank_script: str | None = None
    # the folder convert_args ran in, when the script read it as its starting folder (`pwd`, $PWD before any cd to
    # an absolute path): the new script, started from the same folder, writes it as $PWD; None otherwise
    start_folder: str | None = None
    start_folder_as: str = "$PWD"  # how the new script writes it: "${PBS_O_WORKDIR:-$PWD}" when the script read that
    # the script's variables at the launch line (unset references as "\x00NAME\x00"), so a setting computed
    # at run time from them ($(( GPUS * NNODES ))) can be computed again by the new script
    variables: dict[str, str] = field(default_factory=dict)
    directives: list[str] = field(default_factory=list)  # the scheduler's lines: "#SBATCH --nodes=2", "#PBS ..."
    # files the script wrote from here-documents before the launch (`cat <<EOF > ds_config.json`): path -> text
    files: dict[str, str] = field(default_factory=dict)
    # the variable the script writes after each option of argv (`--load $CKPT`), with its value at the launch:
    # option -> option_values.OptionVariable
    option_variables: dict = field(default_factory=dict)
    # where the launch line's output went (`2>&1 | tee $LOG`), outermost level first; empty: the terminal
    outputs: list[Output] = field(default_factory=list)
    # `source` lines that set up the machine's environment (a virtualenv, modules, the CANN toolkit), as written
    setup_sources: list[str] = field(default_factory=list)
    unread_sources: list[str] = field(default_factory=list)  # sourced files not here (variables they set unknown)

    @property
    def entry_name(self) -> str:
        return os.path.basename(self.entry)

    @property
    def style(self) -> str:
        """The launcher chain in words, e.g. "srun + torchrun", "mpirun + python", "torchrun"."""
        return " + ".join([s.kind for s in self.wrappers] + [self.launcher])

    def wrapper(self, kind: str) -> Stage | None:
        return next((s for s in self.wrappers if s.kind == kind), None)
