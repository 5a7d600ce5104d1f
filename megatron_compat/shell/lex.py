"""Lexing bash: scanners for quoted and nested constructs, and the token stream the parser reads."""
from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass

from .placeholders import ANGLE_VALUE
from .result import ShellReadError

_ANSI_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a",
                 "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "v": "\v"}

# --------------------------------------------------------------------------- scanning
# Each scanner takes the index of an opening construct and returns the index just
# after its end. They are shared by the lexer (to find word ends) and the expander.

class Unterminated(Exception):
    def __init__(self, what: str, start: int):
        super().__init__(what)
        self.what, self.start = what, start


def scan_squote(s: str, i: int) -> int:
    j = s.find("'", i + 1)
    if j < 0:
        raise Unterminated("single quote", i)
    return j + 1


def scan_ansi(s: str, i: int) -> int:  # $'...'
    j = i + 2
    while j < len(s):
        if s[j] == "\\":
            j += 2
        elif s[j] == "'":
            return j + 1
        else:
            j += 1
    raise Unterminated("$'...' quote", i)


def scan_backtick(s: str, i: int) -> int:
    j = i + 1
    while j < len(s):
        if s[j] == "\\":
            j += 2
        elif s[j] == "`":
            return j + 1
        else:
            j += 1
    raise Unterminated("backtick", i)


def scan_dquote(s: str, i: int) -> int:
    j = i + 1
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
        elif c == '"':
            return j + 1
        elif s.startswith("$(", j):
            j = scan_paren(s, j)
        elif s.startswith("${", j):
            j = scan_brace(s, j)
        elif c == "`":
            j = scan_backtick(s, j)
        else:
            j += 1
    raise Unterminated("double quote", i)


def scan_nested(s: str, i: int, open_: str, close: str, what: str) -> int:
    depth, j = 0, i + 1  # s[i] is '$'
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == "'":
            j = scan_squote(s, j)
            continue
        if c == '"':
            j = scan_dquote(s, j)
            continue
        if c == "`":
            j = scan_backtick(s, j)
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise Unterminated(what, i)


def scan_paren(s: str, i: int) -> int:  # $( ... ) and $(( ... ))
    return scan_nested(s, i, "(", ")", "$( ... )")


def scan_brace(s: str, i: int) -> int:  # ${ ... }
    return scan_nested(s, i, "{", "}", "${ ... }")



# --------------------------------------------------------------------------- lexer

@dataclass
class Word:
    raw: str
    line: int
    heredoc: HereDoc | None = None  # the delimiter word of `<<EOF`: the document's text


@dataclass
class HereDoc:
    """The text of a here-document, and whether it is expanded (an unquoted delimiter) or taken literally."""
    body: str
    expand: bool
    line: int


@dataclass
class Op:
    text: str
    line: int


@dataclass
class ArrayAssign:
    name: str
    append: bool
    elements: list[Word]
    line: int


@dataclass
class ArithCmd:
    expr: str
    line: int


_META = set(" \t\n;&|()<>")
_OPERATORS = sorted(
    [";;&", ";;", ";&", "&&", "||", "|&", "&>>", "&>", ">>", ">&", ">|", "<<<", "<<-", "<<",
     "<&", "<>", ";", "&", "|", "(", ")", "<", ">"], key=len, reverse=True)
