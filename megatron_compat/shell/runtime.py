"""Values a script only has at run time: the variables a scheduler or MPI launcher sets in the job's environment,
and the output of commands (command substitutions, which the reader keeps as their text)."""
from __future__ import annotations

import re

SCHEDULER_VARIABLE = re.compile(r"(SLURM|SLURMD|OMPI|PMI|PMIX|PALS|PBS|LSB|COBALT|MV2|SGE)_\w+|JOB_ID|NHOSTS|NSLOTS|"
                                r"PE_HOSTFILE")
REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# A command substitution kept as text: $(...) but not $((...)), or `...`
COMMAND_OUTPUT = re.compile(r"\$\((?!\()|`")


def scheduler_references(raw: str) -> list[str]:
    """The scheduler's variables a word as written refers to, e.g. ["SLURM_JOB_ID"] for `$SLURM_JOB_ID`."""
    return [name for name in REFERENCE.findall(raw) if SCHEDULER_VARIABLE.fullmatch(name)]


def holds_command_output(value: str) -> bool:
    return bool(COMMAND_OUTPUT.search(value))
