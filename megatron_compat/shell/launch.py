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

from .evaluate import Exit, Shell
from .launchers import PER_RANK, PYTHON, SPAWNER, SRUN, LauncherSpec, match_launcher, option_key, parse_options
from .lex import Lexer
from .parse import Parser
from .result import LaunchScript, ShellReadError, Stage

# Options that decide the world size or where the ranks meet: a lost value here changes the launch.
_WORLD_KEYS = {"nproc_per_node", "nnodes", "np", "npernode", "ntasks", "nodes", "ntasks_per_node", "num_gpus",
               "num_nodes", "include", "worker_num"}
_RENDEZVOUS_KEYS = {"node_rank", "master_addr", "master_port", "rdzv_endpoint"}
_TORCHRUN_KINDS = {"torchrun", "torch.distributed.run", "torch.distributed.launch"}
# Variables a scheduler or MPI launcher sets in the job's environment
SCHEDULER_VARIABLE = re.compile(r"(SLURM|SLURMD|OMPI|PMI|PMIX|PALS|PBS|LSB|COBALT|MV2|SGE)_\w+|JOB_ID|NHOSTS|NSLOTS|"
                                r"PE_HOSTFILE")
_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_SBATCH = re.compile(r"^#SBATCH\s+(.*)$", re.M)
_DIRECTIVE = re.compile(r"^#(SBATCH|PBS|BSUB|\$|COBALT|FLUX:)\s.*$", re.M)  # batch schedulers' option lines


@dataclass
class Launch:
    priority: int
    result: LaunchScript


@dataclass
class _Culprit:
    name: str              # the variable that expanded to nothing
    live: str | None       # what the value is at run time, e.g. "$SLURM_NNODES"; None if the script empties it
    because: str           # why it is empty, in words
    unset: tuple = ()      # the variables the script never sets that it comes from (give them with --set)

    @property
    def scheduler(self) -> bool:
        return bool(self.live) and any(SCHEDULER_VARIABLE.fullmatch(n) for n in _REFERENCE.findall(self.live))


def sbatch_directives(text: str) -> dict[str, str]:
    """The `#SBATCH` options of a batch script that size the job (nodes, ntasks, ntasks_per_node)."""
    words = []
    for directive in _SBATCH.findall(text):
        try:
            words += shlex.split(directive, comments=True)
        except ValueError:
            continue
    return parse_options(SRUN, words, lambda k: False).values if words else {}


