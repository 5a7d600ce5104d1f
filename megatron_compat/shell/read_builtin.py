"""bash's `read` when its input is a here-string the reader knows: `IFS=',' read -ra PARTS <<< "$LIST"` (a list
split into an array), `read -r HOST PORT <<< "$ADDR"`. The line is split on IFS as bash splits it for read: IFS
whitespace trimmed at both ends and collapsed, each other IFS character one delimiter; the last name takes the rest of
the line (a single trailing delimiter dropped), an array takes every field."""
from __future__ import annotations

import re
from dataclasses import dataclass

_WHITESPACE = " \t\n"


@dataclass
class ReadCall:
    names: list[str]        # the variables read into (REPLY when none is named)
    array: str | None       # -a NAME
    raw: bool               # -r: backslashes are kept
    delimiter: str          # -d: where the line ends


def parse_read_args(args: list[str]) -> ReadCall | None:
    """read's options and names; None for what is not followed here (-n/-N counts, -u file descriptors)."""
    array, raw, delimiter, k = None, False, "\n", 0
    while k < len(args) and args[k].startswith("-") and args[k] != "-":
        flags = args[k][1:]
        for j, flag in enumerate(flags):
            if flag in "rs":
                raw = raw or flag == "r"
            elif flag in "adpt":  # the value is the rest of this word, or the next word
                value = flags[j + 1:] or (args[k + 1] if k + 1 < len(args) else None)
                if value is None:
                    return None
                k += 0 if flags[j + 1:] else 1
                if flag == "a":
                    array = value
                elif flag == "d":
                    delimiter = value[:1] or "\0"
                break
            elif flag != "e":
                return None
        k += 1
    names = args[k:]
    if not all(re.fullmatch(r"[A-Za-z_]\w*", n) for n in names + ([array] if array else [])):
        return None
    return ReadCall(names, array, raw, delimiter)


def split_for_read(line: str, ifs: str, count: int | None) -> list[str]:
    """The fields read makes of `line`; with `count`, at most that many, the last holding the rest."""
    ws = "".join(c for c in ifs if c in _WHITESPACE)
    other = "".join(c for c in ifs if c not in _WHITESPACE)
    i, n, fields = 0, len(line), []
    while i < n and line[i] in ws:
        i += 1
    while i < n:
        if count is not None and len(fields) == count - 1:
            fields.append(_last_field(line[i:], ifs, ws))
            return fields
        j = i
        while j < n and line[j] not in ifs:
            j += 1
        fields.append(line[i:j])
        while j < n and line[j] in ws:
            j += 1
        if j < n and line[j] in other:
            j += 1
            while j < n and line[j] in ws:
                j += 1
        i = j
    return fields


def _last_field(rest: str, ifs: str, ws: str) -> str:
    rest = rest.rstrip(ws) if ws else rest
    if rest and rest[-1] in ifs:  # one field and one trailing delimiter: the delimiter goes
        field = rest[:-1].rstrip(ws) if ws else rest[:-1]
        if not any(c in ifs for c in field):
            return field
    return rest


def read_values(call: ReadCall, text: str, ifs: str) -> dict[str, str | list[str]]:
    """The variables `read` sets from `text` (its input)."""
    line = text.split(call.delimiter, 1)[0]
    if not call.raw:
        line = re.sub(r"\\(.)", r"\1", line.replace("\\\n", ""), flags=re.S)
    if call.array is not None:
        return {call.array: split_for_read(line, ifs, None)}
    if not call.names:
        return {"REPLY": line}
    fields = split_for_read(line, ifs, len(call.names))
    return {name: fields[k] if k < len(fields) else "" for k, name in enumerate(call.names)}
