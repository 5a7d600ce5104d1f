#!/usr/bin/env python
"""Run launch scripts through tools/convert_args.py and tally what it makes of them.

    python tools/classify_scripts.py DIR_OR_FILES... [--json OUT] [--markdown [PAGE]]
                                     [--args-from JSON] [--timeout SECONDS]

Each script is converted in this process by `convert_args.main`, exactly as the command
line would (outputs go to a temporary folder), under a time limit, from the root of its
repository when the path has an OWNER__REPO folder (where READMEs have users start their
scripts), else from the current folder. One line per script:

    converted  PATH
    refused    PATH: <first reason convert_args gave>
    crash      PATH: <exception>

then the refusals grouped by normalised reason and the converted percentage. A script
that crashes or hangs is recorded as "crash" and the run goes on.

Files are the *.sh, *.slurm, *.sbatch, *.bash, *.pbs, *.job under each DIR; @LIST reads
the arguments from a file, one a line. A path with a component OWNER__REPO (the survey
layout, docs/launch_script_survey.md) is counted under the source OWNER/REPO.
--markdown prints the tables as Markdown; --markdown PAGE rewrites the part of PAGE
between the lines `<!-- classify_scripts: begin -->` and `<!-- classify_scripts: end -->`.
--reasons-from reads docs/launch_script_survey_reasons.tsv: what each refusal is (a genuine gap, a gap another
branch closes, or a script that cannot run as published), shown beside the reasons and per script.
--args-from reads {"script.sh": {"script_args": [...], "set": {"NAME": "VALUE"}}} (tests/launch_scripts/
expected.json), or {"scripts": {...}} keyed by OWNER/REPO/PATH (docs/launch_script_survey_args.json: the arguments
each script's own repository documents, with where); a key names a script by OWNER/REPO/PATH or by its file name.
"""
import argparse
import collections
import contextlib
import io
import json
import os
import re
import signal
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tools import convert_args  # noqa: E402

SUFFIXES = (".sh", ".slurm", ".sbatch", ".bash", ".pbs", ".job")
BEGIN, END = "<!-- classify_scripts: begin -->", "<!-- classify_scripts: end -->"


@dataclass
class Outcome:
    script: str                     # the path as shown: relative to the directory given, or as given
    source: str                     # OWNER/REPO for the survey layout, else the directory given
    launcher: str                   # launcher style seen in the text, e.g. "srun + torchrun"
    outcome: str                    # converted | refused | crash
    reasons: List[Tuple[str, str]] = field(default_factory=list)  # (category, detail) of each reason, in order
    raw: List[str] = field(default_factory=list)  # the same reasons as convert_args wrote them, or the exception
    kinds: List[Tuple[str, str]] = field(default_factory=list)  # (class, what) of each reason (--reasons-from)

    @property
    def blocking(self) -> str:
        return label(*self.reasons[0]) if self.reasons else ""

    @property
    def blocking_kind(self) -> str:
        return kind_label(*self.kinds[0]) if self.kinds else ""


class _TimedOut(BaseException):
    """Raised by the alarm inside a conversion that ran too long (BaseException: no `except Exception` swallows it)."""


# ----------------------------------------------------------------------------- running convert_args
def run_convert(argv: Sequence[str]) -> Tuple[int, str, str]:
    """`convert_args.main(argv)` with its stdout and stderr captured: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = convert_args.main(list(argv))
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the block after `seconds` (main thread only; elsewhere the block runs unguarded)."""
    def alarm(signum, frame):
        raise _TimedOut()
    try:
        old = signal.signal(signal.SIGALRM, alarm)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def classify(path: str, script_args: Sequence[str] = (), timeout: float = 60.0,
             variables: Optional[Dict[str, str]] = None, folder: Optional[str] = None) -> Tuple[str, List[str]]:
    """(outcome, reasons as convert_args wrote them) for one script, run with these arguments and `--set`s, from
    `folder` (the current one by default)."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [os.path.abspath(path), "-o", os.path.join(tmp, "new.yaml"), "--script-out", os.path.join(tmp, "new.sh")]
        argv += [f"--set={name}={value}" for name, value in (variables or {}).items()]
        argv += ["--", *script_args] if script_args else []
        try:
            with time_limit(timeout), contextlib.chdir(folder or os.getcwd()):
                code, _, err = run_convert(argv)
        except _TimedOut:
            return "crash", [f"timeout: no answer within {timeout:g} s"]
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a crash (SystemExit too) is a result here, not the end of the run
            return "crash", [_crash_line(exc)]
    if code == 0:
        return "converted", []
    return "refused", reasons_from(err) or [f"exit code {code} with no reason given"]


def _crash_line(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {os.path.basename(frame.filename)}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}".replace("\n", " ")


def reasons_from(stderr: str) -> List[str]:
    """The reasons in convert_args's stderr: the '  - ' list after 'not converted', or its one 'convert_args:' line."""
    lines = stderr.splitlines()
    for k, line in enumerate(lines):
        if line.startswith("convert_args: not converted") or line.startswith("convert_args: no configuration"):
            return [x[4:] for x in lines[k + 1:] if x.startswith("  - ")]
    return [line[len("convert_args: "):] for line in lines if line.startswith("convert_args: ")]


