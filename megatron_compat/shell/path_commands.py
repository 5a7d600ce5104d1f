"""Command substitutions that only compute a path: `$(dirname "$0")`, `$(cd "$(dirname "$0")" && pwd)`,
`` `pwd` ``, `$(realpath ../..)`, `$(basename $X .sh)`. Scripts use them to find their own folder and the
checkouts beside it; the reader computes them instead of keeping their text, which would end up in a data path.

The script's own path is the one convert_args was given; `pwd` is the folder the script starts in, taken to be
the folder convert_args runs in (said in a warning), and follows the script's `cd`s."""
from __future__ import annotations

import os

from .parse import AndOr, Simple
from .result import ShellReadError

_COMMANDS = {"cd", "pwd", "dirname", "basename", "realpath", "readlink"}


def path_of_commands(shell, text: str, line: int) -> str | None:
    """What `$(text)` prints when it is made only of the commands above joined by `&&` / `;`; None otherwise."""
    if not text.strip() or not set(text.split()) & _COMMANDS:
        return None
    commands = _simple_commands(shell, text, line)
    if not commands:
        return None
    cwd, printed, assumed = shell.cwd, None, shell.cwd_assumed
    for cmd in commands:
        fields = [f for w in cmd.words for f in shell.expand_word(w)] if all(hasattr(w, "raw") for w in cmd.words) \
            else []
        if not fields or fields[0] not in _COMMANDS:
            return None
        name, options, args = fields[0], [a for a in fields[1:] if a.startswith("-")], \
            [a for a in fields[1:] if not a.startswith("-")]
        if name == "cd" and len(args) == 1:
            cwd, assumed = os.path.normpath(os.path.join(cwd, args[0])), assumed and not os.path.isabs(args[0])
        elif name == "pwd" and not args:
            printed = cwd
            if assumed:
                shell.start_folder_reads.append("pwd")
                shell.warn(line, f"`pwd` read as {cwd}, from the folder convert_args runs in: run it from the folder "
                                 f"the script is launched from")
        elif name == "dirname" and len(args) == 1:
            printed = dirname(args[0])
        elif name == "basename" and 1 <= len(args) <= 2:
            printed = basename(*args)
        elif (name == "realpath" or (name == "readlink" and "-f" in options)) and len(args) == 1:
            printed = os.path.normpath(os.path.join(cwd, args[0]))
        else:
            return None
    return printed


def _simple_commands(shell, text: str, line: int) -> list[Simple] | None:
    """The simple commands of `text` when it is a list of them joined by `&&` or `;` (no pipes, no `||`)."""
    try:
        nodes = shell.parse_string(text, line)
    except ShellReadError:
        return None
    out = []
    for node in nodes:
        parts = [node.first] + [p for op, p in node.rest if op == "&&"] if isinstance(node, AndOr) else [node]
        if isinstance(node, AndOr) and len(parts) != len(node.rest) + 1:
            return None
        if not all(isinstance(p, Simple) for p in parts):
            return None
        out += parts
    return out


def dirname(path: str) -> str:
    """As coreutils' dirname: trailing slashes dropped, "." for a bare name, "/" for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    head = stripped.rpartition("/")[0].rstrip("/")
    if "/" not in stripped:
        return "."
    return head or "/"


def basename(path: str, suffix: str = "") -> str:
    stripped = path.rstrip("/") or ("/" if path else "")
    name = stripped.rpartition("/")[2] or stripped
    if suffix and name.endswith(suffix) and name != suffix:
        name = name[:-len(suffix)]
    return name
