"""Every flag of the reference lists that megatron_compat/mapping.py does not map is classified in
megatron_compat/data/flag_status.tsv, exactly once, with a real reason."""
import collections
import csv
import os

from megatron_compat.mapping import MAPPED_RULES

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "megatron_compat", "data")
REFERENCE_LISTS = ("megatron_lm_flags.tsv", "mindspeed_llm_flags.tsv", "megatron_legacy_flags.tsv", "extra_flags.tsv",
                   "fork_flags.tsv")
TABLE = "flag_status.tsv"
HEADER = ["flag", "status", "reason", "replacement"]
STATUSES = {"absorbed", "rejected", "absorbed-at-default"}
MIN_REASON_CHARS = 15
MAX_ROWS_PER_REASON = 30  # a theme may share a sentence, but not hundreds of rows
PLACEHOLDERS = {"todo", "tbd", "fixme", "n/a", "na", "none", "-", "?", "unknown", "xxx"}

# The flags translated in Python (megatron_compat.mapping), which must not appear in the table.
PYTHON_ROWS = frozenset(flag for rule in MAPPED_RULES for flag in rule.flags)


def _reference_spellings():
    """Every flag spelling (each alias) of the three reference lists."""
    spellings = set()
    for name in REFERENCE_LISTS:
        with open(os.path.join(DATA, name), encoding="utf-8") as f:
            lines = [line for line in f if not line.startswith("#")]
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        assert header[0] == "flag", f"{name}: unexpected header {header}"
        for row in reader:
            if row and row[0].strip():
                spellings.update(row[0].split())
    return spellings


def _table():
    with open(os.path.join(DATA, TABLE), encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = lines[0].split("\t")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        assert len(cells) == 4, f"{TABLE}:{number}: expected 4 tab-separated cells, got {len(cells)}"
        rows.append((number, *cells))
    return header, rows


REFERENCE = _reference_spellings()
HEADER_SEEN, ROWS = _table()


def test_reference_lists_are_read():
    # ~850 + ~580 + ~125 rows with aliases; a broken reader would yield far fewer.
    assert len(REFERENCE) > 1300
    assert {"--sequence-parallel", "--use-ascend-coc", "--DDP-impl"} <= REFERENCE


def test_header():
    assert HEADER_SEEN == HEADER


def test_every_unmapped_spelling_has_exactly_one_row():
    counts = collections.Counter(row[1] for row in ROWS)
    duplicated = sorted(flag for flag, n in counts.items() if n > 1)
    assert not duplicated, f"flags with more than one row: {duplicated}"
    missing = sorted(REFERENCE - PYTHON_ROWS - set(counts))
    assert not missing, f"flags without a row: {missing}"
    unknown = sorted(set(counts) - REFERENCE)
    assert not unknown, f"rows for flags that are in none of the reference lists: {unknown}"


def test_no_mapped_flag_in_table():
    mapped = sorted({row[1] for row in ROWS} & PYTHON_ROWS)
    assert not mapped, f"mapping.py maps these; remove their rows: {mapped}"


def _row_problem(number, flag, status, reason, replacement):
    """What is wrong with one row, or None."""
    where = f"{TABLE}:{number} ({flag})"
    if not flag.startswith("-") or " " in flag:
        return f"{where}: bad flag spelling"
    if status not in STATUSES:
        return f"{where}: status {status!r} not in {sorted(STATUSES)}"
    if reason != reason.strip() or len(reason) < MIN_REASON_CHARS:
        return f"{where}: reason too short"
    if reason.lower().strip(" .") in PLACEHOLDERS:
        return f"{where}: placeholder reason"
    if replacement != replacement.strip() or not replacement:
        return f"{where}: empty replacement cell"
    if status == "absorbed":
        return None if replacement == "-" else f"{where}: absorbed rows need no replacement, write '-'"
    # rejected, and absorbed-at-default (rejected when not at the default), must say what to do.
    if replacement == "-" or replacement.lower() in PLACEHOLDERS:
        return f"{where}: {status} rows need a replacement"
    if replacement == reason:
        return f"{where}: replacement repeats the reason"
    return None


def test_every_row_is_well_formed():
    problems = [p for p in (_row_problem(*row) for row in ROWS) if p]
    assert not problems, "\n".join(problems)


def test_reasons_are_not_one_blanket_sentence():
    counts = collections.Counter(row[3] for row in ROWS)
    too_common = {reason: n for reason, n in counts.items() if n > MAX_ROWS_PER_REASON}
    assert not too_common, f"reasons shared by more than {MAX_ROWS_PER_REASON} rows: {too_common}"
    # and the table as a whole is not a handful of themes
    assert len(counts) > len(ROWS) // 10


def test_spot_checks():
    """A few rows whose classification is a deliberate decision (see the table's reasons)."""
    status = {row[1]: row[2] for row in ROWS}
    assert status["--use-distributed-optimizer"] == "absorbed"
    assert status["--overlap-grad-reduce"] == "absorbed"
    assert status["--attention-softmax-in-fp32"] == "absorbed"
    # --fp8-format etc. are mapped (torchao float8); Transformer Engine's delayed-scaling knobs only at their defaults
    assert "--fp8-format" not in status and status["--fp8-margin"] == status["--fp8-interval"] == "absorbed-at-default"
    assert "--multi-latent-attention" not in status  # MLA is mapped
    assert status["--mtp-use-repeated-layer"] == "rejected"
    assert status["--lora-load"] == "rejected"  # --lora-r and --is-instruction-dataset are mapped
    assert status["--variable-seq-lengths"] == "absorbed"
    assert status["--input"] == "rejected"  # preprocess_data.py only
    assert status["--rotary-interleaved"] == "absorbed-at-default"
    assert status["--num-layers-per-virtual-pipeline-stage"] == "absorbed"