class Recognizer:
    """Sees every command the pretend shell runs and keeps those that launch training."""

    def __init__(self, text: str):
        self.sbatch = sbatch_directives(text)
        self.context: list[tuple[LauncherSpec, Stage]] = []  # launchers around the command looked at, outermost first
        self.launches: list[Launch] = []

    def on_command(self, shell: Shell, fields: list[str], temp_env: dict, line: int) -> None:
        matched = match_launcher(fields)
        if matched is None:
            self._python_script(shell, fields, temp_env, line)
            return
        spec, n = matched
        vanished = lambda k: bool(shell.words.at(fields, n + k)[1])  # noqa: E731
        parsed = parse_options(spec, fields[n:], vanished)
        templated = [_templated(shell, fields, n + i, line) for i in range(len(parsed.args))]
        if templated != parsed.args:  # options that used unset variables keep them for run time: hostfile_$JOB_ID
            for i, (word, plain) in enumerate(zip(templated, parsed.args)):
                if word != plain:
                    option = parsed.args[i - 1] if i and parsed.args[i - 1].startswith("-") else ""
                    _warn_kept(shell, spec, f"{option} {word}".strip(), line)
            parsed = parse_options(spec, templated + parsed.rest, vanished)
        values, args = dict(parsed.values), list(parsed.args)
        for token, k, at in reversed(parsed.missing):  # from the end, so the indexes into args stay right
            live = self._lost_value(shell, spec, fields, n, token, k, values, line)
            empty_word = at + 1 < len(args) and args[at + 1] == ""  # --opt "$EMPTY": the empty word was taken
            if "=" in token:
                args[at] = token + (live or "")
            elif empty_word:
                args[at + 1] = live or ""
            elif live:
                args.insert(at + 1, live)
            else:
                del args[at]
        stage = Stage(spec.kind, fields[:n], args, line, values)
        if parsed.rest and parsed.args and spec.role == SPAWNER:
            _value_split_into_the_entry(shell, spec, fields, n + len(parsed.args), line)
        if not parsed.rest:
            if spec.role == SPAWNER:
                _entry_lost(shell, spec, fields, n, len(fields), line)
            shell.warn(line, f"{spec.kind} without a command to run; not taken as the launch line")
            return
        if spec.role == SPAWNER and not (spec.no_python and spec.no_python in values):
            _entry_lost(shell, spec, fields, n + len(parsed.args), n + len(parsed.args), line)
            self._record(shell, spec, stage, parsed.rest[0], parsed.rest[1:], temp_env, line)
            return
        self.context.append((spec, stage))
        try:
            shell.run_command(list(parsed.rest), dict(temp_env), line)
        finally:
            self.context.pop()

    def _python_script(self, shell: Shell, fields: list[str], temp_env: dict, line: int) -> None:
        """python [OPTIONS] SCRIPT.py ARGS; or, under a spawner's --no_python, SCRIPT.py run as a program."""
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

    def _record(self, shell, spec: LauncherSpec | None, stage: Stage, entry: str, argv: list[str], temp_env, line):
        wrappers = list(self.context)
        spawner = next((i for i, (s, _) in enumerate(wrappers) if s.role == SPAWNER), None)
        if spec is None and spawner is not None:  # deepspeed --no_python ... python X.py: deepspeed starts the ranks
            spec, stage = wrappers[spawner]
            wrappers = wrappers[:spawner]
        if spec is not None and re.fullmatch(r"-?\d+", entry):
            raise ShellReadError(f"{shell.path}:{line}: {spec.kind} would run '{entry}', which is not a script: "
                                 f"an option before it has lost its value (an empty variable?)")
        world, source = _world(spec, stage, wrappers, self.sbatch)
        result = make_launch(shell, stage, entry, argv, temp_env, line, [s for _, s in wrappers], world, source)
        distributed = spec is not None or any(s.role == PER_RANK for s, _ in wrappers)
        self.launches.append(Launch(2 if distributed else 1, result))

    def _lost_value(self, shell: Shell, spec: LauncherSpec, fields, n, token, k, values, line) -> str | None:
        """An option whose value expanded to nothing: name the variable, and keep it as a run-time reference
        when the variable comes from the environment (a scheduler's, or the caller's). Returns that reference."""
        key = spec.canonical(option_key(token))
        culprit = _find_culprit(shell, fields, n + k, token)
        what = f"{spec.kind} {token} (line {line})"
        if culprit is not None and culprit.live:
            values[key] = culprit.live
            origin = "set by the scheduler at run time" if culprit.scheduler else "taken from the environment"
            shell.warn(line, f"{what} has no value here: {culprit.because}; it is {origin}, and the new script "
                             f"reads {culprit.live} the same way (to fix it now: tools/convert_args.py "
                             f"{' '.join(f'--set {n}=VALUE' for n in culprit.unset)})")
            return culprit.live
        if key not in _WORLD_KEYS | _RENDEZVOUS_KEYS:
            shell.warn(line, f"{what} has no value" + (f": {culprit.because}" if culprit else "") +
                       "; the option is left out")
            return None
        if culprit is not None:
            raise ShellReadError(f"{shell.path}:{line}: {what} has no value: {culprit.because}. Give "
                                 f"{culprit.name} a value in the script")
        unset = sorted({w.message.split()[1] for w in shell.warnings
                        if w.message.startswith("variable $") and "is not set" in w.message})
        hint = f" (variables the script uses without setting them: {', '.join(unset)})" if unset else ""
        raise ShellReadError(f"{shell.path}:{line}: {what} has no value: another option or the program follows "
                             f"it, so a variable meant to give it expanded to nothing{hint}. Set it in the script, "
                             f"or pass it to tools/convert_args.py with --set NAME=VALUE")


def live_text(template: str) -> str:
    """`\x00NAME\x00` markers of unset variables written as run-time references: $NAME, ${NAME}x."""
    live = re.sub(r"\x00(\w+)\x00", lambda m: "${" + m.group(1) + "}", template)
    return re.sub(r"\$\{(\w+)\}(?!\w)", r"$\1", live)


def _templated(shell: Shell, fields: list[str], position: int, line: int) -> str:
    """fields[position], with the unset variables its word used kept as run-time references."""
    origin, word = shell.words.at(fields, position)[0], shell.words.word_index(fields, position)
    if word is None or shell.words.fields_of_word(word) != 1:  # X="--a $UNSET --b" splits: left as bash gives it
        return fields[position]
    template = shell.template_word(origin, line) if origin and "$" in origin else None
    return live_text(template) if template is not None else fields[position]