REDIRECTS = {"&>>", "&>", ">>", ">&", ">|", "<<<", "<<-", "<<", "<&", "<>", "<", ">"}
_ASSIGN_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?)=([^\s'\"`(]*)$")  # NAME= and what precedes a `<`
_COMMAND_START_OPS = {";", "\n", "&&", "||", "|", "&", "(", "|&"}
_COMMAND_START_WORDS = {"then", "do", "else", "elif", "if", "while", "until", "{", "!"}


class Lexer:
    def __init__(self, text: str, path: str):
        self.s, self.path = text, path
        self.i = 0
        self.tokens: list = []
        self.heredocs: list[tuple[str, bool, int, Word]] = []
        self.skipped_heredocs: list[int] = []
        # NAME=<...> and --flag <...> read as quoted: (line, NAME or --flag, value)
        self.placeholders: list[tuple[int, str, str]] = []
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
                    self.tokens.append(Op("\n", self.line_at(self.i)))
                    self.i += 1
                    self._skip_heredoc_bodies()
                elif s.startswith("((", self.i) and self._at_command_start():
                    start = self.i
                    end = self._scan_arith_cmd()
                    self.tokens.append(ArithCmd(s[start + 2:end - 2], self.line_at(start)))
                    self.i = end
                elif c == "<" and self._flag_placeholder():
                    continue
                elif c in _META:
                    self._operator("")
                else:
                    self._word_or_assignment()
        except Unterminated as e:
            raise self.error(f"unterminated {e.what} (opened here)", e.start) from None
        return self.tokens

    def _at_command_start(self) -> bool:
        if not self.tokens:
            return True
        t = self.tokens[-1]
        return (isinstance(t, Op) and t.text in _COMMAND_START_OPS) or (
            isinstance(t, Word) and t.raw in _COMMAND_START_WORDS)

    def _flag_placeholder(self) -> bool:
        """`--save <PATH TO CHECKPOINTS>` (an example's placeholder after a flag, which bash would take for
        redirections): read as the quoted word '<PATH TO CHECKPOINTS>' and noted. True when it was one."""
        last = self.tokens[-1] if self.tokens else None
        if not (isinstance(last, Word) and last.raw.startswith("-") and len(last.raw) > 1):
            return False
        m = ANGLE_VALUE.match(self.s, self.i)
        if not m or " " not in m.group(0):
            return False
        self.placeholders.append((self.line_at(self.i), last.raw, m.group(0)))
        self.tokens.append(Word(f"'{m.group(0)}'", self.line_at(self.i)))
        self.i = m.end()
        return True

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
        raise Unterminated("(( ... ))", self.i)

    def _operator(self, io_number: str) -> None:
        start = self.i
        op = next(o for o in _OPERATORS if self.s.startswith(o, self.i))
        self.i += len(op)
        self.tokens.append(Op(io_number + op, self.line_at(start)))
        if op in ("<<", "<<-"):
            while self.i < len(self.s) and self.s[self.i] in " \t":
                self.i += 1
            w0 = self.i
            delim = self._read_word()
            word = Word(delim, self.line_at(w0))
            self.tokens.append(word)
            self.heredocs.append((re.sub(r"[\"'\\]", "", delim), op == "<<-", self.line_at(start), word))

    def _skip_heredoc_bodies(self) -> None:
        """Read past the bodies of the here-documents opened on the line just ended, keeping each body on its
        delimiter word (the evaluator records the ones `cat` writes to a file)."""
        s = self.s
        for delim, strip_tabs, line, word in self.heredocs:
            self.skipped_heredocs.append(line)
            body = []
            while self.i < len(s):
                end = s.find("\n", self.i)
                end = len(s) if end < 0 else end
                body_line = s[self.i:end]
                self.i = min(end + 1, len(s))
                if (body_line.lstrip("\t") if strip_tabs else body_line) == delim:
                    break
                body.append(body_line.lstrip("\t") if strip_tabs else body_line)
            quoted = any(q in word.raw for q in "'\"\\")
            word.heredoc = HereDoc("".join(b + "\n" for b in body), expand=not quoted, line=line + 1)
        self.heredocs = []

    def _word_or_assignment(self) -> None:
        start = self.i
        raw = self._read_word()
        line = self.line_at(start)
        if self.i < len(self.s) and self.s[self.i] in "<>" and raw.isdigit():
            self._operator(raw)
            return
        m = _ASSIGN_PREFIX.match(raw)
        angle = ANGLE_VALUE.match(self.s, self.i) if m and self._at_command_start() else None
        if angle:  # NAME=<Specify path>: an example's placeholder, which bash would take for redirections
            self.i = angle.end()
            self.placeholders.append((line, m.group(1), m.group(3) + angle.group(0)))
            self.tokens.append(Word(f"{raw}'{angle.group(0)}'", line))
            return
        if m and not m.group(3) and self.s.startswith("(", self.i):
            self.i += 1
            self.tokens.append(ArrayAssign(m.group(1), bool(m.group(2)), self._read_array(start), line))
            return
        self.tokens.append(Word(raw, line))

    def _read_array(self, start: int) -> list[Word]:
        s, words = self.s, []
        while True:
            if self.i >= len(s):
                raise Unterminated("array ( ... )", start)
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
                words.append(Word(self._read_word(), self.line_at(w0)))

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
                j = scan_squote(s, self.i)
            elif c == '"':
                j = scan_dquote(s, self.i)
            elif c == "`":
                j = scan_backtick(s, self.i)
            elif s.startswith("$'", self.i):
                j = scan_ansi(s, self.i)
            elif s.startswith('$"', self.i):
                self.i += 1  # $"..." is a translated string: treat as "..."
                continue
            elif s.startswith("$(", self.i):
                j = scan_paren(s, self.i)
            elif s.startswith("${", self.i):
                j = scan_brace(s, self.i)
            else:
                j = self.i + 1
            out.append(s[self.i:j])
            self.i = j
        return "".join(out)




def opaque_chunks(text: str) -> list[str]:
    """Split text into single blanks and runs; unevaluated $(...) / `...` stay whole."""
    out, i, buf = [], 0, []
    while i < len(text):
        c = text[i]
        j = None
        try:
            if text.startswith("$(", i):
                j = scan_paren(text, i)
            elif c == "`":
                j = scan_backtick(text, i)
        except Unterminated:
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


def ansi_c(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(_ANSI_ESCAPES.get(body[i + 1], "\\" + body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)
