"""bc, as scripts use it to compute a number bash's integer arithmetic cannot: `$(echo "$TOKENS*1000000000/1" | bc)`,
`$(echo "scale=2; $LR / 4" | bc)`. Numbers, + - * / % ^ and parentheses, with bc's scale rules (a product keeps
min(a + b, max(scale, a, b)) decimals, a quotient `scale` of them, truncated); anything else is not computed."""
from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext

_TOKEN = re.compile(r"\s*(\d+\.?\d*|\.\d+|[-+*/%^()])")


class BcError(ValueError):
    pass


def bc(program: str, math_library: bool = False) -> str | None:
    """What `echo PROGRAM | bc [-l]` prints, or None when PROGRAM is more than arithmetic."""
    with localcontext() as ctx:
        ctx.prec = 400  # bc's numbers have as many digits as they need
        return _run(program, 20 if math_library else 0)


def _run(program: str, scale: int) -> str | None:
    out = []
    for statement in re.split(r"[;\n]", program):
        statement = statement.strip()
        if not statement:
            continue
        m = re.fullmatch(r"scale\s*=\s*(\d+)", statement)
        if m:
            scale = int(m.group(1))
            continue
        try:
            value, digits = _Parser(statement, scale).parse()
        except (BcError, InvalidOperation, ZeroDivisionError):
            return None
        out.append(_shown(value, digits))
    return "\n".join(out) + "\n" if out else None


def _cut(value: Decimal, digits: int) -> Decimal:
    """`value` with `digits` decimals, the rest dropped (bc truncates)."""
    return value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_DOWN)


def _shown(value: Decimal, digits: int) -> str:
    text = f"{_cut(value, digits):f}"
    if text.startswith("0.") and digits:
        text = text[1:]  # bc prints .5, not 0.5
    elif text.startswith("-0.") and digits:
        text = "-" + text[2:]
    return text


class _Parser:
    """Recursive descent over bc's precedence: ^ (right), unary -, * / %, + -."""

    def __init__(self, text: str, scale: int):
        self.tokens, self.k, self.scale = self._tokens(text), 0, scale

    @staticmethod
    def _tokens(text: str) -> list[str]:
        tokens, k = [], 0
        while k < len(text):
            m = _TOKEN.match(text, k)
            if not m:
                if text[k:].strip():
                    raise BcError(text)
                break
            tokens.append(m.group(1))
            k = m.end()
        return tokens

    def parse(self):
        value = self._sum()
        if self.k != len(self.tokens):
            raise BcError("trailing text")
        return value

    def _peek(self):
        return self.tokens[self.k] if self.k < len(self.tokens) else None

    def _sum(self):
        a, sa = self._product()
        while self._peek() in ("+", "-"):
            op = self.tokens[self.k]
            self.k += 1
            b, sb = self._product()
            a, sa = (a + b if op == "+" else a - b), max(sa, sb)
        return a, sa

    def _product(self):
        a, sa = self._unary()
        while self._peek() in ("*", "/", "%"):
            op = self.tokens[self.k]
            self.k += 1
            b, sb = self._unary()
            if op == "*":
                a, sa = a * b, min(sa + sb, max(self.scale, sa, sb))
                a = _cut(a, sa)
            elif op == "/":
                a, sa = _cut(a / b, self.scale), self.scale
            else:  # a % b = a - (a / b) * b, the quotient at `scale` decimals
                a, sa = a - _cut(a / b, self.scale) * b, max(self.scale + sb, sa)
        return a, sa

    def _unary(self):
        if self._peek() == "-":
            self.k += 1
            a, sa = self._unary()
            return -a, sa
        return self._power()

    def _power(self):
        a, sa = self._atom()
        if self._peek() == "^":
            self.k += 1
            b, sb = self._unary()
            if sb or b != b.to_integral_value() or abs(b) > 1000:
                raise BcError("bc takes whole exponents")
            n = int(b)
            if n >= 0:
                digits = min(sa * n, max(self.scale, sa))
                return _cut(a ** n, digits), digits
            return _cut(Decimal(1) / a ** -n, self.scale), self.scale
        return a, sa

    def _atom(self):
        token = self._peek()
        if token is None:
            raise BcError("missing operand")
        self.k += 1
        if token == "(":
            value = self._sum()
            if self._peek() != ")":
                raise BcError("unclosed (")
            self.k += 1
            return value
        if token[0].isdigit() or token[0] == ".":
            digits = len(token.split(".")[1]) if "." in token else 0
            return Decimal(token), digits
        raise BcError(token)
