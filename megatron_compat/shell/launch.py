"""Read a Megatron-LM / MindSpeed-LLM bash launch script without running it.

`read_launch_script(text, script_args)` tokenizes the script, parses it into a
small tree (simple commands, pipelines, `&&`/`||` chains, `if/elif/else`,
`{ }` / `( )` groups, functions) and evaluates that tree in a pretend shell:
assignments, `export`, parameter expansion, `$(( ))` arithmetic, `[ ]`/`[[ ]]`
tests, arrays, bash's word splitting, `eval` and `bash -c` strings are
evaluated; nothing is executed. What cannot be evaluated without running
something (command substitution, `source`, loops, file tests, ...) is left as
literal text and reported in `LaunchScript.warnings` with its line number.

The launch line is the command that starts the training script on the path the
script actually takes, through any launchers of launchers.py: `torchrun`,
`python -m torch.distributed.launch|run`, `deepspeed`, `msrun`, or
`python SCRIPT.py` under `srun`, `mpirun`/`mpiexec`, `numactl`, `uv run`, ...
When several run, a distributed launch wins over plain python, and among
equals the last one wins (a preprocessing step usually comes before training);
the others are reported as warnings.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Mapping, Sequence

from .bash_check import with_bash_verdict
from .evaluate import Shell
from .launchers import (
    PER_RANK,
    PYTHON,
    SLURM_COUNT_VARIABLES,
    SPAWNER,
    SRUN,
    TORCHRUN_KINDS,
    WRAPPER,
    LauncherSpec,
    match_launcher,
    parse_options,
    slurm_count,
    starts_training,
)
from .lex import Lexer
from .lost_values import describe_empty, entry_lost, launcher_options, scopes, value_split_into_the_entry
from .option_values import option_variables
from .output import launch_outputs
from .parse import Parser
from .result import LaunchScript, ShellReadError, Stage
from .signals import Exit

_SBATCH = re.compile(r"^#SBATCH\s+(.*)$", re.M)
_DIRECTIVE = re.compile(r"^#(SBATCH|PBS|BSUB|\$|COBALT|FLUX:)\s.*$", re.M)  # batch schedulers' option lines


@dataclass
class Launch:
    priority: int
    result: LaunchScript
    loops: tuple = ()  # the lines of the for loops (of this shell and the shells that started it) it ran in


def sbatch_directives(text: str) -> dict[str, str]:
    """The `#SBATCH` options of a batch script that size the job (nodes, ntasks, ntasks_per_node)."""
    words = []
    for directive in _SBATCH.findall(text):
        try:
            words += shlex.split(directive, comments=True)
        except ValueError:
            continue
    return parse_options(SRUN, words, lambda k: False).values if words else {}


# Rank variables a per-rank launcher gives each process: a bare `python X.py` in a script that reads one is one rank
# of a job that launcher starts from outside the script (mpirun -np 16 bash train.sh)
_LAUNCHER_RANK_VARIABLES = re.compile(r"\$\{?((OMPI_COMM_WORLD|PMI|PMIX|MV2_COMM_WORLD)_(RANK|SIZE|LOCAL_RANK)|"
                                      r"SLURM_PROCID|SLURM_LOCALID|JSM_NAMESPACE_(RANK|SIZE|LOCAL_RANK))\b")
_OUTER_LAUNCHER = {"OMPI": "mpirun", "PMI": "mpirun", "PMIX": "mpirun", "MV2": "mpirun", "SLURM": "srun",
                   "JSM": "jsrun"}


def outer_launcher(text: str) -> tuple[str, str] | None:
    """(launcher, variable) when the script reads a per-rank launcher's rank variable, e.g. ("mpirun",
    "OMPI_COMM_WORLD_RANK"); None when it reads none."""
    found = _LAUNCHER_RANK_VARIABLES.search(text)
    return (_OUTER_LAUNCHER[found.group(1).split("_")[0]], found.group(1)) if found else None


_PYTHON_OPTIONS = {"-m", "-u", "-B", "-O", "-OO", "-W", "-X", "-E", "-s", "-I"}
_EMPTIED = re.compile(r"\$\{?([A-Za-z_]\w*|[1-9])")


def _lost_interpreter(shell: Shell, fields: list[str], line: int) -> list[str]:
    """`$PYTHON -m torch.distributed.launch ...` with $PYTHON empty (the interpreter given as the script's argument):
    bash would run a program named `-m` and fail. The intent is plain: read as python, with the variable named."""
    if not fields or fields[0] not in _PYTHON_OPTIONS:
        return fields
    names = [n for raw in shell.words.at(fields, 0)[1] for n in _EMPTIED.findall(raw)]
    if not names and len(fields) > 1:  # CMD="$PY -m torch.distributed.run ..."; eval $CMD: lost when CMD was set
        before = re.compile(r"\$\{?([A-Za-z_]\w*|[1-9])\}?\s+" + re.escape(fields[0]) + r"\s+" + re.escape(fields[1]))
        names = sorted({n for scope in scopes(shell) for raw in list(scope.raw_values.values()) + scope.source_texts
                        for n in before.findall(raw)})
        names = names if len(names) == 1 else []
    if not names:
        return fields
    shell.warn(line, f"the command starts with {fields[0]}: ${names[0]}, the Python interpreter before it, expanded "
                     f"to nothing ({describe_empty(shell, names[0]).because}); read as python: give "
                     f"{names[0]} a value (bash fails here as the script stands)")
    behind = shell.words.field_word
    at = len(behind) - len(fields)
    if 0 <= at < len(behind):  # "python" stands for the word that expanded to nothing: the same word behind it
        behind.insert(at, behind[at])
    return ["python"] + fields


class Recognizer:
    """Sees every command the pretend shell runs and keeps those that launch training."""

    def __init__(self, text: str):
        self.sbatch = sbatch_directives(text)
        self.outer = outer_launcher(text)
        self.context: list[tuple[LauncherSpec, Stage]] = []  # launchers around the command looked at, outermost first
        self.launches: list[Launch] = []
        self.printed: list[tuple[int, str]] = []  # (line, text) of each echo met

    def on_command(self, shell: Shell, fields: list[str], temp_env: dict, line: int) -> None:
        if fields[0] == "echo":  # what the script says, e.g. its usage line before an `exit 1`
            self.printed.append((line, " ".join(f for f in fields[1:] if f not in ("-e", "-n", "-E"))))
            return
        fields = _lost_interpreter(shell, fields, line)
        matched = match_launcher(fields)
        if matched is None:
            self._python_script(shell, fields, temp_env, line)
            return
        spec, n = matched
        parsed = launcher_options(shell, spec, fields, n, line)
        if spec.command_option and not parsed.rest and parsed.values.get(spec.command_option):
            parsed.rest = ["bash", "-c", parsed.values[spec.command_option]]  # bcprun --cmd "python X.py ..."
        stage = Stage(spec.kind, fields[:n], parsed.args, line, parsed.values)
        if parsed.rest and parsed.args and spec.role == SPAWNER:
            rejoined = value_split_into_the_entry(shell, spec, fields, n + len(parsed.consumed), line)
            if rejoined is not None:  # a placeholder split into words, kept as one value (warned)
                self.on_command(shell, rejoined, temp_env, line)
                return
        if not parsed.rest:
            if spec.role == SPAWNER:
                entry_lost(shell, spec, fields, n, len(fields), line)
            shell.warn(line, f"{spec.kind} without a command to run; not taken as the launch line")
            return
        if spec.role == SPAWNER and not (spec.no_python and spec.no_python in parsed.values):
            k = n + len(parsed.consumed)
            entry_lost(shell, spec, fields, k, k, line)
            self._record(shell, spec, stage, parsed.rest[0], parsed.rest[1:], temp_env, line)
            return
        self.context.append((spec, stage))
        try:
            shell.run_command(list(parsed.rest), dict(temp_env), line)
        finally:
            self.context.pop()

    def _python_script(self, shell: Shell, fields: list[str], temp_env: dict, line: int) -> None:
        """python [OPTIONS] SCRIPT.py ARGS; or, under a spawner's --no_python, SCRIPT.py run as a program."""
        if self._rank_script(shell, fields, temp_env, line):
            return
        if fields[0].endswith(".py") and any(s.role == SPAWNER for s, _ in self.context):
            self._record(shell, None, Stage("python", [], [], line), fields[0], fields[1:], temp_env, line)
            return
        if not PYTHON.fullmatch(os.path.basename(fields[0])):
            return
        k, options = 1, []
        while k < len(fields) and fields[k].startswith("-"):
            if fields[k] in ("-c", "-", "-m"):
                return
            options.append(fields[k])
            if fields[k] in ("-W", "-X") and k + 1 < len(fields):
                options.append(fields[k + 1])
                k += 1
            k += 1
        if k < len(fields):
            self._record(shell, None, Stage("python", fields[:1], options, line), fields[k], fields[k + 1:],
                         temp_env, line)

    def wrapper_script(self, shell: Shell, fields: list[str], temp_env: dict, line: int, missing: bool = False) -> bool:
        """`bind.sh --cpu=... --mem=... python -u pretrain_gpt.py ...`: a script given a command as its arguments,
        whose own text led to no launch (NVIDIA's CPU-binding bind.sh) or is not here (`missing`), is read as a
        wrapper that runs them, and kept in front of the command in the new script. False when no argument starts a
        known program."""
        start = next((k for k, f in enumerate(fields[1:], 1) if starts_training(f)), None)
        if start is None:
            return False
        why = "is not here" if missing else "led to no launch by itself"
        shell.warn(line, f"{fields[0]} {why}: read as a wrapper that runs its arguments from {fields[start]} on (as a "
                         f"CPU-binding script does); the new script keeps it in front: check that it does")
        spec = LauncherSpec(os.path.basename(fields[0]), WRAPPER, frozenset())
        self.context.append((spec, Stage(spec.kind, fields[:1], fields[1:start], line, {})))
        try:
            shell.run_command(list(fields[start:]), dict(temp_env), line)
        finally:
            self.context.pop()
        return True

    def _rank_script(self, shell: Shell, fields: list[str], temp_env: dict, line: int) -> bool:
        """`srun ... launch.sh pretrain_gpt.py ARGS` with launch.sh not here (LUMI's clusters keep it beside
        Megatron): a script run in each task with the entry as its first argument starts python with them."""
        if not (fields[0].endswith(".sh") and len(fields) > 1 and fields[1].endswith(".py")
                and any(spec.role == PER_RANK for spec, _ in self.context)):
            return False
        shell.warn(line, f"{fields[0]} is not here: read as the script each task runs to start python with its "
                         f"arguments (taking its rank from the launcher); the new script runs it the same way: "
                         f"check that it does")
        self._record(shell, None, Stage("python", [], [], line), fields[1], fields[2:], temp_env, line)
        self.launches[-1].result.rank_script = fields[0]
        return True

    def _record(self, shell, spec: LauncherSpec | None, stage: Stage, entry: str, argv: list[str], temp_env, line):
        wrappers = list(self.context)
        spawner = next((i for i, (s, _) in enumerate(wrappers) if s.role == SPAWNER), None)
        if spec is None and spawner is not None:  # deepspeed --no_python ... python X.py: deepspeed starts the ranks
            spec, stage = wrappers[spawner]
            wrappers = wrappers[:spawner]
        if spec is not None and re.fullmatch(r"-?\d+", entry):
            raise ShellReadError(f"{shell.path}:{line}: {spec.kind} would run '{entry}', which is not a script: "
                                 f"an option before it has lost its value (an empty variable?)")
        jobs = "".join(received for _, received in shell.stdin_jobs)  # a job file the script submits: its own lines
        world, source = _world(spec, stage, wrappers, {**self.sbatch, **sbatch_directives(jobs)})
        started_by = variable = None
        if spec is None and self.outer is not None and all(s.role == WRAPPER for s, _ in wrappers):  # numactl: one
            started_by, variable = self.outer
            world, source = None, (f"one rank of a job that {started_by} starts from outside this script (it reads "
                                   f"${variable}), known at run time")
        result = make_launch(shell, stage, entry, argv, temp_env, line, [s for _, s in wrappers], world, source)
        result.started_by, result.rank_variable = started_by, variable
        distributed = spec is not None or any(s.role == PER_RANK for s, _ in wrappers)
        self.launches.append(Launch(2 if distributed else 1, result, _loop_lines(shell)))
        shell.launches_seen[0] += 1


def _loop_lines(shell: Shell) -> tuple:
    """The lines of the for loops running now, in this shell and in the shells that started it, outermost first."""
    lines = []
    while shell is not None:
        lines = shell.loop_lines + lines
        shell = shell.parent
    return tuple(lines)


def _repeated_by_a_loop(launches: list[Launch], path: str) -> None:
    """Refuse a training launch that a for loop runs more than once (a sweep, or one process per GPU started by
    hand): each run is its own configuration, and convert_args converts one."""
    for launch in launches:
        for loop in launch.loops:
            same = [other for other in launches if loop in other.loops and other.result.entry == launch.result.entry]
            if len(same) > 1:
                lines = sorted({other.result.entry_line for other in same})
                raise ShellReadError(
                    f"{path}:{launch.result.entry_line}: {launch.result.entry} is launched {len(same)} times by the "
                    f"loop of line {loop} (once per turn: a sweep, or processes started by hand), each run "
                    f"its own configuration; convert one run: "
                    f"take the launch out of the loop, or give the loop one value (convert_args.py --set NAME=VALUE)"
                    + ("" if lines == [launch.result.entry_line] else f" (launch lines {lines})"))


def _world(spec: LauncherSpec | None, stage: Stage, wrappers, sbatch) -> tuple[int | None, str]:
    """A spawner counts the processes it starts; python under srun/mpirun is one of the copies they start."""
    if spec is not None and spec.world is not None:
        world, source = spec.world(stage.values, sbatch)
    elif any(s.role == PER_RANK for s, _ in wrappers):
        s, st = [(s, st) for s, st in wrappers if s.role == PER_RANK][-1]
        world, source = s.world(st.values, sbatch)
    else:
        return 1, "a single python process"
    if world == 0:  # bash's arithmetic on an empty variable
        return None, f"{source}: 0 processes (an empty variable?), known at run time"
    return world, source


def make_launch(shell: Shell, stage: Stage, entry: str, argv: list[str], temp_env: dict, line: int,
                wrappers: list[Stage], world: int | None, source: str) -> LaunchScript:
    values = stage.values
    master_addr, master_port = values.get("master_addr"), values.get("master_port")
    if values.get("rdzv_endpoint") and ":" in values["rdzv_endpoint"]:
        host, _, port = values["rdzv_endpoint"].rpartition(":")
        master_addr, master_port = master_addr or host, master_port or port
    exports, export_lines, inherited = {}, {}, {}
    for n, export_line in shell.exported.items():
        value = shell.vars.get(n)
        if isinstance(value, str):
            exports[n], export_lines[n] = value, export_line
            if n in shell.templates:
                inherited[n] = shell.templates[n]
    for n, value in temp_env.items():
        exports[n], export_lines[n] = value, line
    options = option_variables(shell, argv)  # before the blanks go: it matches argv to the words as written
    argv = _without_blank_words(shell, argv, line)
    torchrun = stage.kind in TORCHRUN_KINDS
    variables: dict[str, str] = {}
    for scope in scopes(shell):
        for n, value in scope.vars.items():
            if isinstance(value, str) and n not in variables:
                variables[n] = scope.templates.get(n, value)
    nproc, nnodes = (values.get("nproc_per_node"), values.get("nnodes")) if torchrun else (None, None)
    if stage.kind == "msrun":  # per node: --local_worker_num; in all: --worker_num
        nproc, nnodes = values.get("local_worker_num"), _msrun_nodes(values)
    return LaunchScript(
        path=shell.path, entry=entry, entry_line=line, argv=list(argv), launcher=stage.kind,
        launcher_args=list(stage.args), nproc_per_node=nproc, nnodes=nnodes, node_rank=values.get("node_rank"),
        master_addr=master_addr, master_port=master_port,
        exports=exports, export_lines=export_lines, export_templates=inherited,
        wrappers=wrappers, world_size=world, world_size_source=source, variables=variables,
        files=dict(shell.files), option_variables=options,
        outputs=launch_outputs(shell), setup_sources=list(dict.fromkeys(shell.setup_sources)),
        unread_sources=list(dict.fromkeys(shell.unread_sources)))


def _msrun_nodes(values: dict) -> str | None:
    """msrun's node count: --worker_num / --local_worker_num when both are numbers (one node without them)."""
    total, local = values.get("worker_num"), values.get("local_worker_num") or values.get("worker_num")
    if total is None:
        return None
    if str(total).isdigit() and str(local).isdigit() and int(local) and int(total) % int(local) == 0:
        return str(int(total) // int(local))
    return None


def _without_blank_words(shell: Shell, argv: list[str], line: int) -> list[str]:
    """argv without arguments made only of spaces: `--load $DIR \\ ` with a space after the backslash passes a
    space to the program and ends the command on that line (the lines after it run as commands of their own)."""
    blank = [a for a in argv if a and not a.strip()]
    if blank:
        shell.warn(line, f"{len(blank)} argument(s) made only of spaces, left out: a line of this command ends in a "
                         f"backslash followed by spaces, so bash passes the spaces as an argument and ends the "
                         f"command there; remove the spaces after that backslash")
    return [a for a in argv if not (a and not a.strip())]


def read_launch_script(text: str, script_args: Sequence[str] = (), path: str = "<script>",
                       environ: Mapping[str, str] | None = None) -> LaunchScript:
    """Read a bash launch script without executing it; see the module docstring.

    environ: variables the caller's environment is taken to have (e.g. a scheduler's SLURM_NNODES)."""
    lexer = Lexer(text, path)
    try:
        nodes = Parser(lexer.tokenize(), path).parse_program()
    except ShellReadError as exc:
        raise with_bash_verdict(exc, text) from None
    recognizer = Recognizer(text)
    shell = Shell(path, script_args, recognizer.on_command, environ)
    shell.on_script_without_launch = recognizer.wrapper_script
    shell.job_counts = {name: found for name in SLURM_COUNT_VARIABLES
                        for found in [slurm_count(name, recognizer.sbatch)] if found}
    shell.vars.setdefault("BASH_SOURCE", [path])  # `$(dirname "${BASH_SOURCE[0]}")`: the script's own folder
    for line, name, value in lexer.placeholders:
        written = f"{name} {value}" if name.startswith("-") else f"{name}={value}"
        shell.warn(line, f"{written} is the example's placeholder (bash would take its < and > for redirections); "
                         f"read as the value '{value}': put the real value there")
    exit_line = None
    try:
        shell.run_list(nodes)
    except Exit as stop:
        exit_line = stop.line
    for line in lexer.skipped_heredocs:
        if line not in shell.heredocs_read:
            shell.warn(line, "here-document skipped (its text is not read)")
    launches = recognizer.launches
    if not launches:
        raise ShellReadError(_no_launch_message(shell, path, exit_line, bool(script_args), recognizer.printed))
    _repeated_by_a_loop(launches, path)
    best = max(range(len(launches)), key=lambda k: (launches[k].priority, k))
    chosen = launches[best].result
    for k, launch in enumerate(launches):
        if k != best:
            shell.warn(launch.result.entry_line,
                       f"another launch ({launch.result.style} {launch.result.entry}) ignored; "
                       f"line {chosen.entry_line} is taken as the training launch")
    chosen.warnings = sorted(shell.warnings, key=lambda w: w.line)
    chosen.directives = _directives(text, shell.stdin_jobs)
    chosen.start_folder = shell.start_folder if shell.start_folder_reads else None
    submit = next((n for n in shell.start_folder_reads if n.isupper() and n != "PWD"), None)
    chosen.start_folder_as = f"${{{submit}:-$PWD}}" if submit else "$PWD"
    return chosen


def _directives(text: str, stdin_jobs: list[tuple[str, str]]) -> list[str]:
    """The scheduler's option lines; those of a job given on standard input (sbatch <<EOF) as the job receives
    them, its variables expanded by the submitting shell (sbatch itself expands nothing in #SBATCH lines)."""
    submitted = ""  # a job file the script wrote (<<- strips its tabs) or read from disk, then submitted
    for written, received in stdin_jobs:
        if written and written in text:
            text = text.replace(written, received, 1)
        else:
            submitted += received
    return [m.group(0).rstrip() for m in _DIRECTIVE.finditer(text + "\n" + submitted)]


def _other_scripts_hints(other_scripts: list[tuple[int, str]]) -> list[str]:
    """One hint per script another file runs, naming every line that runs it (a sweep runs one script many
    times; a loop runs the same line again)."""
    lines: dict[str, list[int]] = {}
    for line, script in other_scripts:
        if line not in lines.setdefault(script, []):
            lines[script].append(line)
    return [f"line{'s' if len(at) > 1 else ''} {', '.join(map(str, at))} run{'' if len(at) > 1 else 's'} {script}: "
            "convert that script instead" for script, at in lines.items()]


_SAID_BEFORE_EXIT = 6  # lines before an `exit` whose echo lines are taken as its message (a usage block)


def _no_launch_message(shell: Shell, path: str, exit_line: int | None, with_args: bool,
                       printed: Sequence[tuple[int, str]] = ()) -> str:
    skipped = sorted({w.line for w in shell.warnings if "not evaluated" in w.message})
    hints = []
    if exit_line is not None:
        said = [text for line, text in printed if exit_line - _SAID_BEFORE_EXIT <= line <= exit_line and text.strip()]
        hints.append(f"the script exits at line {exit_line} before any launch" +
                     (f", saying {' / '.join(repr(t) for t in said[-3:])}" if said else "") + (
            "" if with_args else ": if it needs arguments or variables, pass them (convert_args.py SCRIPT "
                                 "--set NAME=VALUE -- ARGS...)"))
    hints += [f"lines not evaluated: {', '.join(map(str, skipped))}"] if skipped else []
    # a branch chosen by a value only the job has (case $OMPI_COMM_WORLD_LOCAL_RANK in 0) numactl ... python ...)
    hints += [f"line {w.line}: {w.message.replace('no branch taken', 'no branch taken (give the value with --set)')}"
              for w in shell.warnings if w.message.startswith("'case' on ") and "at run time" in w.message]
    hints += _other_scripts_hints(shell.other_scripts)
    hint = f" ({'; '.join(hints)})" if hints else ""
    return (f"{path}: no launch line found: no torchrun, python -m torch.distributed.launch|run, deepspeed or "
            f"python SCRIPT.py (alone or under srun, mpirun/mpiexec, aprun, jsrun, bcprun, numactl, uv run, nsys, "
            f"apptainer, shifter, eval, bash -c) on the path the script takes{hint}; pass the script that starts "
            f"training, or give the flags directly")
