"""The record of one translation: the per-flag report lines, notes, errors and refusals.

`Translation` is the mutable state the rules and group handlers (groups.py) write into; `TranslationResult`
is what `translate.translate` hands back. Both live here so that translate.py and groups.py, which both use
them, import them from one place below them.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from fsdp2_core.config import TrainConfig


@dataclass
class ReportLine:
    flag: str
    value: Any
    status: str
    text: str

    def render(self) -> str:
        value = " ".join(map(str, self.value)) if isinstance(self.value,
                                                             list) else ("" if self.value is True else str(self.value))
        head = f"{self.flag} {value}".strip()
        return f"  {head:<48} {self.status:<9} {self.text}"


class Translation:
    """Mutable state while translating: the flags given and the canonical values derived."""

    def __init__(self, given: Dict[str, Any], world_size: Optional[int]):
        self.given = given
        self.world_size = world_size
        self.values: Dict[str, Any] = {}
        self.lines: List[ReportLine] = []
        self.notes: List[str] = []
        self.errors: List[str] = []
        self.rejected: List[Tuple[str, str, str]] = []
        self.files: Dict[str, str] = {}  # files the launch script writes (here-documents): path -> text
        self.origin: Dict[str, str] = {}  # canonical field -> the flag that set it, to name it in errors
        self.folded = 1  # tp × cp ranks folded into data parallelism (a family whose attention splits neither way)

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value

    def reject(self, flag: str, reason: str, replacement: str = "-") -> None:
        self.rejected.append((flag, reason, replacement))
        self.lines.append(ReportLine(flag, self.given.get(flag, True), "rejected",
                                     reason + ("" if replacement in ("", "-") else f"; instead: {replacement}")))


@dataclass
class TranslationResult:
    config: Optional[TrainConfig]
    dialect: str
    lines: List[ReportLine] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)
    rejected: List[Tuple[str, str, str]] = field(default_factory=list)
    unknown: List[Tuple[str, List[str]]] = field(default_factory=list)
    values: Dict[str, Any] = field(default_factory=dict)
    ignored: List[str] = field(default_factory=list)  # unknown flags the user vouched for (unknown_flags.py)

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.rejected and not self.unknown and not self.errors

    def problems(self) -> List[str]:
        see = "; see `python tools/convert_args.py --list-flags`"
        out = [f"unknown flag {flag}" + (f"; did you mean {', '.join(s)}?" if s else see) for flag, s in self.unknown]
        out += [f"{flag} is not supported: {reason}" + ("" if rep in ("", "-") else f"; instead: {rep}")
                for flag, reason, rep in self.rejected]
        return out + self.errors

    def report(self) -> str:
        heads = {"megatron": "dialect: megatron (Megatron flags given: fields the script leaves unset take "
                             "Megatron-LM's defaults)",
                 "fsdp2": "dialect: fsdp2 (no Megatron flags: fields left unset take the FSDP2 reference defaults)"}
        head = heads[self.dialect]
        parts = [head, "flags:"] + [line.render() for line in self.lines]
        parts += [f"note: {n}" for n in self.notes]
        parts += [f"error: {p}" for p in self.problems()]
        return "\n".join(parts)
