"""Evaluating the tree in a pretend shell: variables, commands and assignments; nothing is executed.

The Shell is built from mixins, one concern each: expansion.py (words into fields), conditions.py (arithmetic and
tests), control.py (if, loops, case, functions), subshells.py (eval, bash -c, source, other scripts and jobs)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from .conditions import Conditions
from .control import ControlFlow
from .expansion import NAME, Expansion
from .lex import ArithCmd, ArrayAssign, Unterminated, Word
from .parse import AndOr, Case, For, FuncDef, Group, If, Pipeline, Simple, Skipped, While
from .read_builtin import parse_read_args, read_values
from .result import ShellWarning
from .signals import Exit, LoopBreak, LoopContinue
from .subshells import SHELLS, Subshells
from .text_commands import pipeline_status


@dataclass
class OutputFrame:
    """One simple command's output plumbing, unexpanded: its redirections and the pipeline commands after it."""
    redirects: list
    tail: list


_ASSIGN_WORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]*)\])?(\+?)=")
_DECLARATIONS = {"export", "declare", "typeset", "local", "readonly"}
_VAR_CHANGING = {"read", "mapfile", "readarray", "let", "getopts", "printf"}
_SUBMIT_FOLDER = {"PBS_O_WORKDIR": "PBS", "SLURM_SUBMIT_DIR": "Slurm"}  # a job's submitting folder
_ASSIGNMENT_FIELD = re.compile(r"[A-Za-z_]\w*=.*", re.S)
_JOB_SUBMITTERS = {"sbatch", "qsub", "bsub"}
_WRAPPERS = {"nohup", "exec", "time", "env", "command", "stdbuf"}


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


class Shell(Expansion, Conditions, ControlFlow, Subshells):
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
        self.unread_sources: list[str] = []  # files sourced that are not here: the variables they set are unknown
        self.cwd_assumed = True  # cwd still depends on where the script is started (no `cd` to an absolute path)
        self.start_folder = self.cwd  # where the script starts: convert_args' own folder, taken for the user's
        self.start_folder_reads: list[str] = []  # `pwd`, $PWD, $PBS_O_WORKDIR read as that folder (one list)
        self._pipe_tail: list = []  # the commands after the one the pipeline is about to run
        self.loop_lines: list[int] = []  # the lines of the loops whose body is running, outermost first
        self.job_counts: dict[str, tuple[int, str]] = {}  # SLURM_NNODES -> (2, "#SBATCH --nodes 2"): the job's
        self.launches_seen = [0]  # launches recorded so far, by this shell and the shells it shares it with
        # sees a script run with arguments that led to no launch (Recognizer.wrapper_script: bind.sh python X.py)
        self.on_script_without_launch: Callable | None = None

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
        if cmd.redirects and fields[0] == "read":
            read = self.read_here_string(fields[1:], cmd.redirects, temp_env, cmd.line)
            if read is not None:
                return read
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
                    if NAME.fullmatch(key):
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
            raise LoopBreak() if name == "break" else LoopContinue()
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
        if os.path.basename(name) in SHELLS:
            return self.run_shell(name, args, temp_env, line)
        if name.endswith(".sh"):
            return self.run_other_script(name, name, args, temp_env, line)
        if os.path.basename(name) in _JOB_SUBMITTERS:
            return self.run_job_script(name, args, temp_env, line)
        if self.on_command is not None:
            self.on_command(self, fields, temp_env, line)
        return True

    def read_here_string(self, args: list[str], redirects: list, temp_env: dict, line: int) -> bool | None:
        """`read [-r] [-a NAME] NAMES <<< WORD` (shell/read_builtin.py): the variables set as bash sets them. None
        when the input is not a here-string, or the options are not followed here."""
        strings = [w for op, w in redirects if op == "<<<"]
        call = parse_read_args(args) if strings else None
        if call is None:
            return None
        text = self.join(self.pieces(strings[-1].raw, line)) + "\n"
        ifs = temp_env["IFS"] if "IFS" in temp_env else self.vars.get("IFS", " \t\n")
        for name, value in read_values(call, text, ifs if isinstance(ifs, str) else " \t\n").items():
            self.vars[name] = value
            self.raw_values[name] = strings[-1].raw
            self.templates.pop(name, None)
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
        # X+=..., X[i]=... and X="$X --more" keep the earlier text: it still says which variable follows an option
        grows = append or index is not None or re.search(r"\$\{?" + name + r"(?!\w)", a.raw[m.end():])
        self.raw_values[name] = (self.raw_values.get(name, "") + " " if grows else "") + a.raw[m.end():]
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
                    elif NAME.fullmatch(n) and export:
                        self.exported.setdefault(n, line)
                    elif NAME.fullmatch(n.partition("=")[0]):  # export "$KEY"="$VALUE": a name computed
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
