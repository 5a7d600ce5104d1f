"""Read a Megatron-LM / MindSpeed-LLM bash launch script without running it.

`read_launch_script(text, script_args)` tokenizes the script, parses it into a
small tree (simple commands, pipelines, `&&`/`||` chains, `if/elif/else`,
`{ }` / `( )` groups, functions) and evaluates that tree in a pretend shell:
assignments, `export`, parameter expansion, `$(( ))` arithmetic, `[ ]`/`[[ ]]`
tests, arrays and bash's word splitting are evaluated; nothing is executed.
What cannot be evaluated without running something (command substitution,
`source`, loops, `eval`, file tests, ...) is left as literal text and reported
in `LaunchScript.warnings` with its line number.

The launch line is the command that starts `torchrun`, `python -m
torch.distributed.launch|run` or `python SCRIPT.py` on the path the script
actually takes. When several run, a distributed launcher wins over plain
python, and among equals the last one wins (a preprocessing step usually comes
before training); the others are reported as warnings.
"""
from __future__ import annotations

import ast
import fnmatch
import os
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

__all__ = ["LaunchScript", "ShellReadError", "ShellWarning", "read_launch_script"]


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


# --------------------------------------------------------------------------- scanning
# Each scanner takes the index of an opening construct and returns the index just
# after its end. They are shared by the lexer (to find word ends) and the expander.

class _Unterminated(Exception):
    def __init__(self, what: str, start: int):
        super().__init__(what)
        self.what, self.start = what, start


def _scan_squote(s: str, i: int) -> int:
    j = s.find("'", i + 1)
    if j < 0:
        raise _Unterminated("single quote", i)
    return j + 1


def _scan_ansi(s: str, i: int) -> int:  # $'...'
    j = i + 2
    while j < len(s):
        if s[j] == "\\":
            j += 2
        elif s[j] == "'":
            return j + 1
        else:
            j += 1
    raise _Unterminated("$'...' quote", i)


def _scan_backtick(s: str, i: int) -> int:
    j = i + 1
    while j < len(s):
        if s[j] == "\\":
            j += 2
        elif s[j] == "`":
            return j + 1
        else:
            j += 1
    raise _Unterminated("backtick", i)


def _scan_dquote(s: str, i: int) -> int:
    j = i + 1
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
        elif c == '"':
            return j + 1
        elif s.startswith("$(", j):
            j = _scan_paren(s, j)
        elif s.startswith("${", j):
            j = _scan_brace(s, j)
        elif c == "`":
            j = _scan_backtick(s, j)
        else:
            j += 1
    raise _Unterminated("double quote", i)


def _scan_nested(s: str, i: int, open_: str, close: str, what: str) -> int:
    depth, j = 0, i + 1  # s[i] is '$'
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "'":
            j = _scan_squote(s, j)
            continue
        if c == '"':
            j = _scan_dquote(s, j)
            continue
        if c == "`":
            j = _scan_backtick(s, j)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise _Unterminated(what, i)


def _scan_paren(s: str, i: int) -> int:  # $( ... ) and $(( ... ))
    return _scan_nested(s, i, "(", ")", "$( ... )")


def _scan_brace(s: str, i: int) -> int:  # ${ ... }
    return _scan_nested(s, i, "{", "}", "${ ... }")


# --------------------------------------------------------------------------- lexer

@dataclass
class _Word:
    raw: str
    line: int


@dataclass
class _Op:
    text: str
    line: int


@dataclass
class _ArrayAssign:
    name: str
    append: bool
    elements: list[_Word]
    line: int


@dataclass
class _ArithCmd:
    expr: str
    line: int


_META = set(" \t\n;&|()<>")
_OPERATORS = sorted(
    [";;&", ";;", ";&", "&&", "||", "|&", "&>>", "&>", ">>", ">&", ">|", "<<<", "<<-", "<<",
     "<&", "<>", ";", "&", "|", "(", ")", "<", ">"], key=len, reverse=True)
_REDIRECTS = {"&>>", "&>", ">>", ">&", ">|", "<<<", "<<-", "<<", "<&", "<>", "<", ">"}
_ASSIGN_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=$")
_COMMAND_START_OPS = {";", "\n", "&&", "||", "|", "&", "(", "|&"}
_COMMAND_START_WORDS = {"then", "do", "else", "elif", "if", "while", "until", "{", "!"}