def _value_split_into_the_entry(shell: Shell, spec: LauncherSpec, fields: list[str], k: int, line: int) -> None:
    """`--master_addr $MASTER_ADDR` with MASTER_ADDR="your master node IP": bash splits the value into words and
    the launcher takes "master" as its script. Name the variable that holds words, not that script."""
    option = fields[k - 2] if k >= 2 else ""
    if not option.startswith("-") or "=" in option or spec.canonical(option_key(option)) not in spec.valued:
        return
    word = shell.words.word_index(fields, k)
    if word is None or word != shell.words.word_index(fields, k - 1):
        return
    culprit = _find_culprit(shell, fields, k - 1, option)
    value = _value_of(shell, culprit.name) if culprit else None
    if not value or len(value.split()) < 2:
        return
    raise ShellReadError(f"{shell.path}:{line}: {spec.kind} {option} is given ${culprit.name}={value!r}, which bash "
                         f"splits into {len(value.split())} words, so the launcher would take {fields[k]!r} as the "
                         f"script to run; set {culprit.name} to one value (is it still the example's placeholder?) "
                         f"or quote it")


def _entry_lost(shell: Shell, spec: LauncherSpec, fields: list[str], start: int, k: int, line: int) -> None:
    """`torchrun ... $TRAINING_SCRIPT ARGS` with the variable empty: the first argument would become the script
    (or, an option, be read as the launcher's). Checked from fields[start] to the would-be script fields[k]."""
    if k < len(fields) and fields[k].endswith(".py"):
        return
    vanished = [raw for i in range(start, k + 1) for raw in shell.words.at(fields, i)[1]]
    names = [n for raw in vanished for n in _REFERENCE.findall(raw)]
    if not names:
        return
    instead = f", so it would run {fields[k]!r}" if k < len(fields) else ""
    raise ShellReadError(f"{shell.path}:{line}: {spec.kind} has no script to run: "
                         f"{_describe(shell, names[-1]).because}{instead}; give the training script's path "
                         f"(convert_args.py --set {names[-1]}=PATH)")


def _value_of(shell: Shell, name: str) -> str | None:
    scope = next((sc for sc in _scopes(shell) if sc.lookup(name) is not None), None)
    value = scope.lookup(name) if scope else None
    return value if isinstance(value, str) else None


def _warn_kept(shell: Shell, spec: LauncherSpec, word: str, line: int) -> None:
    names = [n for n in dict.fromkeys(_REFERENCE.findall(word)) if shell.lookup(n) is None]
    scheduler = any(SCHEDULER_VARIABLE.fullmatch(n) for n in names)
    shell.warn(line, f"{spec.kind} {word} (line {line}): {', '.join('$' + n for n in names)} "
                     f"{'is' if len(names) == 1 else 'are'} not set by the script; "
                     f"{'set by the scheduler at run time' if scheduler else 'taken from the environment'}, and the "
                     f"new script reads {'it' if len(names) == 1 else 'them'} the same way (to fix it now: "
                     f"tools/convert_args.py {' '.join(f'--set {n}=VALUE' for n in names)})")


def _find_culprit(shell: Shell, fields: list[str], position: int, token: str) -> _Culprit | None:
    """The variable whose empty value left `token` without one: a word that vanished right after the option
    (`--nnodes $NNODES`), or the `$NAME` that follows the option in the text the option came from
    (X="--nnodes $NNODES"; eval "$X"; bash -c "$X"), searched in this shell and the shells that started it."""
    origin = shell.words.at(fields, position - 1)[0]
    value_origin, vanished = shell.words.at(fields, position)
    if position < len(fields) and fields[position] == "":  # --opt "$EMPTY": the empty value's own word
        vanished = vanished + [value_origin or ""]
    names = [m for raw in vanished for m in _REFERENCE.findall(raw)]
    if names:
        return _describe(shell, names[0])
    after_option = re.compile(re.escape(token.partition("=")[0]) + r"""(?:=|\s+)["']?\$\{?([A-Za-z_]\w*)""")
    found = after_option.findall(origin or "") or after_option.findall(shell.words.text(fields))
    if found:
        return _describe(shell, found[0])
    for scope in _scopes(shell):  # the assignments that built the line: X="... --nnodes $NNODES ..."
        texts = list(scope.raw_values.values()) + scope.source_texts
        found = sorted({n for raw in texts for n in after_option.findall(raw)})
        if len(found) == 1:
            return _describe(scope, found[0])
    return None


