r"""Command substitutions that only reshape text or numbers the script already has, computed as bash would:

    KEY=$(echo $ARGUMENT | cut -f1 -d=)           an argument loop splitting --key=value
    FLAG=$(echo "$X" | tr '[:upper:]' '[:lower:]')
    DECAY=$(python3 -c "print(int($ITERS * 0.2))")  arithmetic bash cannot do (floats)
    TOKENS=$(echo "$BILLIONS*1000000000/1" | bc)     the same with bc (shell/bc.py)
    GBS=$(expr $NNODES \* 4)                          expr's integer arithmetic
    ARGS=$(printf " %q" "${CMD[@]}")                  printf's %s / %q / %d, to pass an array through bash -c
    HERE=$(python3 -c 'import os; print(os.getcwd())')
    EXTRA=$(if [ "$OFFLOAD" = true ]; then echo ',"offload": {...}'; fi)   control flow around echo

Anything else (a program whose output depends on the machine) stays unevaluated, as before."""
from __future__ import annotations

import ast
import operator
import re

from .bc import bc
from .parse import Pipeline, Simple
from .path_commands import path_of_commands
from .result import ShellReadError
from .runtime import SCHEDULER_VARIABLE, holds_command_output, scheduler_references
from .signals import Exit

_PYTHON = ("python", "python3")
_TEXT_PROGRAMS = ("echo", "printf", "python", "cut", "tr", "seq", "bc", "expr")
_PARAMETER = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*|[0-9])")
_LOOP_VARIABLE = re.compile(r"\bfor\s+([A-Za-z_]\w*)\s+in\b")
_GETCWD = {"import os; print(os.getcwd())", "import os;print(os.getcwd())"}


def output_of_commands(shell, text: str, line: int) -> str | None:
    """What `$(text)` prints (without its trailing newline), or None when it is not computed here."""
    path = path_of_commands(shell, text, line)
    if path is not None:
        return path
    if holds_command_output(text) or not _values_known(shell, text):  # $(echo $(hostname) | ...): run time
        return None
    stages = _pipeline_fields(shell, text, line)
    if not stages:
        out = _compound_output(shell, text, line)
        return None if out is None else out.rstrip("\n")
    out = _producer(shell, stages[0], line)
    for fields in stages[1:]:
        out = None if out is None else _filter(fields, out)
    return None if out is None else out.rstrip("\n")  # as $(...) drops the trailing newlines


def _values_known(shell, text: str) -> bool:
    """Every parameter the command reads has a value here that is not itself a run-time one (a scheduler's
    variable, a command's output kept as text): otherwise its output is known only when the job runs. A loop's
    own variable (`for i in 1 2; do echo $i; done`) is the command's."""
    own = set(_LOOP_VARIABLE.findall(text))
    for name in _PARAMETER.findall(text):
        if name in own:
            continue
        value = shell.lookup(name)
        values = value if isinstance(value, list) else [value]  # an array: each of its elements
        if not all(isinstance(v, str) and not holds_command_output(v) for v in values) \
                or SCHEDULER_VARIABLE.fullmatch(name) \
                or scheduler_references(shell.templates.get(name, "").replace("\x00", "$")):
            return False
    return True


def _pipeline_fields(shell, text: str, line: int) -> list[list[str]] | None:
    """The expanded fields of each command of a single pipeline of simple commands; None for anything else."""
    words = text.split(maxsplit=1)
    if not words or (not any(name in text for name in _TEXT_PROGRAMS) and
                     words[0] not in shell.functions):
        return None
    try:
        nodes = shell.parse_string(text, line)
    except ShellReadError:
        return None
    if len(nodes) != 1:
        return None
    node = nodes[0]
    commands = node.commands if isinstance(node, Pipeline) else [node]
    if not all(isinstance(c, Simple) and not c.redirects and all(hasattr(w, "raw") for w in c.words)
               for c in commands):
        return None
    return [[f for w in c.words for f in shell.expand_word(w)] for c in commands]


