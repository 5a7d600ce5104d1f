"""`sed "s/A/B/" TEMPLATE | sed "s/C/D/" > OUT`: a file the script writes from a template in its repository.

Megatron-DeepSpeed's examples build their DeepSpeed JSON this way (ds_config_gpt_TEMPLATE.json with GBSIZE,
MBSIZE, ZERO_STAGE ... replaced). Only substitution commands are understood (`s` with any delimiter, the `g`
flag, `&` and `\\1`..`\\9` in the replacement, several `-e`); anything else leaves the output unknown.
The template is read from disk: a relative path is looked for in the directory convert_args runs from, then
beside the script and in the folders above it (a script in scripts/abci/ of a repository names
examples_deepspeed/rebase/TEMPLATE from the repository's root).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass


class SedNotUnderstood(ValueError):
    pass


@dataclass(frozen=True)
class Substitution:
    pattern: re.Pattern
    replacement: str
    every: bool

    def apply(self, line: str) -> str:
        return self.pattern.sub(self._expand, line, count=0 if self.every else 1)

    def _expand(self, m: re.Match) -> str:
        out, i, r = [], 0, self.replacement
        while i < len(r):
            if r[i] == "\\" and i + 1 < len(r):
                nxt = r[i + 1]
                out.append((m.group(int(nxt)) or "") if nxt.isdigit() else {"n": "\n", "t": "\t"}.get(nxt, nxt))
                i += 2
            elif r[i] == "&":
                out.append(m.group(0))
                i += 1
            else:
                out.append(r[i])
                i += 1
        return "".join(out)


def _split_on(text: str, delimiter: str) -> list[str]:
    """`A/B/g` split on unescaped delimiters (an escaped delimiter stands for itself)."""
    parts, cur, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            cur.append(text[i + 1] if text[i + 1] == delimiter else text[i:i + 2])
            i += 2
        elif text[i] == delimiter:
            parts.append("".join(cur))
            cur, i = [], i + 1
        else:
            cur.append(text[i])
            i += 1
    return parts + ["".join(cur)]


def _basic_regex(pattern: str) -> str:
    """A POSIX basic regular expression as Python's: \\( \\) \\{ \\} \\+ \\? \\| are the operators; ( ) { } + ? |
    stand for themselves."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(nxt if nxt in "(){}+?|" else "\\" + nxt)
            i += 2
            continue
        out.append("\\" + c if c in "(){}+?|" else c)
        i += 1
    return "".join(out)


def parse_substitution(expression: str) -> Substitution:
    expression = expression.strip()
    if len(expression) < 4 or expression[0] != "s" or expression[1].isalnum() or expression[1] in " \\\n":
        raise SedNotUnderstood(f"sed command {expression!r} (only s/PATTERN/REPLACEMENT/[g] is read)")
    parts = _split_on(expression[2:], expression[1])
    if len(parts) != 3 or parts[2] not in ("", "g"):
        raise SedNotUnderstood(f"sed command {expression!r} (only s/PATTERN/REPLACEMENT/[g] is read)")
    try:
        pattern = re.compile(_basic_regex(parts[0]))
    except re.error as exc:
        raise SedNotUnderstood(f"sed pattern {parts[0]!r}: {exc}") from None
    return Substitution(pattern, parts[1], parts[2] == "g")


def parse_sed(args: list[str]) -> tuple[list[Substitution], list[str]]:
    """`sed [-e EXPR]... [EXPR] [FILE...]` -> (substitutions, input files)."""
    expressions, files, k = [], [], 0
    while k < len(args):
        a = args[k]
        if a in ("-e", "--expression") and k + 1 < len(args):
            expressions.append(args[k + 1])
            k += 2
            continue
        if a.startswith("--expression="):
            expressions.append(a.partition("=")[2])
        elif a.startswith("-") and a != "-":
            raise SedNotUnderstood(f"sed option {a} (only s/PATTERN/REPLACEMENT/[g] is read)")
        elif not expressions:
            expressions.append(a)
        else:
            files.append(a)
        k += 1
    commands = [part for e in expressions for part in re.split(r"\s*;\s*|\n", e) if part.strip()]
    if not commands:
        raise SedNotUnderstood("sed without a command")
    return [parse_substitution(c) for c in commands], files


def run_sed(substitutions: list[Substitution], text: str) -> str:
    lines = text.split("\n")
    for s in substitutions:
        lines = [s.apply(line) for line in lines]
    return "\n".join(lines)


def find_template(path: str, script: str) -> str | None:
    """`path` as the script's run would find it: absolute, or relative to this directory, the script's own
    folder or a folder above it."""
    if os.path.isabs(path):
        return path if os.path.isfile(path) else None
    if os.path.isfile(path):
        return path
    folder = os.path.dirname(os.path.abspath(script))
    while True:
        candidate = os.path.join(folder, path)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