def _scopes(shell: Shell):
    while shell is not None:
        yield shell
        shell = shell.parent


def _describe(shell: Shell, name: str) -> _Culprit:
    """Why $name is empty. A `bash -c` string was expanded by the shell that ran it: look there too."""
    scope = next((sc for sc in _scopes(shell) if sc.lookup(name) is not None), None)
    if scope is None:
        return _Culprit(name, f"${name}", f"${name} is not set by the script", (name,))
    template = scope.templates.get(name)
    if template is not None:
        inherited = template.split("\x00")[1::2]
        return _Culprit(name, live_text(template), f"${name} is empty: it is set from "
                                    f"{', '.join('$' + n for n in inherited)}, which the script does not set",
                        tuple(inherited))
    if scope is not shell and scope.lookup(name):
        return _Culprit(name, None, f"${name} is set but not exported, so the `bash -c` command does not see it")
    return _Culprit(name, None, f"${name} is set to an empty value")


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
    torchrun = stage.kind in _TORCHRUN_KINDS
    variables: dict[str, str] = {}
    for scope in _scopes(shell):
        for n, value in scope.vars.items():
            if isinstance(value, str) and n not in variables:
                variables[n] = scope.templates.get(n, value)
    return LaunchScript(
        path=shell.path, entry=entry, entry_line=line, argv=list(argv), launcher=stage.kind,
        launcher_args=list(stage.args), nproc_per_node=values.get("nproc_per_node") if torchrun else None,
        nnodes=values.get("nnodes") if torchrun else None, node_rank=values.get("node_rank"),
        master_addr=master_addr, master_port=master_port,
        exports=exports, export_lines=export_lines, export_templates=inherited,
        wrappers=wrappers, world_size=world, world_size_source=source, variables=variables)


def read_launch_script(text: str, script_args: Sequence[str] = (), path: str = "<script>",
                       environ: Mapping[str, str] | None = None) -> LaunchScript:
    """Read a bash launch script without executing it; see the module docstring.

    environ: variables the caller's environment is taken to have (e.g. a scheduler's SLURM_NNODES)."""
    lexer = Lexer(text, path)
    tokens = lexer.tokenize()
    nodes = Parser(tokens, path).parse_program()
    recognizer = Recognizer(text)
    shell = Shell(path, script_args, recognizer.on_command, environ)
    for line in lexer.skipped_heredocs:
        shell.warn(line, "here-document skipped (its text is not read)")
    exit_line = None
    try:
        shell.run_list(nodes)
    except Exit as stop:
        exit_line = stop.line
    launches = recognizer.launches
    if not launches:
        raise ShellReadError(_no_launch_message(shell, path, exit_line, bool(script_args)))
    best = max(range(len(launches)), key=lambda k: (launches[k].priority, k))
    chosen = launches[best].result
    for k, launch in enumerate(launches):
        if k != best:
            shell.warn(launch.result.entry_line,
                       f"another launch ({launch.result.style} {launch.result.entry}) ignored; "
                       f"line {chosen.entry_line} is taken as the training launch")
    chosen.warnings = sorted(shell.warnings, key=lambda w: w.line)
    chosen.directives = [m.group(0).rstrip() for m in _DIRECTIVE.finditer(text)]
    return chosen


def _no_launch_message(shell: Shell, path: str, exit_line: int | None, with_args: bool) -> str:
    skipped = sorted({w.line for w in shell.warnings if "not evaluated" in w.message})
    hints = []
    if exit_line is not None:
        hints.append(f"the script exits at line {exit_line} before any launch" + (
            "" if with_args else ": if it needs arguments or variables, pass them (convert_args.py SCRIPT "
                                 "--set NAME=VALUE -- ARGS...)"))
    hints += [f"lines not evaluated: {', '.join(map(str, skipped))}"] if skipped else []
    hints += [f"line {line} runs {script}: convert that script instead" for line, script in shell.other_scripts]
    hint = f" ({'; '.join(hints)})" if hints else ""
    return (f"{path}: no launch line found: no torchrun, python -m torch.distributed.launch|run, deepspeed or "
            f"python SCRIPT.py (alone or under srun, mpirun/mpiexec, aprun, numactl, uv run, nsys, apptainer, eval, "
            f"bash -c) on the path the script takes{hint}; pass the script that starts training, or give the flags "
            f"directly")