def _producer(shell, fields: list[str], line: int) -> str | None:
    if not fields:
        return None
    if fields[0] == "echo":
        args = fields[1:]
        newline = True
        while args and args[0] in ("-n", "-e", "-E", "-ne", "-en"):
            newline = newline and "n" not in args[0]
            args = args[1:]
        return " ".join(args) + ("\n" if newline else "")
    if fields[0] in _PYTHON and len(fields) == 3 and fields[1] == "-c":
        return _python_print(shell, fields[2], line)
    if fields[0] == "seq":
        return _seq(fields[1:])
    if fields[0] == "printf" and len(fields) > 1 and not fields[1].startswith("-"):
        return _printf(fields[1], fields[2:])
    if fields[0] == "expr":
        return _expr(fields[1:])
    if fields[0] in shell.functions:
        return _function_output(shell, shell.functions[fields[0]], fields[1:], line)
    return None


def _compound_output(shell, text: str, line: int) -> str | None:
    """What a subshell prints when it only decides, with tests the reader can evaluate, which `echo` lines run:
    `$(if [ "$X" = true ]; then echo ...; fi)`, `$([ $N -gt 1 ] && echo --flag)`. It sees the script's variables
    (a subshell's copy); any other command, or a test known only at run time, leaves it unevaluated."""
    if "echo" not in text or shell.depth > 20:
        return None
    try:
        nodes = shell.parse_string(text, line)
    except ShellReadError:
        return None
    printed, unknown = [], []

    def on_command(sub, fields, temp_env, ln):
        out = _producer(sub, fields, ln) if fields[0] == "echo" else None
        (printed if out is not None else unknown).append(out or fields[0])

    sub = type(shell)(shell.path, list(shell.positional), on_command)
    sub.vars, sub.functions, sub.templates = dict(shell.vars), dict(shell.functions), dict(shell.templates)
    sub.cwd, sub.job_counts, sub.depth = shell.cwd, shell.job_counts, shell.depth + 1
    try:
        sub.run_list(nodes)
    except (Exit, ShellReadError):  # the subshell exits, or holds what the reader cannot follow
        return None
    if unknown or any("not evaluated" in w.message or "assumed" in w.message for w in sub.warnings):
        return None
    return "".join(printed)


def _function_output(shell, fn, args: list[str], line: int) -> str | None:
    """What a function made only of `echo` lines prints (`flags() { echo --num-layers 24; echo --lr $LR; }`, then
    `torchrun pretrain_gpt.py $(flags)`): each echo's words, expanded with the function's arguments."""
    if not fn.body or not all(isinstance(c, Simple) and not c.redirects and c.words and
                              getattr(c.words[0], "raw", "") == "echo" and all(hasattr(w, "raw") for w in c.words)
                              for c in fn.body):
        return None
    saved, shell.positional = shell.positional, list(args)
    try:
        out = [_producer(shell, [f for w in c.words for f in shell.expand_word(w)], line) for c in fn.body]
    finally:
        shell.positional = saved
    return None if None in out else "".join(out)


def _expr(args: list[str]) -> str | None:
    r"""expr over integers with + - * / % (`expr $NNODES \* $GPUS`): * / % before + -, left to right, and C's
    division (toward zero, the remainder taking the dividend's sign). Comparisons and strings are not computed."""
    if len(args) % 2 == 0 or not all(re.fullmatch(r"-?\d+", a) for a in args[::2]) or \
            not all(op in ("+", "-", "*", "/", "%") for op in args[1::2]):
        return None
    terms, ops = [int(args[0])], []
    for op, operand in zip(args[1::2], args[2::2]):
        value = int(operand)
        if op in ("*", "/", "%"):
            if op != "*" and value == 0:
                return None  # expr: division by zero
            left = terms[-1]
            quotient = abs(left) // abs(value) * (1 if (left >= 0) == (value >= 0) else -1)
            terms[-1] = left * value if op == "*" else (quotient if op == "/" else left - value * quotient)
        else:
            terms.append(value)
            ops.append(op)
    total = terms[0]
    for op, value in zip(ops, terms[1:]):
        total = total + value if op == "+" else total - value
    return f"{total}\n"


_PRINTF_PART = re.compile(r"%%|%(-?\d*)([sqd])|%|\\[ntr\\\"']|\\|[^%\\]+")
_PRINTF_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\", '\\"': '"', "\\'": "'"}
_SHELL_SPECIAL = frozenset(" \t'\"\\|&;()<>!{}*[]?^$`,")  # what bash's %q backslashes (~ and # only first)


