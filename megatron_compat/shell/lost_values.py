"""Launcher options that lost their value to an empty variable: which variable, why it is empty, and what the
reader keeps instead (a run-time reference like `$SLURM_NNODES` when the variable comes from the environment).

bash drops an unquoted empty expansion, so `torchrun --nproc_per_node $GPUS --nnodes 2 x.py` reaches torchrun
as `--nproc_per_node --nnodes 2 x.py`. The words each field came from (evaluate.CommandWords), the text of
the assignments and of eval / bash -c strings (Shell.raw_values, Shell.source_texts) say which variable it was.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .evaluate import Shell
from .launchers import LauncherSpec, ParsedOptions, option_key, parse_options
from .placeholders import is_placeholder
from .result import ShellReadError
from .runtime import BASH_RUN_TIME, REFERENCE, SCHEDULER_VARIABLE

# Options that decide the world size or where the ranks meet: a lost value here changes the launch.
_WORLD_KEYS = {"nproc_per_node", "nnodes", "np", "npernode", "ntasks", "nodes", "ntasks_per_node", "num_gpus",
               "num_nodes", "include", "worker_num", "n"}
_RENDEZVOUS_KEYS = {"node_rank", "master_addr", "master_port", "rdzv_endpoint"}
_RENDEZVOUS_VARIABLES = {"node_rank": "NODE_RANK", "master_addr": "MASTER_ADDR", "master_port": "MASTER_PORT",
                         "rdzv_endpoint": "MASTER_ADDR and MASTER_PORT"}  # launch_script.py's names


@dataclass
class Culprit:
    name: str              # the variable that expanded to nothing
    live: str | None       # what the value is at run time, e.g. "$SLURM_NNODES"; None if the script empties it
    because: str           # why it is empty, in words
    unset: tuple = ()      # the variables the script never sets that it comes from (give them with --set)

    @property
    def scheduler(self) -> bool:
        return bool(self.live) and any(SCHEDULER_VARIABLE.fullmatch(n) for n in REFERENCE.findall(self.live))


@dataclass
class Options(ParsedOptions):
    consumed: list[str] = field(default_factory=list)  # the words the options took, as bash passed them


def launcher_options(shell: Shell, spec: LauncherSpec, fields: list[str], n: int, line: int) -> Options:
    """The launcher's options in fields[n:]. An option word that used unset variables keeps them as run-time
    references (--hostfile hosts_$JOB_ID); an option left empty gets the reference, or is dropped."""
    vanished = lambda k: bool(shell.words.at(fields, n + k)[1])  # noqa: E731
    parsed = parse_options(spec, fields[n:], vanished)
    consumed = list(parsed.args)
    templated = [templated_word(shell, fields, n + i, line) for i in range(len(parsed.args))]
    if templated != parsed.args:
        for i, (word, plain) in enumerate(zip(templated, parsed.args)):
            if word != plain:
                option = parsed.args[i - 1] if i and parsed.args[i - 1].startswith("-") else ""
                _warn_kept(shell, spec, f"{option} {word}".strip(), line)
        parsed = parse_options(spec, templated + parsed.rest, vanished)
    values, args = dict(parsed.values), list(parsed.args)
    for token, k, at in reversed(parsed.missing):  # from the end, so the indexes into args stay right
        live = _lost_value(shell, spec, fields, n, token, k, values, line)
        if "=" in token:
            args[at] = token + (live or "")
        elif at + 1 < len(args) and args[at + 1] == "":  # --opt "$EMPTY": the empty word was taken as the value
            args[at + 1] = live or ""
        elif live:
            args.insert(at + 1, live)
        else:
            del args[at]
    return Options(args, values, parsed.rest, parsed.missing, consumed)


def _lost_value(shell: Shell, spec: LauncherSpec, fields, n, token, k, values, line) -> str | None:
    """An option whose value expanded to nothing: name the variable, and keep it as a run-time reference
    when the variable comes from the environment (a scheduler's, or the caller's). Returns that reference."""
    key = spec.canonical(option_key(token))
    culprit = find_culprit(shell, fields, n + k, token)
    what = f"{spec.kind} {token} (line {line})"
    if culprit is not None and culprit.live:
        values[key] = culprit.live
        origin = "set by the scheduler at run time" if culprit.scheduler else "taken from the environment"
        shell.warn(line, f"{what} has no value here: {culprit.because}; it is {origin}, and the new script "
                         f"reads {culprit.live} the same way (to fix it now: tools/convert_args.py "
                         f"{' '.join(f'--set {n}=VALUE' for n in culprit.unset)})")
        return culprit.live
    if key in _RENDEZVOUS_KEYS:  # where the ranks meet is the job's, given per node: not part of the conversion
        shell.warn(line, f"{what} has no value" + (f": {culprit.because}" if culprit else "") +
                   f"; the option is left out: the launcher's default applies, and the new launch script "
                   f"takes {_RENDEZVOUS_VARIABLES.get(key, 'it')} from the environment, to set on each node")
        return None
    if key not in _WORLD_KEYS:
        shell.warn(line, f"{what} has no value" + (f": {culprit.because}" if culprit else "") +
                   "; the option is left out")
        return None
    if culprit is not None:
        raise ShellReadError(f"{shell.path}:{line}: {what} has no value: {culprit.because}. Give "
                             f"{culprit.name} a value in the script, or with --set {culprit.name}=VALUE")
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


def templated_word(shell: Shell, fields: list[str], position: int, line: int) -> str:
    """fields[position], with the unset variables its word used kept as run-time references."""
    origin, word = shell.words.at(fields, position)[0], shell.words.word_index(fields, position)
    if word is None or shell.words.fields_of_word(word) != 1:  # X="--a $UNSET --b" splits: left as bash gives it
        return fields[position]
    template = shell.template_word(origin, line) if origin and "$" in origin else None
    return live_text(template) if template is not None else fields[position]


def value_split_into_the_entry(shell: Shell, spec: LauncherSpec, fields: list[str], k: int,
                               line: int) -> list[str] | None:
    """`--master_addr $MASTER_ADDR` with MASTER_ADDR="your master node IP": bash splits the value into words and
    the launcher takes "master" as its script. A placeholder value is kept as one word (warned): the fields
    with it rejoined are returned, for the launch to be read again. Any other value is refused, naming the
    variable that holds words, not that script."""
    option = fields[k - 2] if k >= 2 else ""
    if not option.startswith("-") or "=" in option or spec.canonical(option_key(option)) not in spec.valued:
        return None
    word = shell.words.word_index(fields, k)
    if word is None or word != shell.words.word_index(fields, k - 1):
        return None
    culprit = find_culprit(shell, fields, k - 1, option)
    value = _value_of(shell, culprit.name) if culprit else None
    if not value or len(value.split()) < 2:
        return None
    parts = value.split()
    if not fields[k].startswith(parts[1]):  # the would-be script is not the value's second word: no split here
        return None
    if is_placeholder(value) and fields[k - 1:k - 1 + len(parts)] == parts:
        shell.warn(line, f"{spec.kind} {option} is given ${culprit.name}={value!r}, the example's placeholder, "
                         f"which bash splits into {len(parts)} words; kept as one value: set {culprit.name} "
                         "to the real value")
        shell.words.join_fields(fields, k - 1, len(parts))
        return fields[:k - 1] + [" ".join(parts)] + fields[k - 1 + len(parts):]
    raise ShellReadError(f"{shell.path}:{line}: {spec.kind} {option} is given ${culprit.name}={value!r}, which bash "
                         f"splits into {len(parts)} words, so the launcher would take {fields[k]!r} as the "
                         f"script to run; set {culprit.name} to one value (is it still the example's placeholder?) "
                         f"or quote it")


def entry_lost(shell: Shell, spec: LauncherSpec, fields: list[str], start: int, k: int, line: int) -> None:
    """`torchrun ... $TRAINING_SCRIPT ARGS` with the variable empty: the first argument would become the script
    (or, an option, be read as the launcher's). Checked from fields[start] to the would-be script fields[k]."""
    if k < len(fields) and fields[k].endswith(".py"):
        return
    vanished = [raw for i in range(start, k + 1) for raw in shell.words.at(fields, i)[1]]
    names = [n for raw in vanished for n in REFERENCE.findall(raw)]
    if not names:
        return
    instead = f", so it would run {fields[k]!r}" if k < len(fields) else ""
    raise ShellReadError(f"{shell.path}:{line}: {spec.kind} has no script to run: "
                         f"{describe_empty(shell, names[-1]).because}{instead}; give the training script's path "
                         f"(convert_args.py --set {names[-1]}=PATH)")


def _value_of(shell: Shell, name: str) -> str | None:
    scope = next((sc for sc in scopes(shell) if sc.lookup(name) is not None), None)
    value = scope.lookup(name) if scope else None
    return value if isinstance(value, str) else None


def _warn_kept(shell: Shell, spec: LauncherSpec, word: str, line: int) -> None:
    names = [n for n in dict.fromkeys(REFERENCE.findall(word)) if shell.lookup(n) is None]
    scheduler = any(SCHEDULER_VARIABLE.fullmatch(n) for n in names)
    shell.warn(line, f"{spec.kind} {word} (line {line}): {', '.join('$' + n for n in names)} "
                     f"{'is' if len(names) == 1 else 'are'} not set by the script; "
                     f"{'set by the scheduler at run time' if scheduler else 'taken from the environment'}, and the "
                     f"new script reads {'it' if len(names) == 1 else 'them'} the same way (to fix it now: "
                     f"tools/convert_args.py {' '.join(f'--set {n}=VALUE' for n in names)})")


def find_culprit(shell: Shell, fields: list[str], position: int, token: str) -> Culprit | None:
    """The variable whose empty value left `token` without one: a word that vanished right after the option
    (`--nnodes $NNODES`), or the `$NAME` that follows the option in the text the option came from
    (X="--nnodes $NNODES"; eval "$X"; bash -c "$X"), searched in this shell and the shells that started it."""
    origin = shell.words.at(fields, position - 1)[0]
    value_origin, vanished = shell.words.at(fields, position)
    if position < len(fields) and fields[position] == "":  # --opt "$EMPTY": the empty value's own word
        vanished = vanished + [value_origin or ""]
    names = [m for raw in vanished for m in REFERENCE.findall(raw)]
    if names:
        return describe_empty(shell, names[0])
    after_option = re.compile(re.escape(token.partition("=")[0]) + r"""(?:=|\s+)["']?\$\{?([A-Za-z_]\w*|[1-9])""")
    found = after_option.findall(origin or "") or after_option.findall(shell.words.text(fields))
    if found:
        return describe_empty(shell, found[0])
    for scope in scopes(shell):  # the assignments that built the line: X="... --nnodes $NNODES ..."
        texts = list(scope.raw_values.values()) + scope.source_texts
        found = sorted({n for raw in texts for n in after_option.findall(raw)})
        if len(found) == 1:
            return describe_empty(scope, found[0])
    return None


def scopes(shell: Shell):
    while shell is not None:
        yield shell
        shell = shell.parent


def describe_empty(shell: Shell, name: str) -> Culprit:
    """Why $name is empty. A `bash -c` string was expanded by the shell that ran it: look there too."""
    scope = next((sc for sc in scopes(shell) if sc.lookup(name) is not None), None)
    if scope is None and name.isdigit():  # --node_rank ${1}: the script's own argument
        return Culprit(name, None, f"it is the script's argument ${name}, which was not given (pass the script's "
                                   f"arguments: tools/convert_args.py SCRIPT -- ARG1 ...)")
    if scope is None and name in BASH_RUN_TIME:
        return Culprit(name, f"${name}", f"${name} is {BASH_RUN_TIME[name]}: known only at run time", (name,))
    if scope is None:
        return Culprit(name, f"${name}", f"${name} is not set by the script", (name,))
    template = scope.templates.get(name)
    if template is not None:
        inherited = template.split("\x00")[1::2]
        return Culprit(name, live_text(template), f"${name} is empty: it is set from "
                                    f"{', '.join('$' + n for n in inherited)}, which the script does not set",
                        tuple(inherited))
    if scope is not shell and scope.lookup(name):
        return Culprit(name, None, f"${name} is set but not exported, so the `bash -c` command does not see it")
    argument = re.fullmatch(r"""["']?\$\{?([1-9])\}?["']?""", scope.raw_values.get(name, "").strip())
    if argument:  # NUM_GPUS=$1 in a script run without arguments
        return Culprit(name, None, f"${name} is set from the script's argument ${argument.group(1)}, which was not "
                                   f"given (pass the script's arguments: tools/convert_args.py SCRIPT -- ARG1 ...)")
    return Culprit(name, None, f"${name} is set to an empty value")


