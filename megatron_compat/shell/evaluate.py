"""Evaluating the tree in a pretend shell: variables, expansion, arithmetic, tests; nothing is executed."""
from __future__ import annotations

import ast
import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from .lex import (
    ArithCmd,
    ArrayAssign,
    Lexer,
    Unterminated,
    Word,
    ansi_c,
    opaque_chunks,
    scan_ansi,
    scan_backtick,
    scan_brace,
    scan_dquote,
    scan_paren,
    scan_squote,
)
from .other_files import find_script, sets_up_the_machine
from .parse import AndOr, Case, For, FuncDef, Group, If, Parser, Pipeline, Simple, Skipped, While
from .result import ShellReadError, ShellWarning
from .runtime import BASH_RUN_TIME, REFERENCE, holds_command_output, scheduler_references
from .sed import SedNotUnderstood, find_template, parse_sed, run_sed
from .text_commands import output_of_commands, pipeline_status


class _FieldBreak:  # field boundary between "${X[@]}" elements
    pass


class _Mark:  # "a field exists here even if empty" (quoted text)
    pass


class _AtExpansion:  # a quoted "${X[@]}"/"$@" is inside: its elements bring their own marks
    pass


_BREAK, _MARK, _AT = _FieldBreak(), _Mark(), _AtExpansion()


@dataclass
class OutputFrame:
    """One simple command's output plumbing, unexpanded: its redirections and the pipeline commands after it."""
    redirects: list
    tail: list


_BRACE_RANGE = re.compile(r"([\w./-]*)\{(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?\}([\w./-]*)")
_BRACE_LIST = re.compile(r"([\w./-]*)\{([\w./-]*(?:,[\w./-]*)+)\}([\w./-]*)")


def _brace_words(raw: str) -> list[str] | None:
    """bash's brace expansion of a plain word: {0..7}, {8..0..2}, gpu{0,1}; None for any other word."""
    m = _BRACE_RANGE.fullmatch(raw)
    if m:
        first, last, step = int(m.group(2)), int(m.group(3)), abs(int(m.group(4) or 1)) or 1
        numbers = range(first, last + 1, step) if first <= last else range(first, last - 1, -step)
        return [f"{m.group(1)}{n}{m.group(5)}" for n in numbers]
    m = _BRACE_LIST.fullmatch(raw)
    return [f"{m.group(1)}{item}{m.group(3)}" for item in m.group(2).split(",")] if m else None


def _commands_kept_whole(value: str) -> list:
    """An unquoted value holding a command substitution that was not run (HOST_IP=$(getent hosts $H | awk ...)):
    bash splits the command's output, a single word here as a rule, not the command's text; so the text of each
    `$(...)` / `...` stays one piece and only the rest is split."""
    out, i, start = [], 0, 0
    while i < len(value):
        try:
            end = scan_paren(value, i) if value.startswith("$(", i) and not value.startswith("$((", i) else (
                scan_backtick(value, i) if value[i] == "`" else None)
        except Unterminated:
            end = None
        if end is None:
            i += 1
            continue
        out += [(value[start:i], True), (value[i:end], False)]
        i = start = end
    return out + [(value[start:], True)]


class _Break(Exception):
    """`break` inside a loop."""


class _Continue(Exception):
    """`continue` inside a loop."""


_MAX_LOOP_VALUES = 256  # a loop over more values than this is not run (its body is skipped, with a warning)


class Exit(Exception):
    def __init__(self, line: int):
        super().__init__(line)
        self.line = line


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_WORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]*)\])?(\+?)=")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-]")


@dataclass
class _Param:
    """A parameter's name and its [index] at the start of a ${...} body (the index may hold brackets itself:
    `${LIST[$(( RANK % ${#LIST[*]} ))]}`)."""
    name: str
    index: str | None
    stop: int

    def group(self, k: int):
        return self.name if k == 1 else self.index

    def end(self) -> int:
        return self.stop


def _param(body: str, whole: bool = False) -> _Param | None:
    m = _PARAM_NAME.match(body)
    if not m:
        return None
    index, stop = None, m.end()
    if body.startswith("[", stop):
        depth = 0
        for k in range(stop, len(body)):
            depth += {"[": 1, "]": -1}.get(body[k], 0)
            if depth == 0:
                index, stop = body[m.end() + 1:k], k + 1
                break
        else:
            return None
    return None if whole and stop != len(body) else _Param(m.group(0), index, stop)
_DECLARATIONS = {"export", "declare", "typeset", "local", "readonly"}
_VAR_CHANGING = {"read", "mapfile", "readarray", "let", "getopts", "printf"}
_SHELLS = {"bash", "sh"}
_SUBMIT_FOLDER = {"PBS_O_WORKDIR": "PBS", "SLURM_SUBMIT_DIR": "Slurm"}  # a job's submitting folder
_ASSIGNMENT_FIELD = re.compile(r"[A-Za-z_]\w*=.*", re.S)
_JOB_SUBMITTERS = {"sbatch", "qsub", "bsub"}
_JOB_FILE = re.compile(r"\.(sh|bash|slurm|sbatch|pbs|job|lsf)$")
_MAX_DEPTH = 20
_WRAPPERS = {"nohup", "exec", "time", "env", "command", "stdbuf"}
_FILE_TESTS = set("-a -b -c -d -e -f -g -h -k -p -r -s -t -u -w -x -G -L -N -O -S".split())


@dataclass
class CommandWords:
    """Where the fields of the command being run came from: its words as written, and for each field the word
    behind it. A word behind no field expanded to nothing (an unquoted empty variable)."""
    words: list[str] = field(default_factory=list)
    field_word: list[int] = field(default_factory=list)

    def at(self, fields: list[str], k: int) -> tuple[str | None, list[str]]:
        """For fields[k] of `fields` (a tail of the command's fields): its word, and the words that expanded to
        nothing just before it (k == len(fields): those at the end)."""
        position = len(self.field_word) - len(fields) + k
        inside = 0 <= position < len(self.field_word)
        before = self.field_word[position - 1] if 0 < position <= len(self.field_word) else -1
        after = self.field_word[position] if inside else len(self.words)
        return (self.words[after] if inside else None), self.words[before + 1:after]

    def fields_of_word(self, word: int) -> int:
        return self.field_word.count(word)

    def word_index(self, fields: list[str], k: int) -> int | None:
        position = len(self.field_word) - len(fields) + k
        return self.field_word[position] if 0 <= position < len(self.field_word) else None

    def join_fields(self, fields: list[str], k: int, count: int) -> None:
        """fields[k:k + count] (a tail of the command's fields) become one field, of the same word."""
        position = len(self.field_word) - len(fields) + k
        del self.field_word[position + 1:position + count]

    def text(self, fields: list[str]) -> str:
        """The command's words from the one behind fields[0] on, as written."""
        position = len(self.field_word) - len(fields)
        start = self.field_word[position] if fields and position < len(self.field_word) else len(self.words)
        return " ".join(self.words[start:])


