"""Arithmetic ($(( )), [[ ]] operands) and tests ([ ], test, [[ ]]) as bash evaluates them, or "not known
here" when they depend on the run. A mixin of the pretend Shell (evaluate.py)."""
from __future__ import annotations

import ast
import fnmatch
import re
from typing import Sequence

from .runtime import BASH_RUN_TIME, REFERENCE, SCHEDULER_VARIABLE, holds_command_output, scheduler_references

_FILE_TESTS = set("-a -b -c -d -e -f -g -h -k -p -r -s -t -u -w -x -G -L -N -O -S".split())


def _int64(value: int) -> int:
    """bash's arithmetic is on signed 64-bit integers: results wrap around."""
    return (value + 2 ** 63) % 2 ** 64 - 2 ** 63


def _quotient(a: int, b: int) -> int:
    """C's division, toward zero, in integers (a float would round large values)."""
    if b == 0:
        raise ZeroDivisionError("division by 0")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _power(a: int, b: int) -> int:
    if b < 0:
        raise ValueError("exponent less than 0")
    return pow(a, b, 2 ** 64)  # wrapped by the caller, as bash's 64-bit result


class Conditions:
    """Arithmetic and tests (a mixin of Shell)."""

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
               ast.Div: _quotient, ast.Mod: lambda a, b: a - b * _quotient(a, b), ast.Pow: _power,
               ast.LShift: lambda a, b: a << (b & 63), ast.RShift: lambda a, b: a >> (b & 63),
               ast.BitAnd: lambda a, b: a & b, ast.BitOr: lambda a, b: a | b, ast.BitXor: lambda a, b: a ^ b}
        cmps = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b, ast.Lt: lambda a, b: a < b,
                ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b}
        ev = lambda n: self._arith_node(n, line, depth)  # noqa: E731
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name):
            value = self.lookup(node.id)
            if value is None:
                return self._unset_in_arithmetic(node.id, line)
            value = (value[0] if value else "") if isinstance(value, list) else (value or "")
            value = value.strip()
            if value == "":
                return self._empty_in_arithmetic(node.id, line)
            if re.fullmatch(r"-?\d+", value):
                return int(value)
            if depth > 10:
                raise ValueError(f"{node.id} refers to itself")
            result = self.arith(value, line, depth + 1)
            if not isinstance(result, int):
                raise ValueError(f"{node.id}={value!r} is not a number")
            return result
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return _int64(ops[type(node.op)](ev(node.left), ev(node.right)))
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

    def _unset_in_arithmetic(self, name: str, line: int) -> int:
        """bash reads an unset name as 0; but a scheduler's variable (SLURM_NNODES) is unset here only because the
        job has not started: it is the count the job's #SBATCH lines fix, or a value known only at run time."""
        if name in self.job_counts:
            return self._job_count(name, f"${name}", line)
        if SCHEDULER_VARIABLE.fullmatch(name):
            raise ValueError(f"${name} is set by the scheduler at run time")
        if name in BASH_RUN_TIME:
            raise ValueError(f"${name} is {BASH_RUN_TIME[name]}, known only at run time")
        return 0

    def _empty_in_arithmetic(self, name: str, line: int) -> int:
        """An empty variable reads as 0, as in bash; but NODES=$SLURM_NNODES is empty here only because the job has
        not started: it is the count of the job's #SBATCH lines, or a value known only at run time."""
        template = self.templates.get(name, "")
        inherited = template.split("\x00")[1::2]
        alone = inherited[0] if len(inherited) == 1 and template == f"\x00{inherited[0]}\x00" else None
        if alone in self.job_counts:
            return self._job_count(alone, f"${name} (set from ${alone})", line)
        run_time = [n for n in inherited if SCHEDULER_VARIABLE.fullmatch(n) or n in BASH_RUN_TIME]
        if run_time:
            raise ValueError(f"${name} is set from ${run_time[0]}, which only the running job has")
        return 0

    def _job_count(self, name: str, shown: str, line: int) -> int:
        """What the job's #SBATCH lines fix the scheduler's variable `name` to, said as `shown` is read."""
        value, directive = self.job_counts[name]
        self.warn(line, f"{shown} in arithmetic read as {value}, from the job's {directive}")
        return value

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
