"""Word expansion as bash does it: quotes, parameters and their operators, command and arithmetic substitution,
field splitting. A mixin of the pretend Shell (evaluate.py), which supplies lookup, arith and warn."""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from .lex import (
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
from .runtime import BASH_RUN_TIME, holds_command_output
from .text_commands import output_of_commands


class _FieldBreak:  # field boundary between "${X[@]}" elements
    pass


class _Mark:  # "a field exists here even if empty" (quoted text)
    pass


class _AtExpansion:  # a quoted "${X[@]}"/"$@" is inside: its elements bring their own marks
    pass


_BREAK, _MARK, _AT = _FieldBreak(), _Mark(), _AtExpansion()


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



NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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


class Expansion:
    """Expanding words into fields (a mixin of Shell)."""

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
                out.append(self._substitution(raw[i:j], raw[i + 1:j - 1], here, in_dq))
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
                out.append(self._substitution(raw[i:j], raw[i + 2:j - 1], here, in_dq))
                i = j
            elif raw.startswith("${", i):
                j = scan_brace(raw, i)
                out += self.brace_expansion(raw[i + 2:j - 1], raw[i:j], here, in_dq)
                i = j
            elif c == "$" and i + 1 < len(raw) and (raw[i + 1].isalnum() or raw[i + 1] in "_@*#?$!-"):
                if raw[i + 1].isdigit() or not (raw[i + 1].isalpha() or raw[i + 1] == "_"):
                    name, j = raw[i + 1], i + 2
                else:
                    m = NAME.match(raw, i + 1)
                    name, j = m.group(0), m.end()
                self._note_assumed_pwd(name, here)
                out += self.value_pieces(name, None, self.lookup(name), raw[i:j], here, in_dq, warn_unset=True)
                i = j
            else:
                out.append((c, split_literals and not in_dq))
                i += 1
        return out

    def _substitution(self, text: str, commands: str, line: int, in_dq: bool) -> tuple:
        """The piece `$(commands)` / `` `commands` `` gives: their output when it is computed here
        (text_commands.py), else the substitution's own text, kept whole, with a warning."""
        output = output_of_commands(self, commands, line)
        if output is None:
            self.warn(line, f"command substitution {text} not evaluated; kept as text")
            return text, False
        return output, not in_dq

    def value_pieces(self, name, index, value, text, line, in_dq, warn_unset) -> list:
        if value is None and self._templating and NAME.fullmatch(name or "") and index is None:
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
            if in_dq and index == "@":  # "${UNSET[@]}" is no field at all, as "$@" without arguments
                return [_AT]
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
                if isinstance(target, str) and NAME.fullmatch(target):
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
                        if name.isdigit() or not NAME.fullmatch(name):
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