class Shell:
    """The pretend shell. `on_command(shell, fields, temp_env, line)` sees every external command it meets.

    `environ` holds variables the caller's environment is taken to have (tools/convert_args.py --set): they
    are visible to the script and to the shells it starts, but are not the script's own exports."""

    def __init__(self, path: str, script_args: Sequence[str], on_command: Callable | None = None,
                 environ: Mapping[str, str] | None = None):
        self.path = path
        self.vars: dict[str, str | list[str]] = dict(environ or {})
        self.inherited: set[str] = set(environ or {})
        self.exported: dict[str, int] = {}
        self.positional = list(script_args)
        self.functions: dict[str, FuncDef] = {}
        self.warnings: list[ShellWarning] = []
        self.on_command = on_command
        self.depth = 0
        # Values that referenced variables the script never set (inherited from the caller's environment,
        # e.g. PATH): kept with those references as `\x00NAME\x00` markers, so a rendered script can keep $NAME.
        self.templates: dict[str, str] = {}
        self._templating = False
        self.raw_values: dict[str, str] = {}  # the text of each variable's last assignment, before expansion
        self.words = CommandWords()           # the command being run: see CommandWords
        self.other_scripts: list[tuple[int, str]] = []  # (line, script) run with bash/sh: not read here
        self.parent: Shell | None = None      # the shell that ran this one's `bash -c`
        self.source_texts: list[str] = []     # the words, unexpanded, of the eval / bash -c strings run here
        # Files the script writes from here-documents (`cat <<EOF > path`): expanded path -> expanded text, and the
        # lines of those here-documents (the others are reported as skipped).
        self.files: dict[str, str] = {}
        self.written_docs: dict[str, tuple[str, str]] = {}  # file -> (here-document as written, text it received)
        self.heredocs_read: set[int] = set()
        self.stdin_jobs: list[tuple[str, str]] = []  # (here-document as written, as the job receives it)
        # Where the output of the commands being run goes, outermost first: per simple command its redirections
        # and the pipeline commands after it (`... 2>&1 | tee LOG`), kept so a rebuilt launch line logs as before
        self.output_frames: list[OutputFrame] = []
        self.cwd = os.getcwd()  # the folder the script runs in: convert_args' own, changed by the script's `cd`s
        self.setup_sources: list[str] = []  # `source` lines that set up the environment, as written (other_files.py)
        self.cwd_assumed = True  # cwd still depends on where the script is started (no `cd` to an absolute path)
        self.start_folder = self.cwd  # where the script starts: convert_args' own folder, taken for the user's
        self.start_folder_reads: list[str] = []  # `pwd`, $PWD, $PBS_O_WORKDIR read as that folder (one list)
        self._pipe_tail: list = []  # the commands after the one the pipeline is about to run
        self.loop_lines: list[int] = []  # the lines of the loops whose body is running, outermost first

    def warn(self, line: int, message: str) -> None:
        w = ShellWarning(line, message)
        if w not in self.warnings:
            self.warnings.append(w)

    # ---------------------------------------------------------------- running
    def run_list(self, nodes: list):
        status = True
        for node in nodes:
            status = self.run(node)
        return status

    def run(self, node):
        if isinstance(node, Simple):
            if node.redirects and self.write_from_sed(Pipeline([node], False, node.line)):
                return True
            try:
                return self.run_simple(node)
            except Unterminated as exc:  # a construct the lexer took whole but its inside does not close
                self.warn(node.line, f"a {exc.what} on this line is not closed where the reader looks for its end; "
                                     f"the command is not evaluated")
                return None
        if isinstance(node, AndOr):
            status = self.run(node.first)
            for op, pipe in node.rest:
                if op == "&&" and status is False:
                    continue
                if op == "||" and status is not False:
                    continue
                status = self.run(pipe)
            return status
        if isinstance(node, Pipeline):
            if self.write_from_sed(node):
                return True
            known = pipeline_status(self, node, node.line)
            if known is not None:  # echo "$ARGS" | grep -q -- --flag
                return known != node.negate
            status = True
            for k, cmd in enumerate(node.commands):
                self._pipe_tail = node.commands[k + 1:]
                status = self.run(cmd)
            if node.negate:
                return None if status is None else not status
            return status
        if isinstance(node, If):
            return self.run_if(node)
        if isinstance(node, Case):
            return self.run_case(node)
        if isinstance(node, Group):
            return self.run_list(node.body)
        if isinstance(node, For):
            return self.run_for(node)
        if isinstance(node, While):
            return self.run_while(node)
        if isinstance(node, FuncDef):
            self.functions[node.name] = node
            return True
        if isinstance(node, ArithCmd):
            self.warn(node.line, f"arithmetic command (( {node.expr.strip()} )) not evaluated")
            return None
        if isinstance(node, Skipped):
            self.warn(node.line, f"{node.what} not evaluated (its body is skipped)")
            return None
        raise AssertionError(node)

    def run_if(self, node: If):
        """The first clause whose condition holds runs. A condition not known here is assumed false, but a branch
        reached only that way does not end the reading: its `exit` (`else echo "unsupported host"; exit 1`) is
        not followed, since the job may well take another branch."""
        assumed = False
        for cond, body in node.clauses:
            status = self.run_list(cond)
            if status is None:
                self.warn(node.line, "'if' condition could not be evaluated; assumed false")
                assumed = True
            elif status:
                return self._run_branch(body, node.line, assumed)
        return self._run_branch(node.else_body, node.line, assumed) if node.else_body is not None else True

    def _run_branch(self, body: list, line: int, assumed: bool):
        if not assumed:
            return self.run_list(body)
        try:
            return self.run_list(body)
        except Exit as stop:
            self.warn(stop.line, f"exit not followed: the branch of the 'if' of line {line} is taken only because a "
                                 f"condition known at run time was assumed false")
            return None

    def run_for(self, node: For):
        """for NAME in WORDS: the body runs once per value, as in bash (an argument loop such as
        `for para in $*; do case $para in --data_path=*) ...`). A launch inside it is recorded with the loop's line
        (Shell.loop_lines), so the reader can say that it runs once per value."""
        values = list(self.positional) if node.words is None else \
            [f for w in node.words for f in (_brace_words(w.raw) or self.expand_word(w))]
        output = next((v for v in values if holds_command_output(v)), None)
        if output is not None:  # for i in $(seq 0 7): how many values the command gives is not known here
            self.warn(node.line, f"'for' loop over the output of {output[:40]} not evaluated (its body is skipped)")
            return None
        if len(values) > _MAX_LOOP_VALUES:
            self.warn(node.line, f"'for' loop over {len(values)} values not evaluated (its body is skipped)")
            return None
        status = True
        self.loop_lines.append(node.line)
        try:
            for value in values:
                self.vars[node.name] = value
                self.templates.pop(node.name, None)
                try:
                    status = self.run_list(node.body)
                except _Continue:
                    continue
                except _Break:
                    break
        finally:
            self.loop_lines.pop()
        return status

    def run_while(self, node: While):
        """while/until LIST; do ... done, as bash runs it while its condition is known here (an argument loop:
        `while [[ $# -gt 0 ]]; do case $1 in --nodes) NODES=$2; shift 2;; esac; done`). A condition known only at
        run time (`read`, a command's status) stops it, with a warning; so does a loop that goes on and on."""
        kind = "until" if node.until else "while"
        status = True
        for _ in range(_MAX_LOOP_VALUES):
            holds = self.run_list(node.condition)
            if holds is None:
                self.warn(node.line, f"'{kind}' condition not evaluated (known only at run time); the loop stops "
                                     f"here")
                return None
            if bool(holds) == node.until:
                return status
            self.loop_lines.append(node.line)  # a launch it runs more than once is refused, as a for loop's
            try:
                status = self.run_list(node.body)
            except _Continue:
                continue
            except _Break:
                return True
            finally:
                self.loop_lines.pop()
        self.warn(node.line, f"'{kind}' loop still going after {_MAX_LOOP_VALUES} turns; stopped there")
        return None

    def run_case(self, node: Case):
        """The clauses whose patterns match the word run as bash runs them; a word known only when the job runs
        (a scheduler's variable, a command's output) runs no clause, with a warning."""
        value = self.join(self.pieces(node.word.raw, node.line))
        unknowable = self.known_only_at_run_time([(value, False)], [node.word.raw])
        if unknowable:
            self.warn(node.line, f"'case' on {unknowable}: no branch taken")
            return None
        status, fall_through = True, False
        for patterns, body, end in node.clauses:
            if fall_through or any(fnmatch.fnmatchcase(value, self.join(self.pieces(p.raw, p.line)))
                                   for p in patterns):
                status = self.run_list(body)
                if end == ";;":
                    return status
                fall_through = end == ";&"  # ;& runs the next body too, ;;& goes on testing the patterns
        return status

    def run_simple(self, cmd: Simple):
        tail, self._pipe_tail = self._pipe_tail, []
        self.output_frames.append(OutputFrame(cmd.redirects, tail))
        try:
            return self._run_simple(cmd)
        finally:
            self.output_frames.pop()

    def _run_simple(self, cmd: Simple):
        words = cmd.words
        n_assign = 0
        while n_assign < len(words) and (isinstance(words[n_assign], ArrayAssign) or
                                         _ASSIGN_WORD.match(words[n_assign].raw)):
            n_assign += 1
        assigns, rest = words[:n_assign], words[n_assign:]
        if not rest:
            for a in assigns:
                self.assign(a)
            return True
        if rest[0].raw == "[[":
            return self.test_double_bracket(rest, cmd.line)
        temp_env = {}
        for a in assigns:
            if isinstance(a, Word):
                name, value = self.assignment_value(a)
                temp_env[name] = value if isinstance(value, str) else " ".join(value)
        head = self.expand_word(rest[0])
        if head and head[0] in _DECLARATIONS:
            return self.declare(head[0], head[1:], rest[1:], cmd.line)
        fields, words = list(head), CommandWords([rest[0].raw], [0] * len(head))
        for w in rest[1:]:
            if isinstance(w, Word):
                got = self.expand_word(w)
                fields.extend(got)
                words.field_word.extend([len(words.words)] * len(got))
                words.words.append(w.raw)
        if not fields:
            return True
        if cmd.redirects:
            self.write_heredoc(fields, cmd.redirects, cmd.line)
            if self.run_heredoc_script(fields, cmd.redirects, temp_env, cmd.line):
                return True
        self.words = words
        return self.run_command(fields, temp_env, cmd.line)

    def run_command(self, fields: list[str], temp_env: dict, line: int):
        fields = self._assignments_from_a_value(fields, temp_env, line)
        while fields and fields[0] in _WRAPPERS:
            wrapper, fields = fields[0], fields[1:]
            if wrapper == "env":
                while fields and ("=" in fields[0] or fields[0].startswith("-")):
                    key, _, value = fields[0].partition("=")
                    if _NAME.fullmatch(key):
                        temp_env[key] = value
                    fields = fields[2:] if fields[0] in ("-u", "--unset", "-C", "--chdir") else fields[1:]
            elif wrapper == "command":
                while fields and fields[0].startswith("-"):
                    fields = fields[1:]
        if not fields:
            return True
        name, args = fields[0], fields[1:]
        if name == "cd":
            return self.change_directory(args)
        if name in self.functions:
            return self.call_function(self.functions[name], args)
        if name in ("[", "test"):
            if name == "[":
                if not args or args[-1] != "]":
                    self.warn(line, "'[' without a closing ']'")
                    return None
                args = args[:-1]
            return self.test([(a, True) for a in args], line, double=False, raw=self.words.words[1:])
        if name in ("true", ":"):
            return True
        if name == "false":
            return False
        if name == "exit":
            raise Exit(line)
        if name in ("break", "continue") and self.loop_lines:
            raise _Break() if name == "break" else _Continue()
        if name in ("source", "."):
            return self.run_sourced(name, args, line)
        if name == "unset":
            for a in args:
                if not a.startswith("-"):
                    self.vars.pop(a, None)
                    self.exported.pop(a, None)
            return True
        if name == "set":
            if "--" in args:
                self.positional = args[args.index("--") + 1:]
            return True
        if name == "shift":
            n = int(args[0]) if args and args[0].isdigit() else 1
            self.positional = self.positional[n:]
            return True
        if name in _VAR_CHANGING and not (name == "printf" and "-v" not in args):
            self.warn(line, f"'{name}' not evaluated: it may set variables")
            return None
        if name == "eval":
            return self.run_eval(args, line)
        if os.path.basename(name) in _SHELLS:
            return self.run_shell(name, args, temp_env, line)
        if name.endswith(".sh"):
            return self.run_other_script(name, name, args, temp_env, line)
        if os.path.basename(name) in _JOB_SUBMITTERS:
            return self.run_job_script(name, args, temp_env, line)
        if self.on_command is not None:
            self.on_command(self, fields, temp_env, line)
        return True

    def _assignments_from_a_value(self, fields: list[str], temp_env: dict, line: int) -> list[str]:
        """`$ENV_ARGS torchrun ...` with ENV_ARGS="NCCL_DEBUG=INFO ...": bash takes assignments only as written, so
        it would run a program named NCCL_DEBUG=INFO and fail. The intent is plain: they are read as the command's
        environment, with a warning that the script fails in bash as it stands."""
        k = 0
        while k < len(fields) - 1 and _ASSIGNMENT_FIELD.fullmatch(fields[k]):
            name, _, value = fields[k].partition("=")
            temp_env[name] = value
            k += 1
        if k:
            written = self.words.text(fields)[:60] if self.words else " ".join(fields[:k])
            self.warn(line, f"'{written}' starts with {', '.join(fields[:k])}, from a variable's value: bash does "
                            f"not read that as an assignment and fails with 'command not found'; read as the "
                            f"command's environment: write 'env {written}' in the script")
        return fields[k:]

    def change_directory(self, args: list[str]) -> bool:
        """`cd DIR`: later `pwd`s see it. `cd` alone goes home; `cd -` is not followed."""
        args = [a for a in args if a not in ("-P", "-L", "--")]
        if not args:
            home = self.vars.get("HOME")
            self.cwd = home if isinstance(home, str) and home else self.cwd
        elif args[0] != "-":
            self.cwd = os.path.normpath(os.path.join(self.cwd, args[0]))
            self.cwd_assumed = self.cwd_assumed and not os.path.isabs(args[0])
        return True

    # ---------------------------------------------------------------- eval, bash -c
    def parse_string(self, text: str, line: int) -> list:
        """Lex and parse a command string (eval's, bash -c's); every command in it is reported at `line`."""
        lexer = Lexer(text, f"{self.path}:{line}")
        tokens = lexer.tokenize()
        for tok in tokens:
            tok.line = line
            for element in getattr(tok, "elements", ()):
                element.line = line
        if lexer.skipped_heredocs:
            self.warn(line, "here-document skipped (its text is not read)")
        for _, name, value in lexer.placeholders:
            self.warn(line, f"{name} {value} is the example's placeholder (bash would take its < and > for "
                            f"redirections); read as the value '{value}': put the real value there")
        return Parser(tokens, f"{self.path}:{line}").parse_program()

    def run_eval(self, args: list[str], line: int):
        """eval: the arguments joined by spaces are read again as commands, in this shell's own variables."""
        text = " ".join(args)
        self.source_texts.append(self.words.text(args))
        if text.strip().startswith(("$(", "`")):
            self.warn(line, f"eval of a command's output ({text.strip()[:40]}) not evaluated")
            return None
        if self.depth > _MAX_DEPTH:
            self.warn(line, "eval nested too deep; not evaluated")
            return None
        try:
            nodes = self.parse_string(text, line)
        except ShellReadError as exc:
            self.warn(line, f"eval text not understood ({exc}); not evaluated")
            return None
        self.depth += 1
        try:
            return self.run_list(nodes)
        finally:
            self.depth -= 1

    def run_sourced(self, name: str, args: list[str], line: int):
        """source FILE [ARGS]: FILE runs in this shell (its variables stay), read when it is on disk."""
        target = args[0] if args else ""
        if sets_up_the_machine(target):
            self.setup_sources.append(self.words.text([name] + args))
            self.warn(line, f"'{name} {target}' sets up the environment: not read here; the new script runs it too")
            return None
        found = find_script(self, target) if self.depth <= _MAX_DEPTH else None
        nodes = self._parsed_file(found, f"'{name} {target}'", line) if found else None
        if nodes is None:
            if not found:
                self.warn(line, f"'{name} {target}' not evaluated (no such file here): variables it sets are "
                                f"unknown here")
            return None
        saved = self.positional
        if len(args) > 1:
            self.positional = list(args[1:])
        self.depth += 1
        try:
            return self.run_list(nodes)
        finally:
            self.depth -= 1
            self.positional = saved if len(args) > 1 else self.positional

    def run_other_script(self, written: str, script: str, args: list[str], temp_env: dict, line: int,
                         found: tuple[str, str] | None = None):
        """bash SCRIPT ARGS / ./SCRIPT.sh ARGS: a new shell reads SCRIPT when it is on disk; otherwise reported
        (and named if no launch is found). `found`: SCRIPT's (path, text) when the caller has looked it up."""
        if self.depth > _MAX_DEPTH:
            found = None
        elif found is None:
            found = find_script(self, script)
        nodes = self._parsed_file(found, f"'{written}'", line) if found else None
        if nodes is None:
            self.other_scripts.append((line, script))
            if not found:
                self.warn(line, f"'{written}' runs another script, which is not read here (no such file here)")
                if self.on_command is not None:  # srun launch.sh pretrain_gpt.py ...: the launcher may know it
                    self.on_command(self, [script] + list(args), temp_env, line)
            return None
        child = self.child(found[0], list(args), temp_env, line)
        try:
            child.run_list(nodes)
        except Exit:
            pass
        return True

    def _parsed_file(self, found: tuple[str, str], written: str, line: int) -> list | None:
        """The commands of a file another one reads, each reported at the line that reads it (said once)."""
        path, text = found
        try:
            nodes = self.parse_string(text, line)
        except ShellReadError as exc:
            self.warn(line, f"{written} ({path}) not understood ({exc}); not evaluated")
            return None
        self.warn(line, f"{written} read from {path}; what it does is reported at this line")
        return nodes

    def run_shell(self, name: str, args: list[str], temp_env: dict, line: int):
        """bash -c STRING [NAME ARGS...]: the string runs in a new shell that sees only exported variables.
        bash SCRIPT: another file, which is not read here (reported, and named if no launch is found)."""
        k, command = 0, False
        while k < len(args) and args[k][:1] in "-+" and args[k] not in ("-", "--"):
            if args[k].startswith("--"):  # --login, --norc, ...; --rcfile FILE takes a value
                k += 2 if args[k] in ("--rcfile", "--init-file") else 1
                continue
            command = command or (args[k][0] == "-" and "c" in args[k])
            k += 2 if args[k] in ("-o", "+o", "-O", "+O") else 1
        k += 1 if k < len(args) and args[k] == "--" else 0
        if not command:
            script = args[k] if k < len(args) else "(standard input)"
            return self.run_other_script(f"{name} {script}", script, args[k + 1:], temp_env, line)
        if k >= len(args):
            self.warn(line, f"'{name} -c' without a command string")
            return None
        if self.depth > _MAX_DEPTH:
            self.warn(line, f"'{name} -c' nested too deep; not evaluated")
            return None
        try:
            nodes = self.parse_string(args[k], line)
        except ShellReadError as exc:
            self.warn(line, f"'{name} -c' text not understood ({exc}); not evaluated")
            return None
        child = self.child(args[k + 1] if k + 1 < len(args) else name, args[k + 2:], temp_env, line)
        child.source_texts.append(self.words.at(args, k)[0] or "")
        try:
            child.run_list(nodes)
        except Exit:
            pass
        return True

    def child(self, path: str, positional: list[str], temp_env: dict, line: int) -> "Shell":
        """A new shell process: the exported (and inherited) variables, plus this command's prefix assignments."""
        names = [n for n in list(self.exported) + sorted(self.inherited) if isinstance(self.vars.get(n), str)]
        child = Shell(path, positional, self.on_command, {n: self.vars[n] for n in names if n in self.inherited})
        for n in names:
            child.vars[n] = self.vars[n]
            if n in self.exported:
                child.exported[n] = self.exported[n]
            if n in self.templates:
                child.templates[n] = self.templates[n]
            if n in self.raw_values:
                child.raw_values[n] = self.raw_values[n]
        for n, value in temp_env.items():
            child.vars[n] = value
            child.exported[n] = line
        child.warnings = self.warnings  # one list: the script's warnings, in the order met
        child.other_scripts = self.other_scripts
        child.files, child.heredocs_read = self.files, self.heredocs_read  # one filesystem
        child.written_docs = self.written_docs
        child.stdin_jobs = self.stdin_jobs
        child.depth = self.depth + 1
        child.cwd, child.cwd_assumed = self.cwd, self.cwd_assumed
        child.start_folder, child.start_folder_reads = self.start_folder, self.start_folder_reads
        child.setup_sources = self.setup_sources
        child.parent = self
        return child

    def write_heredoc(self, fields: list[str], redirects: list, line: int) -> None:
        """`cat <<EOF > FILE` / `cat > FILE <<EOF` / `tee [-a] FILE <<EOF`: remember the text FILE receives."""
        docs = [w.heredoc for op, w in redirects if op.endswith(("<<", "<<-")) and w.heredoc is not None]
        if not docs or os.path.basename(fields[0]) not in ("cat", "tee"):
            return
        doc = docs[-1]
        text = self.join(self.pieces(doc.body, doc.line, in_dq=True)) if doc.expand else doc.body
        targets = [(op.lstrip("0123456789"), self.join(self.pieces(w.raw, w.line))) for op, w in redirects
                   if op.lstrip("0123456789") in (">", ">>", ">|", "&>")]
        if os.path.basename(fields[0]) == "tee":
            append = "-a" in fields[1:] or "--append" in fields[1:]
            targets += [(">>" if append else ">", f) for f in fields[1:] if not f.startswith("-")]
        for op, path in targets:
            self.files[path] = (self.files.get(path, "") if op == ">>" else "") + text
            self.written_docs[path] = (doc.body, text)
        if targets:
            self.heredocs_read.add(doc.line - 1)

    def write_from_sed(self, node: Pipeline) -> bool:
        """`sed EXPR TEMPLATE | sed EXPR ... > FILE` (shell/sed.py): remember the text FILE receives. False when
        the pipeline is not sed commands ending in a `>` redirection."""
        commands = node.commands
        if not commands or not all(isinstance(c, Simple) and c.words and isinstance(c.words[0], Word)
                                   and c.words[0].raw == "sed" for c in commands):
            return False
        targets = [w for op, w in commands[-1].redirects if op.lstrip("0123456789") in (">", ">|")]
        if not targets:
            return False
        out = self.join(self.pieces(targets[-1].raw, targets[-1].line))
        try:
            steps = [parse_sed([f for w in c.words[1:] for f in self.expand_word(w)]) for c in commands]
        except SedNotUnderstood as exc:
            self.warn(node.line, f"{out} is written by sed, which is not read here: {exc}")
            return True
        given = steps[0][1] + [self.join(self.pieces(w.raw, w.line)) for op, w in commands[0].redirects if op == "<"]
        if len(given) != 1 or any(files for _, files in steps[1:]):
            self.warn(node.line, f"{out} is written by sed from {len(given)} inputs; only one template is read")
            return True
        source = self.files.get(given[0])
        if source is None:
            found = find_template(given[0], self.path)
            if found is None:
                self.warn(node.line, f"{out} is written by sed from {given[0]}, which is not found here (looked "
                                     "in this directory, beside the script and above it); its content is unknown")
                return True
            with open(found, encoding="utf-8", errors="replace") as fh:
                source = fh.read()
        for substitutions, _ in steps:
            source = run_sed(substitutions, source)
        self.files[out] = source
        return True

    def run_job_script(self, name: str, args: list[str], temp_env: dict, line: int):
        """`sbatch [OPTIONS] job.sh [ARGS]` / `qsub job.pbs`: the job script runs in a new shell, as the job would,
        when it is here (written by this script, or on disk); otherwise reported like `bash job.sh`.
        `sbatch <<EOF` (the job on standard input) is run_heredoc_script's."""
        files = [k for k, a in enumerate(args) if not a.startswith("-")]
        found = next(((k, hit) for k in files for hit in [find_script(self, args[k])] if hit), None)
        if found is None:
            named = next((args[k] for k in files if _JOB_FILE.search(args[k])), None)
            if named is not None:
                self.other_scripts.append((line, named))
            return None
        k, job = found
        # its #SBATCH lines, as the job receives them (the variables of a here-document expanded)
        self.stdin_jobs.append(self.written_docs.get(args[k]) or (job[1], job[1]))
        return self.run_other_script(f"{name} {args[k]}", args[k], args[k + 1:], temp_env, line, found=job)

    def run_heredoc_script(self, fields: list[str], redirects: list, temp_env: dict, line: int) -> bool:
        """`sbatch <<EOF ... EOF` / `bash <<EOF`: the here-document is the script run (in a new shell, as a job
        or a child shell would run it). False when the command is not one of these."""
        docs = [w.heredoc for op, w in redirects if op.endswith(("<<", "<<-")) and w.heredoc is not None]
        if not docs or os.path.basename(fields[0]) not in _SHELLS | {"sbatch"}:
            return False
        if any(not a.startswith("-") for a in fields[1:]) or self.depth > _MAX_DEPTH:
            return False  # a script file or a -c string: not its standard input
        doc = docs[-1]
        text = self.join(self.pieces(doc.body, doc.line, in_dq=True)) if doc.expand else doc.body
        try:
            nodes = self.parse_string(text, line)
        except ShellReadError as exc:
            self.warn(line, f"the script given to {fields[0]} on its standard input is not understood ({exc})")
            return True
        self.heredocs_read.add(doc.line - 1)
        self.stdin_jobs.append((doc.body, text))
        child = self.child(fields[0], [], temp_env, line)
        try:
            child.run_list(nodes)
        except Exit:
            pass
        return True

    def call_function(self, fn: FuncDef, args: list[str]):
        if self.depth > _MAX_DEPTH:
            self.warn(fn.line, f"function '{fn.name}' recursion too deep; not evaluated")
            return None
        saved, self.positional = self.positional, args
        self.depth += 1
        try:
            return self.run_list(fn.body)
        finally:
            self.depth -= 1
            self.positional = saved

    # ---------------------------------------------------------------- variables
    def assignment_value(self, a: Word):
        m = _ASSIGN_WORD.match(a.raw)
        value = self.join(self.pieces(a.raw[m.end():], a.line))
        return m.group(1), value

    def assign(self, a, export_line: int | None = None) -> str:
        if isinstance(a, ArrayAssign):
            self.raw_values[a.name] = " ".join(w.raw for w in a.elements)
            elements = [f for w in a.elements for f in self.expand_word(w)]
            old = self.vars.get(a.name)
            if a.append:
                old = [] if old is None else ([old] if isinstance(old, str) else old)
                elements = old + elements
            self.vars[a.name] = elements
            return a.name
        m = _ASSIGN_WORD.match(a.raw)
        name, index, append = m.group(1), m.group(2), m.group(3)
        self.raw_values[name] = (self.raw_values.get(name, "") + " " if append or index is not None else "") + \
            a.raw[m.end():]
        value = self.join(self.pieces(a.raw[m.end():], a.line))
        old = self.vars.get(name)
        if index is not None:  # X[i]=v
            arr = [] if old is None else ([old] if isinstance(old, str) else list(old))
            i = self.arith(index, a.line)
            i = int(i) if isinstance(i, int) or str(i).lstrip("-").isdigit() else len(arr)
            while len(arr) <= i:
                arr.append("")
            arr[i] = arr[i] + value if append else value
            self.vars[name] = arr
        elif append and isinstance(old, list):
            self.vars[name] = [(old[0] if old else "") + value] + old[1:]
        else:
            self._remember_template(name, a, m.end(), append, old)  # before assigning: X=$X:... sees the old X
            self.vars[name] = (old or "") + value if append else value
        return name

    def _remember_template(self, name, a, start, append, old):
        """Evaluate the value again, keeping references to unset variables as markers."""
        self._templating = True
        try:
            template = self.join(self.pieces(a.raw[start:], a.line))
        finally:
            self._templating = False
        if append:
            template = self.templates.get(name, old or "") + template
        if "\x00" in template:
            self.templates[name] = template
        else:
            self.templates.pop(name, None)

    def template_word(self, raw: str, line: int) -> str | None:
        """The one field `raw` expands to, with references to unset variables kept as `\x00NAME\x00` markers;
        None when it refers to none, or does not make exactly one field."""
        self._templating = True
        try:
            fields = self.split(self.pieces(raw, line))
        finally:
            self._templating = False
        return fields[0] if len(fields) == 1 and "\x00" in fields[0] else None

    def declare(self, builtin: str, head_rest: list[str], words: list, line: int):
        export = builtin == "export"
        for opt in head_rest:
            export = export or (opt.startswith("-") and "x" in opt)
        for w in words:
            if isinstance(w, ArrayAssign) or _ASSIGN_WORD.match(w.raw):
                name = self.assign(w)
            else:
                names = self.expand_word(w)
                for n in names:
                    if n.startswith("-"):
                        export = export or ("x" in n and not n.startswith("-n"))
                        if builtin == "export" and n.startswith("-n"):
                            export = False
                    elif _NAME.fullmatch(n) and export:
                        self.exported.setdefault(n, line)
                    elif _NAME.fullmatch(n.partition("=")[0]):  # export "$KEY"="$VALUE": a name computed
                        name, _, value = n.partition("=")
                        self.vars[name] = self.raw_values[name] = value
                        self.templates.pop(name, None)
                        if export:
                            self.exported.setdefault(name, line)
                continue
            if export:
                self.exported.setdefault(name, line)
        return True

    def lookup(self, name: str):
        """Value of a parameter: str, list (arrays, $@) or None when unset."""
        if name.isdigit():
            n = int(name)
            if n == 0:
                return self.path
            return self.positional[n - 1] if n <= len(self.positional) else None
        if name in ("@", "*"):
            return list(self.positional)
        if name == "#":
            return str(len(self.positional))
        if name == "?":
            return "0"
        if name in ("$", "!", "-"):
            return None
        if name == "PWD" and name not in self.vars:  # bash keeps it equal to `pwd`
            return self.cwd
        if name in _SUBMIT_FOLDER and name not in self.vars:  # the folder the job was submitted from
            return self.start_folder
        return self.vars.get(name)

    def _note_assumed_pwd(self, name: str, line: int) -> None:
        if name == "PWD" and name not in self.vars and self.cwd_assumed:
            self.start_folder_reads.append(name)
            self.warn(line, f"$PWD read as {self.cwd}, the folder convert_args runs in: run it from the folder the "
                            f"script is launched from")
        elif name in _SUBMIT_FOLDER and name not in self.vars:
            self.start_folder_reads.append(name)
            self.warn(line, f"${name} ({_SUBMIT_FOLDER[name]}'s folder the job was submitted from) read as "
                            f"{self.start_folder}, the folder convert_args runs in: run it from the folder you "
                            f"submit the job from")

    # ---------------------------------------------------------------- expansion
    def expand_word(self, w: Word) -> list[str]:
        return self.split(self.pieces(w.raw, w.line))

    @staticmethod
    def join(pieces: list) -> str:
        out = []
        for p in pieces:
            if p is _BREAK:
                out.append(" ")
            elif isinstance(p, tuple):
                out.append(p[0])
        return "".join(out)

    @staticmethod
    def split(pieces: list) -> list[str]:
        """Bash field splitting: only unquoted expansion results split (on blanks)."""
        fields, cur = [], None
        for p in pieces:
            if p is _BREAK:
                if cur is not None:
                    fields.append(cur)
                cur = None
            elif p is _MARK:
                cur = cur or ""
            elif p is _AT:
                continue
            else:
                text, splittable = p
                if not splittable:
                    cur = (cur or "") + text
                    continue
                for chunk in opaque_chunks(text):
                    if chunk in (" ", "\t", "\n"):
                        if cur is not None:
                            fields.append(cur)
                        cur = None
                    else:
                        cur = (cur or "") + chunk
        if cur is not None:
            fields.append(cur)
        return fields

    def pieces(self, raw: str, line: int, in_dq: bool = False, split_literals: bool = False) -> list:
        """Expand one word (or the inside of "...") into pieces: (text, splittable), _BREAK, _MARK.

        split_literals: unquoted literal text is itself the result of an expansion (the word
        of an unquoted ${X:-word}), so bash splits it too."""
        out, i = [], 0
        while i < len(raw):
            c = raw[i]
            here = line + raw.count("\n", 0, i)
            if c == "'" and not in_dq:
                j = scan_squote(raw, i)
                out += [_MARK, (raw[i + 1:j - 1], False)]
                i = j
            elif c == '"' and not in_dq:
                j = scan_dquote(raw, i)
                inner = self.pieces(raw[i + 1:j - 1], here, in_dq=True)
                if _AT not in inner:
                    out.append(_MARK)
                out += inner
                i = j
            elif c == "\\":
                nxt = raw[i + 1:i + 2]
                if nxt == "\n":
                    pass
                elif in_dq and nxt not in ('$', '`', '"', "\\"):
                    out.append(("\\" + nxt, False))
                else:
                    out.append((nxt, False))
                i += 2
            elif c == "`":
                j = scan_backtick(raw, i)
                path = output_of_commands(self, raw[i + 1:j - 1], here)
                if path is None:
                    self.warn(here, f"command substitution {raw[i:j]} not evaluated; kept as text")
                out.append((raw[i:j], False) if path is None else (path, not in_dq))
                i = j
            elif raw.startswith("$'", i) and not in_dq:
                j = scan_ansi(raw, i)
                out += [_MARK, (ansi_c(raw[i + 2:j - 1]), False)]
                i = j
            elif raw.startswith("$((", i):
                j = scan_paren(raw, i)
                if raw[j - 2:j] == "))":
                    value = self.arith(raw[i + 3:j - 2], here)
                    out.append((str(value), not in_dq))
                else:
                    self.warn(here, f"command substitution {raw[i:j]} not evaluated; kept as text")
                    out.append((raw[i:j], False))
                i = j
            elif raw.startswith("$(", i):
                j = scan_paren(raw, i)
                path = output_of_commands(self, raw[i + 2:j - 1], here)
                if path is None:
                    self.warn(here, f"command substitution {raw[i:j]} not evaluated; kept as text")
                out.append((raw[i:j], False) if path is None else (path, not in_dq))
                i = j
            elif raw.startswith("${", i):
                j = scan_brace(raw, i)
                out += self.brace_expansion(raw[i + 2:j - 1], raw[i:j], here, in_dq)
                i = j
            elif c == "$" and i + 1 < len(raw) and (raw[i + 1].isalnum() or raw[i + 1] in "_@*#?$!-"):
                if raw[i + 1].isdigit() or not (raw[i + 1].isalpha() or raw[i + 1] == "_"):
                    name, j = raw[i + 1], i + 2
                else:
                    m = _NAME.match(raw, i + 1)
                    name, j = m.group(0), m.end()
                self._note_assumed_pwd(name, here)
                out += self.value_pieces(name, None, self.lookup(name), raw[i:j], here, in_dq, warn_unset=True)
                i = j
            else:
                out.append((c, split_literals and not in_dq))
                i += 1
        return out

    def value_pieces(self, name, index, value, text, line, in_dq, warn_unset) -> list:
        if value is None and self._templating and _NAME.fullmatch(name or "") and index is None:
            return [(f"\x00{name}\x00", False)]
        if self._templating and isinstance(value, str) and name in self.templates and index is None:
            return [(self.templates[name], not in_dq)]  # X=$Y where Y came from unset variables: X does too
        if value is None:
            if warn_unset:
                what = "positional parameter" if name.isdigit() else "variable"
                if name in BASH_RUN_TIME:
                    self.warn(line, f"{what} {text} is {BASH_RUN_TIME[name]}, known only at run time; expands to "
                                    "empty here")
                else:
                    self.warn(line, f"{what} {text} is not set; expands to empty")
            return [("", not in_dq)]
        if isinstance(value, list):
            if index in ("@", "*") or (index is None and name in "@*"):
                star = index == "*" or (index is None and name == "*")
                if in_dq and star:
                    return [(" ".join(value), False)]
                out = [_AT] if in_dq else []
                for k, v in enumerate(value):
                    if k:
                        out.append(_BREAK)
                    out += [_MARK, (v, False)] if in_dq else [(v, True)]
                return out
            k = 0 if index is None else self.arith(index, line)
            try:
                value = value[int(k)]
            except (ValueError, IndexError):
                value = ""
        elif index not in (None, "0", "@", "*"):
            value = ""
        if not in_dq and holds_command_output(value):
            return _commands_kept_whole(value)
        return [(value, not in_dq)]

    def brace_expansion(self, body: str, text: str, line: int, in_dq: bool) -> list:
        if body.startswith("#") and len(body) > 1:  # ${#X} / ${#X[@]}
            m = _param(body[1:], whole=True)
            if m:
                value = self.lookup(m.group(1))
                if isinstance(value, list) and m.group(2) in ("@", "*"):
                    return [(str(len(value)), not in_dq)]
                if isinstance(value, list):
                    value = value[0] if value else ""
                return [(str(len(value or "")), not in_dq)]
        if body.startswith("!"):
            m = _param(body[1:], whole=True)
            if m:
                target = self.lookup(m.group(1))
                target = target[0] if isinstance(target, list) and target else target
                value = self.lookup(target) if isinstance(target, str) and target else None
                return self.value_pieces(target or "", None, value, text, line, in_dq, warn_unset=True)
            m = _param(body[1:])
            if m and m.end() < len(body) - 1 and body[1 + m.end()] in ":-=+?#%/^,":  # ${!name+x}: indirect, then op
                target = self.lookup(m.group(1))
                target = target[0] if isinstance(target, list) and target else target
                if isinstance(target, str) and _NAME.fullmatch(target):
                    return self.brace_expansion(target + body[1 + m.end():], text, line, in_dq)
        m = _param(body)
        if not m:
            self.warn(line, f"{text} not understood; kept as text")
            return [(text, False)]
        name, index = m.group(1), m.group(2)
        self._note_assumed_pwd(name, line)
        value = self.lookup(name)
        if isinstance(value, list) and index is not None and index not in ("@", "*"):
            value_scalar = self.value_pieces(name, index, value, text, line, in_dq, False)
            value = self.join(value_scalar)
            index = None
        op_text = body[m.end():]
        if not op_text:
            return self.value_pieces(name, index, value, text, line, in_dq, warn_unset=True)
        scalar = " ".join(value) if isinstance(value, list) else value
        for op in (":-", ":=", ":+", ":?", "-", "=", "+", "?"):
            if op_text.startswith(op):
                word = op_text[len(op):]
                unset = value is None or (op.startswith(":") and scalar == "")
                if op.endswith("-"):
                    if unset:
                        return self.pieces(word, line, in_dq, split_literals=True)
                elif op.endswith("="):
                    if unset:
                        new = self.join(self.pieces(word, line, in_dq))  # quotes in the word are removed
                        if name.isdigit() or not _NAME.fullmatch(name):
                            self.warn(line, f"cannot assign in {text}")
                        else:
                            self.vars[name] = new
                        return [(new, not in_dq)]
                elif op.endswith("+"):
                    return [("", not in_dq)] if unset else self.pieces(word, line, in_dq, split_literals=True)
                elif op.endswith("?"):
                    if unset:
                        self.warn(line, f"{text}: the script would stop here because {name} is not set")
                        return [("", not in_dq)]
                return self.value_pieces(name, index, value, text, line, in_dq, warn_unset=False)
        if scalar is None:
            self.warn(line, f"variable {name} in {text} is not set; expands to empty")
            scalar = ""
        return [(self.transform(scalar, op_text, text, line), not in_dq)]

    def transform(self, value: str, op: str, text: str, line: int) -> str:
        """${X#pat} ${X##pat} ${X%pat} ${X%%pat} ${X/pat/rep} ${X//pat/rep} ${X^^} ${X,,} ${X:off:len}."""
        def pat(p: str) -> str:
            return self.join(self.pieces(p, line, True))
        for marker in ("##", "#", "%%", "%"):
            if op.startswith(marker):
                p = pat(op[len(marker):])
                n = len(value)
                cuts = range(n + 1) if len(marker) == 1 else range(n, -1, -1)
                for k in cuts:
                    if marker[0] == "#" and fnmatch.fnmatchcase(value[:k], p):
                        return value[k:]
                    if marker[0] == "%" and fnmatch.fnmatchcase(value[n - k:], p):
                        return value[:n - k]
                return value
        if op.startswith("/"):
            every = op.startswith("//")
            p, _, rep = op[2 if every else 1:].partition("/")
            p, rep = pat(p), pat(rep)
            out, i = [], 0
            while i <= len(value):
                for j in range(len(value), i, -1):
                    if fnmatch.fnmatchcase(value[i:j], p):
                        out.append(rep)
                        i = j
                        if not every:
                            return "".join(out) + value[i:]
                        break
                else:
                    if i < len(value):
                        out.append(value[i])
                    i += 1
            return "".join(out)
        if op in ("^^", ",,", "^", ","):
            if op == "^^":
                return value.upper()
            if op == ",,":
                return value.lower()
            return (value[:1].upper() if op == "^" else value[:1].lower()) + value[1:]
        if op.startswith(":"):  # ${X:OFFSET} / ${X:OFFSET:LENGTH}, each an arithmetic expression
            offset_text, has_length, length_text = op[1:].partition(":")
            off = self.arith(offset_text, line) if offset_text.strip() else 0
            ln = self.arith(length_text, line) if has_length else None
            if isinstance(off, int) and (ln is None or isinstance(ln, int)):
                off = max(len(value) + off, 0) if off < 0 else off
                if ln is None:
                    return value[off:]
                return value[off:off + ln] if ln >= 0 else value[off:len(value) + ln]
        self.warn(line, f"{text} not understood; kept as text")
        return text

    # ---------------------------------------------------------------- arithmetic
    def arith(self, expr: str, line: int, depth: int = 0):
        """Evaluate $(( expr )); on failure warn and return the text of the expression."""
        text = self.join(self.pieces(expr, line, in_dq=True)).strip()
        py = re.sub(r"&&", " and ", text)
        py = re.sub(r"\|\|", " or ", py)
        py = re.sub(r"!(?!=)", " not ", py)
        try:
            return self._arith_node(ast.parse(py, mode="eval").body, line, depth)
        except (SyntaxError, ValueError, ZeroDivisionError, TypeError, RecursionError) as e:
            # a value kept live ($SLURM_NNODES, a command's output) reaches the expression as text, not a number
            if "\x00" in text or "$" in text or "`" in text:
                why = "it uses a value known only at run time"
            else:  # an empty variable leaves an operator without its operand, as in bash
                why = f"{text!r} once expanded is not valid arithmetic" if isinstance(e, SyntaxError) else e
            self.warn(line, f"arithmetic $(( {expr.strip()} )) not evaluated: {why}")
            return f"$(({expr}))"

    def _arith_node(self, node, line: int, depth: int) -> int:
        ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
               ast.Div: lambda a, b: int(a / b) if b else (_ for _ in ()).throw(ZeroDivisionError("division by 0")),
               ast.Mod: lambda a, b: a - b * int(a / b), ast.Pow: lambda a, b: a ** b,
               ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b,
               ast.BitAnd: lambda a, b: a & b, ast.BitOr: lambda a, b: a | b, ast.BitXor: lambda a, b: a ^ b}
        cmps = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
                ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}
        ev = lambda n: self._arith_node(n, line, depth)  # noqa: E731
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            value = self.lookup(node.id)
            value = (value[0] if value else "") if isinstance(value, list) else (value or "")
            value = value.strip()
            if value == "":
                return 0
            if re.fullmatch(r"-?\d+", value):
                return int(value)
            if depth > 10:
                raise ValueError(f"{node.id} refers to itself")
            result = self.arith(value, line, depth + 1)
            if not isinstance(result, int):
                raise ValueError(f"{node.id}={value!r} is not a number")
            return result
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            return {ast.USub: -v, ast.UAdd: v, ast.Not: int(not v), ast.Invert: ~v}[type(node.op)]
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, right in zip(node.ops, node.comparators):
                r = ev(right)
                if type(op) not in cmps or not cmps[type(op)](left, r):
                    return 0
                left = r
            return 1
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            return int(all(vals) if isinstance(node.op, ast.And) else any(vals))
        raise ValueError(f"unsupported arithmetic {ast.dump(node)[:40]}")

    # ---------------------------------------------------------------- tests
    def test_double_bracket(self, words: list, line: int):
        inner = words[1:-1] if words[-1].raw == "]]" else words[1:]
        args = []
        for w in inner:
            quoted = any(q in w.raw for q in "'\"\\")
            args.append((self.join(self.pieces(w.raw, w.line)), not quoted))
        return self.test(args, line, double=True, raw=[w.raw for w in inner])

    def known_only_at_run_time(self, args: list[tuple[str, bool]], raw: Sequence[str]) -> str | None:
        """What makes a test's outcome unknowable here: a scheduler's variable the script does not set
        ([ -z $SLURM_JOB_ID ] is false inside the job), or a command's output (kept as its text)."""
        unset = [n for word in raw for n in scheduler_references(word) if self.lookup(n) is None]
        if unset:
            return f"${unset[0]}, set by the scheduler at run time"
        machine = [n for word in raw for n in REFERENCE.findall(word) if n in BASH_RUN_TIME and self.lookup(n) is None]
        if machine:
            return f"${machine[0]}, {BASH_RUN_TIME[machine[0]]}"
        for word in raw:  # lrank=$OMPI_COMM_WORLD_LOCAL_RANK; case $lrank in ...: the scheduler's value, renamed
            for name in REFERENCE.findall(word):
                inherited = scheduler_references(self.templates.get(name, "").replace("\x00", "$"))
                if inherited:
                    return f"${name} (${inherited[0]}), set by the scheduler at run time"
        output = next((a for a, _ in args if holds_command_output(a)), None)
        return f"the output of {output[:50]}" if output is not None else None

    def test(self, args: list[tuple[str, bool]], line: int, double: bool, raw: Sequence[str] = ()):
        """Evaluate test / [ ] / [[ ]] arguments. Returns True, False, or None (unknown)."""
        unknowable = self.known_only_at_run_time(args, raw)
        if unknowable:
            self.warn(line, f"test on {unknowable}: not evaluated")
            return None
        pos = [0]

        def peek(k=0):
            i = pos[0] + k
            return args[i][0] if i < len(args) else None

        def take():
            pos[0] += 1
            return args[pos[0] - 1]

        def expr():
            v = conj()
            while peek() in ("-o", "||"):
                take()
                r = conj()
                v = True if (v or r) else (None if v is None or r is None else False)
            return v

        def conj():
            v = neg()
            while peek() in ("-a", "&&") and not (not double and peek(1) is None):
                take()
                r = neg()
                v = False if (v is False or r is False) else (None if v is None or r is None else True)
            return v

        def neg():
            if peek() == "!" and pos[0] + 1 < len(args):
                take()
                v = neg()
                return None if v is None else not v
            return primary()

        def primary():
            if peek() == "(":
                take()
                v = expr()
                if peek() == ")":
                    take()
                return v
            a = take() if peek() is not None else ("", True)
            op = peek()
            if op in ("=", "==", "!=", "=~", "<", ">", "-eq", "-ne", "-lt", "-le", "-gt", "-ge",
                      "-nt", "-ot", "-ef"):
                take()
                b = take() if peek() is not None else ("", True)
                return binary(a[0], op, b)
            if a[0] in ("-z", "-n") and peek() is not None:
                v = take()[0]
                return (v == "") if a[0] == "-z" else (v != "")
            if a[0] == "-v" and peek() is not None:
                return self.lookup(take()[0]) is not None
            if a[0] in _FILE_TESTS and peek() is not None:
                target = take()[0]
                self.warn(line, f"file test {a[0]} {target} not evaluated (nothing is read from disk)")
                return None
            return a[0] != ""

        def binary(a, op, b):
            bv, pattern = b
            if op in ("=", "=="):
                return fnmatch.fnmatchcase(a, bv) if double and pattern else a == bv
            if op == "!=":
                return not (fnmatch.fnmatchcase(a, bv) if double and pattern else a == bv)
            if op == "=~":
                try:
                    return re.search(bv, a) is not None
                except re.error:
                    self.warn(line, f"regular expression {bv!r} not understood")
                    return None
            if op in ("<", ">"):
                return a < bv if op == "<" else a > bv
            if op in ("-nt", "-ot", "-ef"):
                self.warn(line, f"file test {op} not evaluated")
                return None
            try:
                x = int(self.arith(a, line)) if double else int(a)
                y = int(self.arith(bv, line)) if double else int(bv)
            except ValueError:
                self.warn(line, f"numeric test {a!r} {op} {bv!r} on a non-number; not evaluated")
                return None
            return {"-eq": x == y, "-ne": x != y, "-lt": x < y, "-le": x <= y, "-gt": x > y, "-ge": x >= y}[op]

        if not args:
            return False
        result = expr()
        if pos[0] != len(args):
            self.warn(line, f"test {' '.join(a for a, _ in args)!r} not understood; assumed unknown")
            return None
        return result

    # ---------------------------------------------------------------- launch lines
