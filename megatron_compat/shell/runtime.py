"""Values a script only has at run time: the variables a scheduler or MPI launcher sets in the job's environment,
and the output of commands (command substitutions, which the reader keeps as their text)."""
from __future__ import annotations

import re

SCHEDULER_VARIABLE = re.compile(r"(SLURM|SLURMD|OMPI|PMI|PMIX|PALS|PBS|LSB|JSM|COBALT|MV2|SGE)_\w+|JOB_ID|NHOSTS|"
                                r"NSLOTS|PE_HOSTFILE")
# bash's own variables whose value exists only when the script runs (the reader does not make one up)
BASH_RUN_TIME = {"RANDOM": "bash's random number (0-32767), a new one at every expansion",
                 "SRANDOM": "bash's 32-bit random number, a new one at every expansion",
                 "SECONDS": "the seconds since bash started", "EPOCHSECONDS": "the time of the run (Unix seconds)",
                 "EPOCHREALTIME": "the time of the run (Unix seconds, microseconds)",
                 "BASHPID": "the bash process's id", "HOSTNAME": "the name of the machine the job runs on"}
REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# A command substitution kept as text: $(...) but not $((...)), or `...`
COMMAND_OUTPUT = re.compile(r"\$\((?!\()|`")


def scheduler_references(raw: str) -> list[str]:
    """The scheduler's variables a word as written refers to, e.g. ["SLURM_JOB_ID"] for `$SLURM_JOB_ID`."""
    return [name for name in REFERENCE.findall(raw) if SCHEDULER_VARIABLE.fullmatch(name)]


def holds_command_output(value: str) -> bool:
    return bool(COMMAND_OUTPUT.search(value))