class _Lexer:
    def __init__(self, text: str, path: str):
        self.s, self.path = text, path
        self.i = 0
        self.tokens: list = []
        self.heredocs: list[tuple[str, bool, int]] = []
        self.skipped_heredocs: list[int] = []
        self._newlines = [k for k, c in enumerate(text) if c == "\n"]

    def line_at(self, i: int) -> int:
        return bisect_right(self._newlines, i - 1) + 1

    def error(self, msg: str, i: int) -> ShellReadError:
        return ShellReadError(f"{self.path}:{self.line_at(i)}: {msg}")

    def tokenize(self) -> list:
        s = self.s
        try:
            while self.i < len(s):
                c = s[self.i]
                if s.startswith("\\\n", self.i):
                    self.i += 2
                elif c in " \t\r":
                    self.i += 1
                elif c == "#":
                    while self.i < len(s) and s[self.i] != "\n":
                        self.i += 1
                elif c == "\n":
                    self.tokens.append(_Op("\n", self.line_at(self.i)))
                    self.i += 1
                    self._skip_heredoc_bodies()
                elif s.startswith("((", self.i) and self._at_command_start():
                    start = self.i
                    end = self._scan_arith_cmd()
                    self.tokens.append(_ArithCmd(s[start + 2:end - 2], self.line_at(start)))
                    self.i = end
                elif c in _META:
                    self._operator("")
                else:
                    self._word_or_assignment()
        except _Unterminated as e:
            raise self.error(f"unterminated {e.what} (opened here)", e.start) from None
        return self.tokens

    def _at_command_start(self) -> bool:
        if not self.tokens:
            return True
        t = self.tokens[-1]
        return (isinstance(t, _Op) and t.text in _COMMAND_START_OPS) or (
            isinstance(t, _Word) and t.raw in _COMMAND_START_WORDS)

    def _scan_arith_cmd(self) -> int:
        depth, j = 0, self.i
        while j < len(self.s):
            if self.s[j] == "(":
                depth += 1
            elif self.s[j] == ")":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise _Unterminated("(( ... ))", self.i)

    def _operator(self, io_number: str) -> None:
        start = self.i
        op = next(o for o in _OPERATORS if self.s.startswith(o, self.i))
        self.i += len(op)
        self.tokens.append(_Op(io_number + op, self.line_at(start)))
        if op in ("<<", "<<-"):
            while self.i < len(self.s) and self.s[self.i] in " \t":
                self.i += 1
            w0 = self.i
            delim = self._read_word()
            self.tokens.append(_Word(delim, self.line_at(w0)))
            self.heredocs.append((re.sub(r"[\"'\\]", "", delim), op == "<<-", self.line_at(start)))

    def _skip_heredoc_bodies(self) -> None:
        s = self.s
        for delim, strip_tabs, line in self.heredocs:
            self.skipped_heredocs.append(line)
            while self.i < len(s):
                end = s.find("\n", self.i)
                end = len(s) if end < 0 else end
                body_line = s[self.i:end]
                self.i = min(end + 1, len(s))
                if (body_line.lstrip("\t") if strip_tabs else body_line) == delim:
                    break
        self.heredocs = []

    def _word_or_assignment(self) -> None:
        start = self.i
        raw = self._read_word()
        line = self.line_at(start)
        if self.i < len(self.s) and self.s[self.i] in "<>" and raw.isdigit():
            self._operator(raw)
            return
        m = _ASSIGN_PREFIX.match(raw)
        if m and self.s.startswith("(", self.i):
            self.i += 1
            self.tokens.append(_ArrayAssign(m.group(1), bool(m.group(2)), self._read_array(start), line))
            return
        self.tokens.append(_Word(raw, line))

    def _read_array(self, start: int) -> list[_Word]:
        s, words = self.s, []
        while True:
            if self.i >= len(s):
                raise _Unterminated("array ( ... )", start)
            c = s[self.i]
            if s.startswith("\\\n", self.i):
                self.i += 2
            elif c in " \t\r\n":
                self.i += 1
            elif c == "#":
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
            elif c == ")":
                self.i += 1
                return words
            elif c in _META:
                raise self.error(f"unexpected {c!r} inside an array assignment", self.i)
            else:
                w0 = self.i
                words.append(_Word(self._read_word(), self.line_at(w0)))

    def _read_word(self) -> str:
        s, out = self.s, []
        while self.i < len(s):
            c = s[self.i]
            if s.startswith("\\\n", self.i):
                self.i += 2
                continue
            if c in _META:
                break
            if c == "\\":
                j = self.i + 2
            elif c == "'":
                j = _scan_squote(s, self.i)
            elif c == '"':
                j = _scan_dquote(s, self.i)
            elif c == "`":
                j = _scan_backtick(s, self.i)
            elif s.startswith("$'", self.i):
                j = _scan_ansi(s, self.i)
            elif s.startswith('$"', self.i):
                self.i += 1  # $"..." is a translated string: treat as "..."
                continue
            elif s.startswith("$(", self.i):
                j = _scan_paren(s, self.i)
            elif s.startswith("${", self.i):
                j = _scan_brace(s, self.i)
            else:
                j = self.i + 1
            out.append(s[self.i:j])
            self.i = j
        return "".join(out)