# ----------------------------------------------------------------------------- normalising reasons
_LOCATION = re.compile(r"^[^\s:]*[/.<][^\s:]*:(\d+:)? ")  # "path/x.sh:12: " or "x.sh: "
_RULES = [  # (pattern on the reason without its location, category, group giving the detail)
    (r"no launch line", "no launch line found", None),
    (r"^timeout", "timeout", None),
    (r"^unknown flag (\S+?);", "unknown flag", 1),
    (r"^(--[\w.-]+) is not supported", "rejected flag", 1),
    (r"^entry point (\S+) trains", "non-GPT entry point", 1),
    (r"^entry point (\S+) (does not describe a model|is not a Python script)", "not a training script", 1),
    (r"is given \$(\w+)=.*, which bash splits into", "value split into the script's place", 1),
    (r"^(\S+) has no script to run", "no script to run", 1),
    (r"^(\S+ --?[\w-]+) \(line \d+\) has no value", "launcher option without a value", 1),
    (r"^(--[\w.-]+): expects one value \(.*\), got 0", "flag left without a value", 1),
    (r"^(--[\w.-]+): expects one value \(.*\), got \d+", "flag value split into several words", 1),
    (r"^(--[\w.-]+)[: ]", "bad flag value", 1),
    (r"^add (--[\w.-]+)", "missing flag", 1),
    (r"^the architecture needs (--[\w.-]+)", "missing flag", 1),
    (r"^\S+ needs (--[\w.-]+)", "missing flag", 1),
    (r"^unexpected argument (.*?): every value", "stray value", 1),
    (r"^(global batch size) .* not divisible", "batch arithmetic", 1),
    (r"^(.*? famil(y|ies)|Mixtral has experts|GPT-2 needs)", "architecture", 1),
    (r"^(\w+): .* at \S+:\d+$", "crash", 1),
]


def normalise(reason: str) -> Tuple[str, str]:
    """(category, detail) of one reason, e.g. ("unknown flag", "--use-mpi")."""
    text = _LOCATION.sub("", reason, count=1)
    for pattern, category, group in _RULES:
        m = re.search(pattern, text)
        if m:
            return category, (m.group(group)[:60] if group else "")
    return "other", re.sub(r"\d+", "N", text.split(";")[0])[:80]


def label(category: str, detail: str) -> str:
    return f"{category} {detail}".strip()


# ----------------------------------------------------------------------------- what each refusal is
UNCLASSIFIED = ("unclassified", "")


def read_reason_kinds(path: str) -> List[Tuple[re.Pattern, str, str]]:
    """--reasons-from: (pattern, class, what) rows of a TSV (pattern searched in a reason without its location)."""
    rules = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.startswith("#") or line.startswith("pattern\t") or not line.strip():
                continue
            cells = line.rstrip("\n").split("\t")
            if len(cells) != 3:
                raise SystemExit(f"classify_scripts: {path}:{number}: expects pattern, class, what")
            rules.append((re.compile(cells[0]), cells[1], cells[2]))
    return rules


def kind_of(reason: str, rules) -> Tuple[str, str]:
    text = _LOCATION.sub("", reason, count=1)
    return next(((klass, what) for pattern, klass, what in rules if pattern.search(text)), UNCLASSIFIED)


def kind_label(klass: str, what: str) -> str:
    return f"{klass}: {what}" if what else klass


