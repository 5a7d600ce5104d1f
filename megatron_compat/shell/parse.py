"""Parsing the token stream into a small tree: simple commands, pipelines, and-or lists, if, case, for loops over
words, groups, functions."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .lex import REDIRECTS, ArithCmd, ArrayAssign, Op, Word
from .result import ShellReadError

# --------------------------------------------------------------------------- parser

CASE_ENDS = (";;", ";&", ";;&")

@dataclass
class Simple:
    words: list          # Word | ArrayAssign
    line: int
    redirects: list = field(default_factory=list)  # (operator, target Word): `> FILE`, `<<EOF` (Word.heredoc)


@dataclass
class Pipeline:
    commands: list
    negate: bool
    line: int


@dataclass
class AndOr:
    first: object
    rest: list           # [(op, pipeline)]


@dataclass
class If:
    clauses: list        # [(condition nodes, body nodes)]
    else_body: list | None
    line: int


@dataclass
class Case:
    word: Word
    clauses: list        # [(pattern Words, body nodes, terminator ';;' | ';&' | ';;&')], in order
    line: int


@dataclass
class Group:
    body: list
    line: int


@dataclass
class FuncDef:
    name: str
    body: list
    line: int


@dataclass
class For:
    name: str
    words: list | None   # the Words after `in`; None for `for NAME; do` (the positional parameters)
    body: list
    line: int


@dataclass
class While:
    condition: list      # the commands before `do`
    body: list
    until: bool          # `until`: runs while the condition fails
    line: int


@dataclass
class Skipped:
    what: str
    line: int


class Parser:
    def __init__(self, tokens: list, path: str):
        self.toks, self.k, self.path = tokens, 0, path

    # helpers
    def peek(self, ahead: int = 0):
        k = self.k + ahead
        return self.toks[k] if k < len(self.toks) else None

    def is_word(self, tok, *raws: str) -> bool:
        return isinstance(tok, Word) and (not raws or tok.raw in raws)

    def is_op(self, tok, *texts: str) -> bool:
        return isinstance(tok, Op) and (not texts or tok.text in texts)

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
                    stop_paren and self.is_op(tok, ")")) or self.is_op(tok, *CASE_ENDS):
                return nodes
            nodes.append(self.parse_and_or())

    def parse_and_or(self):
        first, rest = self.parse_pipeline(), []
        while self.is_op(self.peek(), "&&", "||"):
            op = self.peek().text
            self.k += 1
            self.skip_newlines()
            rest.append((op, self.parse_pipeline()))
        return AndOr(first, rest) if rest else first

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
        return Pipeline(commands, negate, getattr(tok, "line", 0))

    def parse_command(self):
        tok = self.peek()
        if tok is None:
            raise self.error("unexpected end of file")
        if self.is_word(tok, "if"):
            node = self.parse_if()
        elif self.is_word(tok, "for") and self._for_in_list():
            node = self.parse_for()
        elif self.is_word(tok, "while", "until"):
            node = self.parse_while()
        elif self.is_word(tok, "for", "select"):
            node = self.skip_block(tok, opener=("do",), closer="done", what=f"'{tok.raw}' loop")
        elif self.is_word(tok, "case"):
            node = self.parse_case()
        elif self.is_word(tok, "{"):
            self.k += 1
            body = self.parse_list({"}"}, stop_paren=False)
            self.expect_word("}")
            node = Group(body, tok.line)
        elif self.is_op(tok, "("):
            self.k += 1
            body = self.parse_list(set(), stop_paren=True)
            if not self.is_op(self.peek(), ")"):
                raise self.error("expected ')' to close the subshell opened on line %d" % tok.line)
            self.k += 1
            node = Group(body, tok.line)
        elif self.is_word(tok, "function") or (
                self.is_word(tok) and self.is_op(self.peek(1), "(") and self.is_op(self.peek(2), ")")):
            node = self.parse_function()
        elif isinstance(tok, ArithCmd):
            self.k += 1
            node = tok
        elif self.is_word(tok, "then", "elif", "else", "fi", "do", "done", "esac", "}") or self.is_op(tok, ")"):
            raise self.error(f"unexpected '{getattr(tok, 'raw', ')')}'", tok)
        else:
            return self.parse_simple()
        self.skip_redirections()
        return node

    def skip_redirections(self, into: list | None = None) -> None:
        """Step over redirections; `into` collects them as (operator, target word)."""
        while isinstance(self.peek(), Op) and self.peek().text.lstrip("0123456789") in REDIRECTS:
            op = self.peek().text
            self.k += 1
            if self.is_word(self.peek()):
                if into is not None:
                    into.append((op, self.peek()))
                self.k += 1

    def parse_simple(self) -> Simple:
        words, line, redirects = [], self.peek().line, []
        if self.is_word(self.peek(), "[["):  # [[ ... ]] keeps &&, ||, <, >, ( ) as words
            while True:
                tok = self.peek()
                if tok is None or self.is_op(tok, "\n", ";"):
                    raise self.error("'[[' without a closing ']]'", tok)
                self.k += 1
                words.append(tok if isinstance(tok, Word) else Word(tok.text, tok.line))
                if self.is_word(tok, "]]"):
                    break
        while True:
            tok = self.peek()
            if isinstance(tok, (Word, ArrayAssign)):
                words.append(tok)
                self.k += 1
            elif isinstance(tok, Op) and tok.text.lstrip("0123456789") in REDIRECTS:
                self.skip_redirections(redirects)
            else:
                return Simple(words, line, redirects)

    def parse_if(self) -> If:
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
                return If(clauses, else_body, line)
            if self.is_word(tok, "fi"):
                return If(clauses, None, line)
            raise self.error(f"'if' on line {line} is not closed by 'fi'", tok)

    def _for_in_list(self) -> bool:
        """`for NAME [in WORDS]`: a loop over words, which the reader runs; `for ((...))` is not one."""
        nxt = self.toks[self.k + 1] if self.k + 1 < len(self.toks) else None
        return self.is_word(nxt) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", nxt.raw) is not None

    def parse_for(self) -> For:
        """for NAME [in WORD...] ; do LIST done (bash's separators: `;` or newlines before `do`)."""
        line = self.peek().line
        self.k += 1
        name = self.peek().raw
        self.k += 1
        self.skip_newlines()
        words = None
        if self.is_word(self.peek(), "in"):
            self.k += 1
            words = []
            while self.is_word(self.peek()):
                words.append(self.peek())
                self.k += 1
        if self.is_op(self.peek(), ";"):
            self.k += 1
        self.skip_newlines()
        self.expect_word("do")
        body = self.parse_list({"done"}, stop_paren=False)
        self.expect_word("done")
        return For(name, words, body, line)

    def parse_while(self) -> While:
        """while LIST; do LIST done, and until."""
        tok = self.peek()
        self.k += 1
        condition = self.parse_list({"do"}, stop_paren=False)
        self.expect_word("do")
        body = self.parse_list({"done"}, stop_paren=False)
        self.expect_word("done")
        return While(condition, body, tok.raw == "until", tok.line)

    def parse_case(self) -> Case:
        """case WORD in [(]PATTERN[|PATTERN]...) LIST ;; ... esac (or ;& / ;;& after a LIST)."""
        line = self.peek().line
        self.k += 1
        word = self.peek()
        if not self.is_word(word):
            raise self.error(f"'case' on line {line} needs a word to match")
        self.k += 1
        self.skip_newlines()
        self.expect_word("in")
        clauses = []
        while True:
            self.skip_newlines()
            tok = self.peek()
            if tok is None:
                raise ShellReadError(f"{self.path}:{line}: 'case' is not closed by 'esac'")
            if self.is_word(tok, "esac"):
                self.k += 1
                return Case(word, clauses, line)
            if self.is_op(tok, "("):
                self.k += 1
            patterns = [self.case_pattern(line)]
            while self.is_op(self.peek(), "|"):
                self.k += 1
                patterns.append(self.case_pattern(line))
            if not self.is_op(self.peek(), ")"):
                raise self.error(f"a pattern of the 'case' on line {line} is not closed by ')'")
            self.k += 1
            body, end = self.parse_list({"esac"}, stop_paren=False), ";;"
            if self.is_op(self.peek(), *CASE_ENDS):
                end = self.peek().text
                self.k += 1
            clauses.append((patterns, body, end))

    def case_pattern(self, line: int) -> Word:
        tok = self.peek()
        if not self.is_word(tok):
            raise self.error(f"expected a pattern in the 'case' on line {line}")
        self.k += 1
        return tok

    def parse_function(self) -> FuncDef:
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
        return FuncDef(name, body, line)

    def skip_block(self, tok, opener, closer, what) -> Skipped:
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
                    return Skipped(what, tok.line)
