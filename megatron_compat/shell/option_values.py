"""Which variable the script writes after each option of the training command, and its value at the launch.

`--tokenizer-name-or-path ${TOKENIZER_PATH}` with TOKENIZER_PATH="your tokenizer path" reaches the program as
three words, and `--load $1` with no argument as none: bash has lost what the script meant. The text the option
came from (its own word, the command line, or the assignment that built an ARGS string) still says which
variable follows it; the flag layer (megatron_compat/script_values.py) decides what that means for each flag.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .evaluate import Shell
from .lost_values import _value_of, describe_empty, scopes


@dataclass(frozen=True)
class OptionVariable:
    option: str            # the option as written, e.g. "--load"
    name: str              # the variable written right after it: "CKPT_LOAD_DIR", or "1" for $1
    value: str | None      # its value at the launch line; None when nothing sets it
    because: str           # why it is empty, when it is: "$DATA_BLEND is not set by the script"
    bare: bool = True      # written $NAME / ${NAME}, not ${NAME:-default} (or another operator) that gives a value
    argument: str = ""     # the script's positional argument it is, or is set from, when empty: "1" for $1 or X=$1


# an option, then (after `=`, blanks or a line continuation, and maybe a quote) the variable written as its value
_OPTION_THEN_VARIABLE = re.compile(r"""(?<![\w-])(-[^\s=$"'\\]+)(?:=|[ \t]+|[ \t]*\\\n[ \t]*)["']?\$(\{?)"""
                                   r"""([A-Za-z_]\w*|[0-9]+)(\}?)""")


def _variables_after(text: str) -> dict[str, list[str]]:
    """{option: the variables written after it in `text`, in order}: one pass, however many options ask. A name
    written ${NAME:-default} (any operator inside the braces) is marked with a trailing "?"."""
    found: dict[str, list[str]] = {}
    for option, brace, name, close in _OPTION_THEN_VARIABLE.findall(text):
        found.setdefault(option, []).append(name + ("?" if brace and not close else ""))
    return found


class _Texts:
    """The texts an option's variable is looked for in, each indexed once: the command line, and per shell scope
    its assignments and eval / bash -c strings."""

    def __init__(self, shell: Shell, argv: list[str]):
        self.command = _variables_after(shell.words.text(argv))
        self.scopes = []
        for scope in scopes(shell):
            merged: dict[str, set] = {}
            for raw in list(scope.raw_values.values()) + scope.source_texts:
                for option, names in _variables_after(raw).items():
                    merged.setdefault(option, set()).update(names)
            self.scopes.append(merged)


def _variable_after(shell: Shell, argv: list[str], k: int, option: str, texts: _Texts) -> str | None:
    """The variable written after `option`: in its own word, on the command line, or in the one assignment (or
    eval / bash -c string) of this shell or the shells that started it that writes the option so."""
    origin = shell.words.at(argv, k)[0] or ""
    found = _variables_after(origin).get(option) or texts.command.get(option)
    if found:
        return found[0]
    for merged in texts.scopes:
        names = sorted(merged.get(option, ()))
        if len(names) == 1:
            return names[0]
    return None


def option_variables(shell: Shell, argv: list[str]) -> dict[str, OptionVariable]:
    """{option: the variable the script writes after it} for the options of the entry's arguments."""
    out: dict[str, OptionVariable] = {}
    texts = _Texts(shell, argv)
    for k, token in enumerate(argv):
        if not token.startswith("--") or len(token) < 3:
            continue
        option = token.partition("=")[0]
        name = _variable_after(shell, argv, k, option, texts)
        if name is None:
            continue
        bare, name = not name.endswith("?"), name.rstrip("?")
        value = shell.lookup(name) if name.isdigit() else _value_of(shell, name)
        empty = not isinstance(value, str) or not value.strip()  # blanks alone: bash's splitting leaves nothing
        argument = _argument_behind(shell, name) if empty else ""
        out[option] = OptionVariable(option, name, value if isinstance(value, str) else None,
                                     _why_empty(shell, name, argument) if empty else "", bare, argument)
    return out


_POSITIONAL = re.compile(r"\$\{?([0-9]+)")


def _raw_assignment(shell: Shell, name: str) -> str:
    return next((sc.raw_values[name] for sc in scopes(shell) if name in sc.raw_values), "")


def _argument_behind(shell: Shell, name: str) -> str:
    """The script's positional argument an empty variable is ("1" for $1) or is set from (X=$1), else ""."""
    if name.isdigit():
        return name
    positional = _POSITIONAL.findall(_raw_assignment(shell, name))
    return positional[0] if positional else ""


def _why_empty(shell: Shell, name: str, argument: str) -> str:
    if name.isdigit():
        return f"${name} is the script's argument {name}, which was not given"
    if argument:
        raw = _raw_assignment(shell, name).strip()
        return f"${name} is set from the script's argument {argument} ({raw}), which was not given"
    return describe_empty(shell, name).because