# ----------------------------------------------------------------------------- launcher style (text only)
_STYLES = [  # outer wrappers first, then the torch launcher; a style is listed when its pattern is seen
    ("srun", r"(^|[\s;&|(])srun\s"), ("mpirun", r"(^|[\s;&|(\"'])(mpirun|mpiexec)\s"), ("pdsh", r"(^|\s)pdsh\s"),
    ("deepspeed", r"(^|[\s;&|(\"'=])deepspeed\s+(--|\S+\.py)"), ("msrun", r"(^|[\s;&|(\"'])msrun\s"),
    ("aprun", r"(^|[\s;&|(\"'])(aprun|jsrun)\s"), ("bcprun", r"(^|[\s;&|(\"'])bcprun\s"),
    ("ssh", r"(^|[\s;&|(])ssh\s+(-\S+\s+)*\$"),
    ("numactl", r"(^|[\s\"'])numactl\s"), ("uv run", r"(^|[\s\"'=])uv run([\s\"']|$)"),
    ("bash -c", r"(^|\s)(bash|sh) -c\s"),
    ("eval", r"(^|[\s;&|])eval\s"), ("torchrun", r"(^|[\s\"'=/])torchrun\s"),
    ("torch.distributed", r"torch\.distributed\.(launch|run)"), ("accelerate", r"accelerate launch"),
]


def launcher_style(text: str) -> str:
    """The launchers a script's non-comment lines mention, outer first: e.g. "srun + bash -c + torchrun"."""
    text = re.sub(r"\\\n", " ", text)  # backslash continuations joined
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    seen = [name for name, pattern in _STYLES if re.search(pattern, body, re.M)]
    return " + ".join(seen) if seen else "python"


# ----------------------------------------------------------------------------- finding and running scripts
def find_scripts(targets: Sequence[str]) -> List[Tuple[str, str]]:
    """(path, path as shown) for each file given and each script under each directory given."""
    found = []
    for target in targets:
        if os.path.isdir(target):
            for root, dirs, files in os.walk(target):
                dirs.sort()
                found += [(os.path.join(root, f), os.path.relpath(os.path.join(root, f), target))
                          for f in sorted(files) if f.endswith(SUFFIXES)]
        elif os.path.isfile(target):
            found.append((target, target))
        else:
            raise SystemExit(f"classify_scripts: {target}: no such file or directory")
    return found


def split_source(shown: str, fallback: str) -> Tuple[str, str]:
    """(OWNER/REPO, path inside it) when a component of `shown` is OWNER__REPO, else (fallback, shown)."""
    parts = shown.split(os.sep)
    for k, part in enumerate(parts[:-1]):
        if re.fullmatch(r"[A-Za-z0-9][\w.-]*?__[\w.-]+", part):
            return part.replace("__", "/", 1), os.sep.join(parts[k + 1:])
    return fallback, shown


def repository_root(path: str) -> Optional[str]:
    """The OWNER__REPO folder a script of the survey layout lies in: its repository's root, where its README has
    users start it (`bash examples/gpt3/train.sh`); None for another layout (then the current folder is used)."""
    parts = os.path.abspath(path).split(os.sep)
    for k, part in enumerate(parts[:-1]):
        if re.fullmatch(r"[A-Za-z0-9][\w.-]*?__[\w.-]+", part):
            return os.sep.join(parts[:k + 1])
    return None


def arguments_for(args_for: dict, path: str, shown: str) -> dict:
    """The entry of --args-from for a script: by OWNER/REPO/PATH (the survey layout), else by its file name."""
    source, inside = split_source(shown, "")
    keyed = f"{source}/{inside}".replace(os.sep, "/") if source else None
    return args_for.get(keyed) or args_for.get(os.path.basename(path)) or {}