# --------------------------------------------------------------------------- parser

@dataclass
class _Simple:
    words: list          # _Word | _ArrayAssign
    line: int


@dataclass
class _Pipeline:
    commands: list
    negate: bool
    line: int


@dataclass
class _AndOr:
    first: object
    rest: list           # [(op, pipeline)]


@dataclass
class _If:
    clauses: list        # [(condition nodes, body nodes)]
    else_body: list | None
    line: int


@dataclass
class _Group:
    body: list
    line: int


@dataclass
class _FuncDef:
    name: str
    body: list
    line: int


@dataclass
class _Skipped:
    what: str
    line: int


class _Parser:
    def __init__(self, tokens: list, path: str):
        self.toks, self.k, self.path = tokens, 0, path

    # helpers
    def peek(self, ahead: int = 0):
        k = self.k + ahead
        return self.toks[k] if k < len(self.toks) else None

    def is_word(self, tok, *raws: str) -> bool:
        return isinstance(tok, _Word) and (not raws or tok.raw in raws)

    def is_op(self, tok, *texts: str) -> bool:
        return isinstance(tok, _Op) and (not texts or tok.text in texts)

    def error(self, msg: str, tok=None) -> ShellReadError:
        tok = tok if tok is not None else (self.peek() or (self.toks[-1] if self.toks else None))
        line = getattr(tok, "line", 1)
        return ShellReadError(f"{self.path}:{line}: {msg}")

    def expect_word(self, raw: str) -> None:
        tok = self.peek()
        if not self.is_word(tok, raw):
            found = "end of file" if tok is None else repr(getattr(tok, "raw", getattr(tok, "text", "")))
            raise self.error(f"expected '{raw}' but found {found}")
        self.k += 1

    def skip_newlines(self) -> None:
        while self.is_op(self.peek(), "\n"):
            self.k += 1

    # grammar
    def parse_program(self) -> list:
        nodes = self.parse_list(stop_words=set(), stop_paren=False)
        if self.peek() is not None:
            tok = self.peek()
            raise self.error(f"unexpected {getattr(tok, 'raw', getattr(tok, 'text', ''))!r}")
        return nodes

    def parse_list(self, stop_words: set, stop_paren: bool) -> list:
        nodes = []
        while True:
            while self.is_op(self.peek(), ";", "\n", "&"):
                self.k += 1
            tok = self.peek()
            if tok is None or (self.is_word(tok) and tok.raw in stop_words) or (
                    stop_paren and self.is_op(tok, ")")):
                return nodes
            nodes.append(self.parse_and_or())

    def parse_and_or(self):
        first, rest = self.parse_pipeline(), []
        while self.is_op(self.peek(), "&&", "||"):
            op = self.peek().text
            self.k += 1
            self.skip_newlines()
            rest.append((op, self.parse_pipeline()))
        return _AndOr(first, rest) if rest else first

    def parse_pipeline(self):
        tok = self.peek()
        negate = self.is_word(tok, "!")
        if negate:
            self.k += 1
        commands = [self.parse_command()]
        while self.is_op(self.peek(), "|", "|&"):
            self.k += 1
            self.skip_newlines()
            commands.append(self.parse_command())
        if len(commands) == 1 and not negate:
            return commands[0]
        return _Pipeline(commands, negate, getattr(tok, "line", 0))

    def parse_command(self):
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of file")
        if self.is_word(tok, "if"):
            node = self.parse_if()
        elif self.is_word(tok, "for", "while", "until", "select"):
            node = self.skip_block(tok, opener=("do",), closer="done", what=f"'{tok.raw}' loop")
        elif self.is_word(tok, "case"):
            node = self.skip_block(tok, opener=("case",), closer="esac", what="'case' statement")
        elif self.is_word(tok, "{"):
            self.k += 1
            body = self.parse_list({"}"}, stop_paren=False)
            self.expect_word("}")
            node = _Group(body, tok.line)
        elif self.is_op(tok, "("):
            self.k += 1
            body = self.parse_list(set(), stop_paren=True)
            if not self.is_op(self.peek(), ")"):
                raise self.error("expected ')' to close the subshell opened on line %d" % tok.line)
            self.k += 1
            node = _Group(body, tok.line)
        elif self.is_word(tok, "function") or (
                self.is_word(tok) and self.is_op(self.peek(1), "(") and self.is_op(self.peek(2), ")")):
            node = self.parse_function()
        elif isinstance(tok, _ArithCmd):
            self.k += 1
            node = tok
        elif self.is_word(tok, "then", "elif", "else", "fi", "do", "done", "esac", "}") or self.is_op(tok, ")"):
            raise self.error(f"unexpected '{getattr(tok, 'raw', ')')}'", tok)
        else:
            return self.parse_simple()
        self.skip_redirections()
        return node

    def skip_redirections(self) -> None:
        while isinstance(self.peek(), _Op) and self.peek().text.lstrip("0123456789") in _REDIRECTS:
            self.k += 1
            if self.is_word(self.peek()):
                self.k += 1

    def parse_simple(self) -> _Simple:
        words, line = [], self.peek().line
        if self.is_word(self.peek(), "[["):  # [[ ... ]] keeps &&, ||, <, >, ( ) as words
            while True:
                tok = self.peek()
                if tok is None or self.is_op(tok, "\n", ";"):
                    raise self.error("'[[' without a closing ']]'", tok)
                self.k += 1
                words.append(tok if isinstance(tok, _Word) else _Word(tok.text, tok.line))
                if self.is_word(tok, "]]"):
                    break
        while True:
            tok = self.peek()
            if isinstance(tok, (_Word, _ArrayAssign)):
                words.append(tok)
                self.k += 1
            elif isinstance(tok, _Op) and tok.text.lstrip("0123456789") in _REDIRECTS:
                self.skip_redirections()
            else:
                return _Simple(words, line)

    def parse_if(self) -> _If:
        line = self.peek().line
        self.k += 1
        clauses = []
        while True:
            cond = self.parse_list({"then"}, stop_paren=False)
            self.expect_word("then")
            body = self.parse_list({"elif", "else", "fi"}, stop_paren=False)
            clauses.append((cond, body))
            tok = self.peek()
            if tok is None:
                raise ShellReadError(f"{self.path}:{line}: 'if' is not closed by 'fi'")
            self.k += 1
            if self.is_word(tok, "elif"):
                continue
            if self.is_word(tok, "else"):
                else_body = self.parse_list({"fi"}, stop_paren=False)
                self.expect_word("fi")
                return _If(clauses, else_body, line)
            if self.is_word(tok, "fi"):
                return _If(clauses, None, line)
            raise self.error(f"'if' on line {line} is not closed by 'fi'", tok)

    def parse_function(self) -> _FuncDef:
        tok = self.peek()
        line = tok.line
        if tok.raw == "function":
            self.k += 1
            tok = self.peek()
            if not self.is_word(tok):
                raise self.error("expected a function name after 'function'")
        name = tok.raw
        self.k += 1
        if self.is_op(self.peek(), "("):
            self.k += 2
        self.skip_newlines()
        body_tok = self.peek()
        if self.is_word(body_tok, "{"):
            self.k += 1
            body = self.parse_list({"}"}, stop_paren=False)
            self.expect_word("}")
        elif self.is_op(body_tok, "("):
            self.k += 1
            body = self.parse_list(set(), stop_paren=True)
            self.k += 1
        else:
            raise self.error(f"function '{name}' has no {{ ... }} body")
        return _FuncDef(name, body, line)

    def skip_block(self, tok, opener, closer, what) -> _Skipped:
        depth = 0
        while True:
            t = self.peek()
            if t is None:
                raise self.error(f"{what} on line {tok.line} is not closed by '{closer}'", tok)
            self.k += 1
            if self.is_word(t, *opener):
                depth += 1
            elif self.is_word(t, closer):
                depth -= 1
                if depth == 0:
                    return _Skipped(what, tok.line)