def _shell_quoted(value: str) -> str | None:
    """bash's printf %q: the value as one word bash reads back unchanged (special characters backslashed)."""
    if value == "":
        return "''"
    if "\n" in value:
        return None  # bash writes $'...' then
    escaped = "".join("\\" + c if c in _SHELL_SPECIAL else c for c in value)
    return "\\" + escaped if escaped[0] in "~#" else escaped


def _printf(form: str, args: list[str]) -> str | None:
    """printf FORMAT ARGS with %s, %q, %d (and a width), %% and backslash escapes; the format is reused while
    arguments remain, as bash does. Any other conversion is left to run time (None)."""
    parts = list(_PRINTF_PART.finditer(form))
    if any(m.group(0) == "%" for m in parts):
        return None  # a conversion not computed here (%f, %x, %b, ...)
    conversions = sum(1 for m in parts if m.group(2))
    out, k = [], 0
    while True:
        for m in parts:
            text, width, kind = m.group(0), m.group(1), m.group(2)
            if not kind:
                out.append("%" if text == "%%" else _PRINTF_ESCAPES.get(text, text))
                continue
            arg = args[k] if k < len(args) else ""
            k += 1
            if kind == "d":
                arg = arg or "0"
                if not re.fullmatch(r"[-+]?\d+", arg):
                    return None
                arg = str(int(arg))
            elif kind == "q":
                arg = _shell_quoted(arg)
                if arg is None:
                    return None
            out.append(f"{arg:{'<' if width.startswith('-') else '>'}{width.lstrip('-')}}" if width else arg)
        if not conversions or k >= len(args):
            return "".join(out)


def _seq(args: list[str]) -> str | None:
    """seq [-s SEP] [FIRST [STEP]] LAST over integers (`CUDA_VISIBLE_DEVICES=$(seq -s, 0 7)`, `for i in $(seq 0 7)`)."""
    separator = "\n"
    if len(args) >= 2 and args[0] == "-s":
        separator, args = args[1], args[2:]
    elif args and args[0].startswith("-s") and not args[0][2:].lstrip("-").isdigit():
        separator, args = args[0][2:], args[1:]
    if not 1 <= len(args) <= 3 or not all(re.fullmatch(r"-?\d+", a) for a in args):
        return None
    numbers = [int(a) for a in args]
    first, step, last = (1, 1, numbers[0]) if len(numbers) == 1 else (
        (numbers[0], 1, numbers[1]) if len(numbers) == 2 else tuple(numbers))
    if step == 0 or abs((last - first) // step) > 100000:
        return None
    values = range(first, last + (1 if step > 0 else -1), step)
    return separator.join(map(str, values)) + "\n"


def _python_print(shell, code: str, line: int) -> str | None:
    """`python -c CODE` for the two forms scripts use to compute a value: the working folder, and print() of
    arithmetic on numbers (int, float, round, min, max)."""
    code = code.strip()
    if code in _GETCWD:
        path = path_of_commands(shell, "pwd", line)
        return None if path is None else path + "\n"
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print"
            and len(call.args) == 1 and not call.keywords):
        return None
    try:
        value = _arithmetic(call.args[0])
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return f"{value}\n"


_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_FUNCTIONS = {"int": int, "float": float, "round": round, "min": min, "max": max, "abs": abs}