def read_args_file(path: str) -> dict:
    """--args-from: {"scripts": {KEY: entry}} (with prose beside it), or {KEY: entry}."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return data["scripts"] if isinstance(data.get("scripts"), dict) else data


def survey(targets: Sequence[str], args_for: dict, timeout: float, progress=None, rules=None) -> List[Outcome]:
    outcomes = []
    for path, shown in find_scripts(targets):
        given = arguments_for(args_for, path, shown)
        outcome, raw = classify(path, given.get("script_args", []), timeout, given.get("set"), repository_root(path))
        with open(path, encoding="utf-8", errors="replace") as fh:
            style = launcher_style(fh.read())
        result = Outcome(shown, split_source(shown, os.path.dirname(path) or ".")[0], style, outcome,
                         [normalise(r) for r in raw], raw, [kind_of(r, rules) for r in raw] if rules else [])
        outcomes.append(result)
        if progress:
            progress(result)
    return outcomes


# ----------------------------------------------------------------------------- tallies and rendering
def by_reason(outcomes: List[Outcome]) -> List[Tuple[str, str, int, int, int]]:
    """(category, detail, scripts where it is the first reason, where it appears, where it is the only one)."""
    first, anywhere, only = collections.Counter(), collections.Counter(), collections.Counter()
    for o in outcomes:
        if o.outcome == "converted":
            continue
        keys = [tuple(r) for r in o.reasons]
        first[keys[0]] += 1
        anywhere.update(set(keys))
        if len(set(keys)) == 1:
            only[keys[0]] += 1
    rows = [(c, d, first[(c, d)], anywhere[(c, d)], only[(c, d)]) for c, d in anywhere]
    return sorted(rows, key=lambda r: (-r[2], -r[3], r[0], r[1]))


def by_category(outcomes: List[Outcome]) -> List[Tuple[str, int, int]]:
    """(category, scripts whose first reason is in it, scripts with any reason in it)."""
    first, anywhere = collections.Counter(), collections.Counter()
    for o in outcomes:
        if o.outcome != "converted":
            first[o.reasons[0][0]] += 1
            anywhere.update({category for category, _ in o.reasons})
    return sorted(((c, first[c], anywhere[c]) for c in anywhere), key=lambda r: (-r[1], -r[2], r[0]))


def by_kind(outcomes: List[Outcome]) -> List[Tuple[str, str, int]]:
    """(class, what, refused scripts whose first reason is it), most first."""
    counts = collections.Counter(tuple(o.kinds[0]) for o in outcomes if o.outcome != "converted" and o.kinds)
    return sorted(((k, w, n) for (k, w), n in counts.items()), key=lambda r: (-r[2], r[0], r[1]))


def kinds_of_reasons(outcomes: List[Outcome]) -> dict:
    """(category, detail) -> (class, what) of the first raw reason that gave it."""
    found = {}
    for o in outcomes:
        for reason, kind in zip(o.reasons, o.kinds):
            found.setdefault(tuple(reason), tuple(kind))
    return found


def by_source(outcomes: List[Outcome]) -> List[Tuple[str, int, int, int, int]]:
    table = collections.defaultdict(collections.Counter)
    for o in outcomes:
        table[o.source][o.outcome] += 1
    return sorted(((s, sum(c.values()), c["converted"], c["refused"], c["crash"]) for s, c in table.items()),
                  key=lambda r: (-r[1], r[0]))


def headline(outcomes: List[Outcome]) -> str:
    n = len(outcomes)
    count = collections.Counter(o.outcome for o in outcomes)
    pct = 100.0 * count["converted"] / n if n else 0.0
    return (f"{n} scripts: {count['converted']} converted ({pct:.0f}%), "
            f"{count['refused']} refused, {count['crash']} crash")


def render_text(outcomes: List[Outcome]) -> str:
    lines = [f"{o.outcome:<10} {o.script}" + (f": {o.raw[0]}" if o.raw else "") for o in outcomes]
    lines += ["", "refusals by reason category (scripts: first reason / any reason)"]
    lines += [f"  {first:>4} {anywhere:>4}  {category}" for category, first, anywhere in by_category(outcomes)]
    lines += ["", "refusals by reason (scripts: first reason / any reason / only reason)"]
    lines += [f"  {a:>4} {b:>4} {c:>4}  {cat} {det}".rstrip() for cat, det, a, b, c in by_reason(outcomes)]
    return "\n".join(lines + ["", headline(outcomes)]) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(outcomes: List[Outcome]) -> str:
    classified = any(o.kinds for o in outcomes)
    out = [f"**{headline(outcomes)}.**", "", "### Outcomes by source", "",
           "| source | scripts | converted | refused | crash |", "| --- | ---: | ---: | ---: | ---: |"]
    out += [f"| {s} | {n} | {c} | {r} | {x} |" for s, n, c, r, x in by_source(outcomes)]
    if classified:
        totals = collections.Counter()
        for k, _, n in by_kind(outcomes):
            totals[k] += n
        out += ["", "### What blocks the refused scripts", "",
                "Each refused script counted once, by its first (blocking) reason: a genuine gap (an architecture "
                "or training feature the engine does not have), a gap another engineer's branch closes (pending), "
                "or a script that cannot run as published.", "",
                "| class | scripts |", "| --- | ---: |"]
        out += [f"| {k} | {n} |" for k, n in sorted(totals.items(), key=lambda r: (-r[1], r[0]))]
        out += ["", "| class | what it is | scripts |", "| --- | --- | ---: |"]
        out += [f"| {k} | {_cell(w) or '-'} | {n} |" for k, w, n in by_kind(outcomes)]
    rows = by_reason(outcomes)
    out += ["", "### Refusals by reason category", "",
            "Scripts whose first (blocking) reason falls in the category, and scripts with any reason in it.", "",
            "| category | first reason | any reason |", "| --- | ---: | ---: |"]
    out += [f"| {c} | {a} | {b} |" for c, a, b in by_category(outcomes)]
    out += ["", "### Refusals by reason", "",
            "*only reason*: scripts that this alone keeps from converting.", ""]
    if classified:
        kinds = kinds_of_reasons(outcomes)
        out += ["| category | detail | what it is | first reason | any reason | only reason |",
                "| --- | --- | --- | ---: | ---: | ---: |"]
        out += [f"| {c} | {_cell(d) or '-'} | {_cell(kind_label(*kinds[(c, d)]))} | {a} | {b} | {x} |"
                for c, d, a, b, x in rows]
    else:
        out += ["| category | detail | first reason | any reason | only reason |", "| --- | --- | ---: | ---: | ---: |"]
        out += [f"| {c} | {_cell(d) or '-'} | {a} | {b} | {x} |" for c, d, a, b, x in rows]
    blocked = "| what blocks it" if classified else ""
    out += ["", "### Per script", "", f"| source | path | launcher | outcome | blocking reason {blocked}|",
            "| --- | --- | --- | --- | --- |" + (" --- |" if classified else "")]
    for o in outcomes:
        path = split_source(o.script, o.source)[1]
        kind = f" {_cell(o.blocking_kind) or '-'} |" if classified else ""
        out.append(f"| {o.source} | `{_cell(path)}` | {o.launcher} | {o.outcome} | {_cell(o.blocking) or '-'} |{kind}")
    return "\n".join(out) + "\n"


def splice(page: str, block: str) -> None:
    """Replace the generated part of `page` (between BEGIN and END) with `block`."""
    with open(page, encoding="utf-8") as fh:
        text = fh.read()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"classify_scripts: {page} has no '{BEGIN}' ... '{END}' block to rewrite")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(page, "w", encoding="utf-8") as fh:
        fh.write(f"{head}{BEGIN}\n{block}{END}{tail}")


# ----------------------------------------------------------------------------- command line
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     fromfile_prefix_chars="@")
    parser.add_argument("targets", nargs="+",
                        help="launch scripts, directories searched for them, or @LIST (one a line)")
    parser.add_argument("--json", metavar="OUT", help="write every outcome and the tallies as JSON")
    parser.add_argument("--markdown", nargs="?", const="-", metavar="PAGE",
                        help="print Markdown tables instead of text, or rewrite PAGE's generated block")
    parser.add_argument("--args-from", metavar="JSON",
                        help='{"name.sh": {"script_args": [...]}}, or {"scripts": {"OWNER/REPO/PATH": {...}}}: '
                             'the arguments (and --set variables) scripts need')
    parser.add_argument("--reasons-from", metavar="TSV",
                        help="what each refusal is: pattern, class, what (docs/launch_script_survey_reasons.tsv)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per script (default 60)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    args_for = read_args_file(args.args_from) if args.args_from else {}
    progress = (lambda o: print(f"{o.outcome:<10} {o.script}", file=sys.stderr)) if args.markdown else None
    rules = read_reason_kinds(args.reasons_from) if args.reasons_from else None
    outcomes = survey(args.targets, args_for, args.timeout, progress, rules)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"headline": headline(outcomes), "scripts": [asdict(o) for o in outcomes],
                       "by_reason": by_reason(outcomes), "by_kind": by_kind(outcomes)}, fh, indent=1)
    if args.markdown and args.markdown != "-":
        splice(args.markdown, render_markdown(outcomes))
    else:
        sys.stdout.write(render_markdown(outcomes) if args.markdown else render_text(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