# --------------------------------------------------------------------------- evaluator

class _Break:  # field boundary between "${X[@]}" elements
    pass


class _Mark:  # "a field exists here even if empty" (quoted text)
    pass


class _AtExpansion:  # a quoted "${X[@]}"/"$@" is inside: its elements bring their own marks
    pass


_BREAK, _MARK, _AT = _Break(), _Mark(), _AtExpansion()


class _Exit(Exception):
    pass


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN_WORD = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]*)\])?(\+?)=")
_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])(?:\[([^\]]*)\])?")
_DECLARATIONS = {"export", "declare", "typeset", "local", "readonly"}
_VAR_CHANGING = {"read", "eval", "mapfile", "readarray", "let", "getopts", "printf"}
_WRAPPERS = {"nohup", "exec", "time", "env", "command", "stdbuf"}
_BOOLEAN_LAUNCHER_FLAGS = {"standalone", "no_python", "module", "m", "use_env", "run_path", "help", "h"}
_FILE_TESTS = set("-a -b -c -d -e -f -g -h -k -p -r -s -t -u -w -x -G -L -N -O -S".split())
_ANSI_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
                 "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "v": "\v"}


@dataclass
class _Launch:
    priority: int
    result: LaunchScript


class _Shell:
    def __init__(self, path: str, script_args: Sequence[str]):
        self.path = path
        self.vars: dict[str, str | list[str]] = {}
        self.exported: dict[str, int] = {}
        self.positional = list(script_args)
        self.functions: dict[str, _FuncDef] = {}
        self.warnings: list[ShellWarning] = []
        self.launches: list[_Launch] = []
        self.depth = 0
        # Values that referenced variables the script never set (inherited from the caller's environment,
        # e.g. PATH): kept with those references as `\x00NAME\x00` markers, so a rendered script can keep $NAME.
        self.templates: dict[str, str] = {}
        self._templating = False

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
        if isinstance(node, _Simple):
            return self.run_simple(node)
        if isinstance(node, _AndOr):
            status = self.run(node.first)
            for op, pipe in node.rest:
                if op == "&&" and status is False:
                    continue
                if op == "||" and status is not False:
                    continue
                status = self.run(pipe)
            return status
        if isinstance(node, _Pipeline):
            status = True
            for cmd in node.commands:
                status = self.run(cmd)
            if node.negate:
                return None if status is None else not status
            return status
        if isinstance(node, _If):
            for cond, body in node.clauses:
                status = self.run_list(cond)
                if status is None:
                    self.warn(node.line, "'if' condition could not be evaluated; assumed false")
                if status:
                    return self.run_list(body)
            return self.run_list(node.else_body) if node.else_body is not None else True
        if isinstance(node, _Group):
            return self.run_list(node.body)
        if isinstance(node, _FuncDef):
            self.functions[node.name] = node
            return True
        if isinstance(node, _ArithCmd):
            self.warn(node.line, f"arithmetic command (( {node.expr.strip()} )) not evaluated")
            return None
        if isinstance(node, _Skipped):
            self.warn(node.line, f"{node.what} not evaluated (its body is skipped)")
            return None
        raise AssertionError(node)

    def run_simple(self, cmd: _Simple):
        words = cmd.words
        n_assign = 0
        while n_assign < len(words) and (isinstance(words[n_assign], _ArrayAssign) or
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
            if isinstance(a, _Word):
                name, value = self.assignment_value(a)
                temp_env[name] = value if isinstance(value, str) else " ".join(value)
        head = self.expand_word(rest[0])
        if head and head[0] in _DECLARATIONS:
            return self.declare(head[0], head[1:], rest[1:], cmd.line)
        fields = list(head)
        for w in rest[1:]:
            fields.extend(self.expand_word(w) if isinstance(w, _Word) else [])
        if not fields:
            return True
        return self.run_command(fields, temp_env, cmd.line)

    def run_command(self, fields: list[str], temp_env: dict, line: int):
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
        if name in self.functions:
            return self.call_function(self.functions[name], args)
        if name in ("[", "test"):
            if name == "[":
                if not args or args[-1] != "]":
                    self.warn(line, "'[' without a closing ']'")
                    return None
                args = args[:-1]
            return self.test([(a, True) for a in args], line, double=False)
        if name in ("true", ":"):
            return True
        if name == "false":
            return False
        if name == "exit":
            raise _Exit()
        if name in ("source", "."):
            target = args[0] if args else ""
            self.warn(line, f"'{name} {target}' not evaluated: variables it sets are unknown here")
            return None
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
        launch = self.as_launch(fields, temp_env, line)
        if launch is not None:
            self.launches.append(launch)
        return True

    def call_function(self, fn: _FuncDef, args: list[str]):
        if self.depth > 20:
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
    def assignment_value(self, a: _Word):
        m = _ASSIGN_WORD.match(a.raw)
        value = self.join(self.pieces(a.raw[m.end():], a.line))
        return m.group(1), value

    def assign(self, a, export_line: int | None = None) -> str:
        if isinstance(a, _ArrayAssign):
            elements = [f for w in a.elements for f in self.expand_word(w)]
            old = self.vars.get(a.name)
            if a.append:
                old = [] if old is None else ([old] if isinstance(old, str) else old)
                elements = old + elements
            self.vars[a.name] = elements
            return a.name
        m = _ASSIGN_WORD.match(a.raw)
        name, index, append = m.group(1), m.group(2), m.group(3)
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

    def declare(self, builtin: str, head_rest: list[str], words: list, line: int):
        export = builtin == "export"
        for opt in head_rest:
            export = export or (opt.startswith("-") and "x" in opt)
        for w in words:
            if isinstance(w, _ArrayAssign) or _ASSIGN_WORD.match(w.raw):
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
        return self.vars.get(name)

    # ---------------------------------------------------------------- expansion
    def expand_word(self, w: _Word) -> list[str]:
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
                for chunk in _opaque_chunks(text):
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
                j = _scan_squote(raw, i)
                out += [_MARK, (raw[i + 1:j - 1], False)]
                i = j
            elif c == '"' and not in_dq:
                j = _scan_dquote(raw, i)
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
                j = _scan_backtick(raw, i)
                self.warn(here, f"command substitution {raw[i:j]} not evaluated; kept as text")
                out.append((raw[i:j], False))
                i = j
            elif raw.startswith("$'", i) and not in_dq:
                j = _scan_ansi(raw, i)
                out += [_MARK, (_ansi_c(raw[i + 2:j - 1]), False)]
                i = j
            elif raw.startswith("$((", i):
                j = _scan_paren(raw, i)
                if raw[j - 2:j] == "))":
                    value = self.arith(raw[i + 3:j - 2], here)
                    out.append((str(value), not in_dq))
                else:
                    self.warn(here, f"command substitution {raw[i:j]} not evaluated; kept as text")
                    out.append((raw[i:j], False))
                i = j
            elif raw.startswith("$(", i):
                j = _scan_paren(raw, i)
                self.warn(here, f"command substitution {raw[i:j]} not evaluated; kept as text")
                out.append((raw[i:j], False))
                i = j
            elif raw.startswith("${", i):
                j = _scan_brace(raw, i)
                out += self.brace_expansion(raw[i + 2:j - 1], raw[i:j], here, in_dq)
                i = j
            elif c == "$" and i + 1 < len(raw) and (raw[i + 1].isalnum() or raw[i + 1] in "_@*#?$!-"):
                if raw[i + 1].isdigit() or not (raw[i + 1].isalpha() or raw[i + 1] == "_"):
                    name, j = raw[i + 1], i + 2
                else:
                    m = _NAME.match(raw, i + 1)
                    name, j = m.group(0), m.end()
                out += self.value_pieces(name, None, self.lookup(name), raw[i:j], here, in_dq, warn_unset=True)
                i = j
            else:
                out.append((c, split_literals and not in_dq))
                i += 1
        return out

    def value_pieces(self, name, index, value, text, line, in_dq, warn_unset) -> list:
        if value is None and self._templating and _NAME.fullmatch(name or "") and index is None:
            return [(f"\x00{name}\x00", False)]
        if value is None:
            if warn_unset:
                what = "positional parameter" if name.isdigit() else "variable"
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
        return [(value, not in_dq)]

    def brace_expansion(self, body: str, text: str, line: int, in_dq: bool) -> list:
        if body.startswith("#") and len(body) > 1:  # ${#X} / ${#X[@]}
            m = _PARAM.fullmatch(body[1:])
            if m:
                value = self.lookup(m.group(1))
                if isinstance(value, list) and m.group(2) in ("@", "*"):
                    return [(str(len(value)), not in_dq)]
                if isinstance(value, list):
                    value = value[0] if value else ""
                return [(str(len(value or "")), not in_dq)]
        if body.startswith("!"):
            m = _PARAM.fullmatch(body[1:])
            if m:
                target = self.lookup(m.group(1))
                target = target[0] if isinstance(target, list) and target else target
                value = self.lookup(target) if isinstance(target, str) and target else None
                return self.value_pieces(target or "", None, value, text, line, in_dq, warn_unset=True)
        m = _PARAM.match(body)
        if not m:
            self.warn(line, f"{text} not understood; kept as text")
            return [(text, False)]
        name, index = m.group(1), m.group(2)
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
                        new = self.join(self.pieces(word, line, True))
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
        m = re.fullmatch(r":\s*(-?\d+)(?::\s*(-?\d+))?", op)
        if m:
            off = int(m.group(1))
            off = max(len(value) + off, 0) if off < 0 else off
            if m.group(2) is None:
                return value[off:]
            ln = int(m.group(2))
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
            self.warn(line, f"arithmetic $(( {expr.strip()} )) not evaluated: {e}")
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
        return self.test(args, line, double=True)

    def test(self, args: list[tuple[str, bool]], line: int, double: bool):
        """Evaluate test / [ ] / [[ ]] arguments. Returns True, False, or None (unknown)."""
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
    def as_launch(self, fields: list[str], temp_env: dict, line: int) -> _Launch | None:
        name = os.path.basename(fields[0])
        rest = fields[1:]
        if name == "torchrun":
            kind, priority = "torchrun", 2
        elif re.fullmatch(r"python(\d+(\.\d+)?)?", name):
            python_opts, k = [], 0
            while k < len(rest) and rest[k].startswith("-"):
                opt = rest[k]
                if opt in ("-c", "-"):
                    return None
                if opt == "-m":
                    module = rest[k + 1] if k + 1 < len(rest) else ""
                    if module not in ("torch.distributed.launch", "torch.distributed.run"):
                        return None
                    kind, priority, rest = module, 2, rest[k + 2:]
                    break
                python_opts.append(opt)
                if opt in ("-W", "-X") and k + 1 < len(rest):
                    python_opts.append(rest[k + 1])
                    k += 1
                k += 1
            else:
                if k >= len(rest):
                    return None
                return _Launch(1, self.make_launch("python", python_opts, rest[k], rest[k + 1:],
                                                   temp_env, line))
        else:
            return None
        k, launcher_args = 0, []
        while k < len(rest) and rest[k].startswith("-"):
            opt = rest[k]
            launcher_args.append(opt)
            key = opt.lstrip("-").replace("-", "_")
            if "=" not in opt and key not in _BOOLEAN_LAUNCHER_FLAGS and k + 1 < len(rest):
                launcher_args.append(rest[k + 1])
                k += 1
            k += 1
        if k >= len(rest):
            self.warn(line, f"{kind} without a script to run; not taken as the launch line")
            return None
        return _Launch(priority, self.make_launch(kind, launcher_args, rest[k], rest[k + 1:], temp_env, line))

    def make_launch(self, kind, launcher_args, entry, argv, temp_env, line) -> LaunchScript:
        opts: dict[str, str] = {}
        k = 0
        while k < len(launcher_args):
            opt = launcher_args[k]
            key, eq, value = opt.lstrip("-").partition("=")
            key = key.replace("-", "_")
            if not eq and k + 1 < len(launcher_args) and key not in _BOOLEAN_LAUNCHER_FLAGS:
                value = launcher_args[k + 1]
                k += 1
            opts[key] = value
            k += 1
        master_addr, master_port = opts.get("master_addr"), opts.get("master_port")
        if "rdzv_endpoint" in opts and ":" in opts["rdzv_endpoint"]:
            host, _, port = opts["rdzv_endpoint"].rpartition(":")
            master_addr, master_port = master_addr or host, master_port or port
        exports, export_lines, inherited = {}, {}, {}
        for n, export_line in self.exported.items():
            value = self.vars.get(n)
            if isinstance(value, str):
                exports[n], export_lines[n] = value, export_line
                if n in self.templates:
                    inherited[n] = self.templates[n]
        for n, value in temp_env.items():
            exports[n], export_lines[n] = value, line
        return LaunchScript(
            path=self.path, entry=entry, entry_line=line, argv=list(argv), launcher=kind,
            launcher_args=list(launcher_args), nproc_per_node=opts.get("nproc_per_node"),
            nnodes=opts.get("nnodes"), node_rank=opts.get("node_rank"),
            master_addr=master_addr, master_port=master_port,
            exports=exports, export_lines=export_lines, export_templates=inherited)


def _opaque_chunks(text: str) -> list[str]:
    """Split text into single blanks and runs; unevaluated $(...) / `...` stay whole."""
    out, i, buf = [], 0, []
    while i < len(text):
        c = text[i]
        j = None
        try:
            if text.startswith("$(", i):
                j = _scan_paren(text, i)
            elif c == "`":
                j = _scan_backtick(text, i)
        except _Unterminated:
            j = None
        if j is not None:
            buf.append(text[i:j])
            i = j
        elif c in " \t\n":
            if buf:
                out.append("".join(buf))
                buf = []
            out.append(c)
            i += 1
        else:
            buf.append(c)
            i += 1
    if buf:
        out.append("".join(buf))
    return out


def _ansi_c(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(_ANSI_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def read_launch_script(text: str, script_args: Sequence[str] = (), path: str = "<script>") -> LaunchScript:
    """Read a bash launch script without executing it; see the module docstring."""
    lexer = _Lexer(text, path)
    tokens = lexer.tokenize()
    nodes = _Parser(tokens, path).parse_program()
    shell = _Shell(path, script_args)
    for line in lexer.skipped_heredocs:
        shell.warn(line, "here-document skipped (its text is not read)")
    try:
        shell.run_list(nodes)
    except _Exit:
        pass
    if not shell.launches:
        skipped = sorted({w.line for w in shell.warnings if "not evaluated" in w.message})
        hint = f" (lines not evaluated: {', '.join(map(str, skipped))})" if skipped else ""
        raise ShellReadError(
            f"{path}: no launch line of torchrun, python -m torch.distributed.launch|run or "
            f"python SCRIPT.py was found on the path the script takes{hint}; "
            f"pass the script that starts training, or give the flags directly")
    best = max(range(len(shell.launches)), key=lambda k: (shell.launches[k].priority, k))
    chosen = shell.launches[best].result
    for k, launch in enumerate(shell.launches):
        if k != best:
            shell.warn(launch.result.entry_line,
                       f"another launch ({launch.result.launcher} {launch.result.entry}) ignored; "
                       f"line {chosen.entry_line} is taken as the training launch")
    chosen.warnings = sorted(shell.warnings, key=lambda w: w.line)
    return chosen