def _arithmetic(node):
    """The value of a Python expression made only of numbers, + - * / // % **, and the functions above."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _arithmetic(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _arithmetic(node.left), _arithmetic(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS \
            and not node.keywords:
        return _FUNCTIONS[node.func.id](*[_arithmetic(a) for a in node.args])
    raise ValueError("not arithmetic")


def _filter(fields: list[str], text: str) -> str | None:
    if fields[0] == "cut":
        return _cut(fields[1:], text)
    if fields[0] == "tr" and len(fields) == 3:
        return _tr(fields[1], fields[2], text)
    if fields[0] == "bc" and set(fields[1:]) <= {"-l", "-q", "-lq", "-ql"}:
        return bc(text, math_library=any("l" in f for f in fields[1:]))
    return None


def _cut(args: list[str], text: str) -> str | None:
    """cut -d C -f LIST (LIST: N, N-M, N-, -M, N,M): each line's fields, joined by C."""
    delimiter, spec, k = "\t", None, 0
    while k < len(args):
        arg = args[k]
        if arg in ("-d", "-f") and k + 1 < len(args):
            value, k = args[k + 1], k + 2
        elif arg[:2] in ("-d", "-f") and len(arg) > 2:
            value, k = arg[2:], k + 1
        else:
            return None
        if arg.startswith("-d"):
            delimiter = value
        else:
            spec = value
    if spec is None or len(delimiter) != 1:
        return None
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    try:
        out = [_cut_line(piece, delimiter, spec) for piece in lines]
    except ValueError:
        return None
    return "\n".join(out) + "\n"


def _cut_line(line: str, delimiter: str, spec: str) -> str:
    if delimiter not in line:
        return line  # cut prints a line without the delimiter whole
    parts = line.split(delimiter)
    chosen = []
    for item in spec.split(","):
        first, dash, last = item.partition("-")
        start = int(first) if first else 1
        end = (int(last) if last else len(parts)) if dash else start
        if start < 1:
            raise ValueError(spec)
        chosen += [k for k in range(start, end + 1) if k <= len(parts) and k not in chosen]
    return delimiter.join(parts[k - 1] for k in sorted(chosen))


_CLASSES = {"[:upper:]": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "[:lower:]": "abcdefghijklmnopqrstuvwxyz",
            "A-Z": "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "a-z": "abcdefghijklmnopqrstuvwxyz"}


def _tr(source: str, target: str, text: str) -> str | None:
    """tr between upper and lower case, the one use scripts make of it on a value."""
    if source not in _CLASSES or target not in _CLASSES:
        return None
    return text.translate(str.maketrans(_CLASSES[source], _CLASSES[target]))


def pipeline_status(shell, node: Pipeline, line: int) -> bool | None:
    """The exit status of `echo "$ARGS" | grep -q PATTERN` (a script testing its own options), as a condition:
    True when a line matches; None when the pipeline is anything else."""
    if len(node.commands) < 2 or not all(isinstance(c, Simple) and not c.redirects for c in node.commands):
        return None
    grep = node.commands[-1]
    head = [c for c in node.commands[:-1]]
    if not grep.words or getattr(grep.words[0], "raw", "") != "grep":
        return None
    text = " | ".join(" ".join(w.raw for w in c.words) for c in head)
    out = output_of_commands(shell, text, line)
    fields = [f for w in grep.words[1:] for f in shell.expand_word(w)]
    matcher = _grep_matcher(fields)
    if out is None or matcher is None:
        return None
    return any(matcher(piece) for piece in out.split("\n"))


def _grep_matcher(args: list[str]):
    """A function telling whether one line matches `grep [-q -i -w -E -F] [-e] PATTERN`; None for other uses."""
    flags, pattern, k = set(), None, 0
    while k < len(args):
        arg = args[k]
        if arg == "--" and k + 1 < len(args):
            pattern, k = args[k + 1], k + 2
        elif arg == "-e" and k + 1 < len(args):
            pattern, k = args[k + 1], k + 2
        elif arg.startswith("-") and len(arg) > 1 and pattern is None and set(arg[1:]) <= set("qiwEFs"):
            flags |= set(arg[1:])
            k += 1
        elif pattern is None and not arg.startswith("-"):
            pattern, k = arg, k + 1
        else:
            return None  # a file to read, or more patterns
    if pattern is None or (not flags & {"E", "F"} and re.search(r"\\[(){}|+?]|[+?{}|()]", pattern)):
        return None  # a basic regular expression whose operators Python reads differently
    try:
        compiled = re.compile(re.escape(pattern) if "F" in flags else pattern, re.I if "i" in flags else 0)
    except re.error:
        return None
    if "w" in flags:
        return lambda line: any(re.search(r"(?<!\w)" + re.escape(m.group(0)) + r"(?!\w)", line)
                                for m in compiled.finditer(line))
    return lambda line: bool(compiled.search(line))
