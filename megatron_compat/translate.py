"""Megatron flags (and FSDP2 names, mixed) -> one canonical config, faithful to Megatron.

Order of precedence: a YAML given as the first argument < Megatron flags < FSDP2 names
on the command line. When any Megatron flag is given, every field the script leaves
unset takes Megatron-LM's default (the "megatron" dialect), so the script means what it
meant under Megatron; otherwise the FSDP2 reference defaults apply.
"""
from typing import Any, Dict, List, Optional

from fsdp2_core.config import ConfigError, build_config, coerce, read_yaml_values

from . import groups
from .architecture import ARCHITECTURE_KEY_FLAGS, ArchitectureError
from .argv import parse_argv
from .registry import rule_for, status_for
from .report import ReportLine, Translation, TranslationResult
from .unknown_flags import Vouch

# Megatron-LM's defaults for canonical fields whose FSDP2 default differs.
MEGATRON_DEFAULTS: Dict[str, Any] = {
    "seed": 1234, "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8, "weight_decay": 0.01,
    "max_grad_norm": 1.0, "lr_scheduler_type": "linear", "min_lr": 0.0, "warmup_ratio": 0.0,
    "logging_steps": 100, "save_steps": 0, "save_total_limit": None, "save_hf_weights": False,
    "param_dtype": "fp32", "reduce_dtype": "fp32", "eval_interval": None, "eval_iters": 100,
    "dataloader_num_workers": 2, "make_vocab_size_divisible_by": 128, "stage": "pt", "data_manager_type": "mg",
    "profile_step_start": 10, "profile_step_end": 12, "profile_ranks": [0], "dataloader_drop_last": True,
    "create_attention_mask_in_dataloader": True, "distributed_timeout_minutes": 10,
}
MEGATRON_DEFAULT_SPLIT = "969,30,1"  # Megatron's split when --data-path is given without --split
DEFAULT_SAVE_DIR = "./fsdp2_output"   # where a script without --save writes (Megatron then saves nothing)


def translate(argv: List[str], world_size: Optional[int] = None, entry: str = "pretrain_gpt.py",
              force: bool = False, vouch: Optional[Vouch] = None,
              files: Optional[Dict[str, str]] = None) -> TranslationResult:
    """Translate a command line; `force` builds the config even when some flags were refused; unknown flags
    that `vouch` covers are ignored, each with a warning; `files` are files the launch script writes (path ->
    text), read before the disk (a DeepSpeed config written by a here-document)."""
    parsed = parse_argv(argv)
    dialect = "megatron" if parsed.megatron else "fsdp2"
    t = Translation(parsed.megatron, world_size)
    t.files = dict(files or {})
    _one_spelling(t)
    t.notes.extend(parsed.notes)
    t.errors.extend(parsed.errors)
    base: Dict[str, Any] = {}
    if parsed.yaml_path:
        try:
            base = read_yaml_values(parsed.yaml_path)
        except ConfigError as exc:
            t.errors.append(str(exc))
    _apply_rules(t)
    _apply_groups(t)
    values = _merge(t, base, parsed.fsdp2, dialect, entry)
    if dialect == "megatron":
        _default_save_dir(t, values)
        _require_training_data(t, values)
    _derive_batch_and_steps(t, values, dialect)
    unknown, ignored = _vouched(t, parsed, vouch)
    result = TranslationResult(None, dialect, t.lines, t.notes, t.errors, t.rejected, unknown, values, ignored)
    if result.problems() and not force:
        return result
    try:
        result.config = build_config(values)
    except ConfigError as exc:
        result.errors.extend(name_sources(t, exc, parsed.yaml_path) if exc.problems else [str(exc)])
    return result


def name_sources(t: Translation, exc: ConfigError, yaml_path: Optional[str]) -> List[str]:
    """One line per broken rule, led by the flag (and its value) that set the field, else the YAML file."""
    lines = []
    for key, text in exc.problems:
        flag = _flag_for(t, key)
        if flag is not None:
            value = t.given.get(flag, True)
            shown = " ".join(map(str, value)) if isinstance(value, list) else ("" if value is True else str(value))
            lines.append(f"{flag} {shown}".rstrip() + f": {text}")
        elif key in t.origin:  # an FSDP2 name given on the command line
            lines.append(f"{t.origin[key]}: {text}")
        elif yaml_path:
            lines.append(f"{yaml_path}: {text}")
        else:
            lines.append(text)
    return lines


def _flag_for(t: Translation, key: Optional[str]) -> Optional[str]:
    """The Megatron flag behind a field (or an architecture key), when one was given."""
    if key is None:
        return None
    if key.startswith("architecture.") and "architecture" not in t.origin:
        flags = ARCHITECTURE_KEY_FLAGS.get(key.split(".", 1)[1], ())
        return next((f for f in ((flags,) if isinstance(flags, str) else flags) if f in t.given), None)
    flag = t.origin.get(key)
    return flag if flag in t.given else None


def _apply_rules(t: Translation) -> None:
    for flag, value in t.given.items():
        rule = rule_for(flag)
        status = status_for(flag, value)
        if rule is None:
            t.errors.append(f"{flag}: known to the parser but missing from the registry (a bug; please report it)")
        elif status == "rejected":
            t.reject(flag, rule.target, rule.replacement)
        elif status == "absorbed":
            t.lines.append(ReportLine(flag, value, "absorbed", rule.target))
        elif rule.kind in ("plain", "switch"):
            try:
                _apply_row(rule, value, t)
                t.origin[rule.field] = flag
                t.lines.append(ReportLine(flag, value, "mapped", rule.target))
            except ValueError as exc:
                t.errors.append(f"{flag}: {exc}")


def _apply_row(rule, value, t: Translation) -> None:
    """A plain row sets its field to the (converted) value; a switch row to its value."""
    t.set(rule.field, rule.convert.forward(value) if rule.kind == "plain" else rule.value)
    for name, fixed in rule.also:
        t.set(name, fixed)


def _apply_groups(t: Translation) -> None:
    for handler in groups.HANDLERS.values():
        try:
            handler(t)
        except (ArchitectureError, ConfigError, ValueError) as exc:
            t.errors.append(str(exc))


def _merge(t, base, fsdp2, dialect, entry):
    values: Dict[str, Any] = {}
    if dialect == "megatron":
        values.update(MEGATRON_DEFAULTS)
        if "dataset" in t.values and "split" not in t.values and "split" not in base:
            values["split"] = MEGATRON_DEFAULT_SPLIT
    if entry == "pretrain_gpt.py":
        values.setdefault("stage", "pt")
        values.setdefault("data_manager_type", "mg")
    if entry == "posttrain_gpt.py" and dialect == "megatron" and "--stage" not in t.given:
        t.errors.append("posttrain_gpt.py needs --stage: MindSpeed-LLM picks its trainer by it; add --stage sft "
                        "(supervised fine-tuning, the only post-training stage here)")
    values.update(_coerced(t, base))
    values.update(t.values)
    for name, value in _coerced(t, fsdp2).items():
        if name in t.values and t.values[name] != value:
            t.notes.append(f"--{name} {value} given by name overrides the value {t.values[name]!r} derived from "
                           "Megatron flags")
        values[name] = value
        t.origin[name] = f"--{name} {value}"
    return values


def _coerced(t, raw: Dict[str, Any]) -> Dict[str, Any]:
    """Typed values for FSDP2 names, so batch and step arithmetic can use them; errors are collected."""
    out = {}
    for name, value in raw.items():
        try:
            out[name] = coerce(name, value)
        except ConfigError as exc:
            t.errors.append(str(exc))
    return out


def _derive_batch_and_steps(t, values, dialect):
    try:
        for derive in groups.LATE_HANDLERS.values():
            derive(t, values, dialect)
    except (ConfigError, ValueError) as exc:
        t.errors.append(str(exc))


def _default_save_dir(t, values):
    """Megatron trains without --save (and saves nothing); the engine needs a directory for its run files."""
    if values.get("output_dir"):
        return
    values["output_dir"] = DEFAULT_SAVE_DIR
    t.notes.append(f"WARNING: no --save: training.output_dir = {DEFAULT_SAVE_DIR}. Megatron saves no checkpoint "
                   "without --save; the engine writes its metrics and its final checkpoint there. Add --save DIR "
                   "to choose the directory")


def _require_training_data(t, values):
    """Megatron needs data: --data-path, --train-data-path or --mock-data (a YAML or FSDP2 `dataset` also does)."""
    if values.get("mock_data") or values.get("dataset") or values.get("train_data_path") \
            or values.get("train_weighted_split_paths"):
        return
    if any("-weighted-split-paths" in flag for flag in t.given):
        return  # weighted_split_flags already said what is wrong with the groups
    empty = [f for f in ("--data-path", "--train-data-path") if f in t.given]
    if any(e.startswith(tuple(empty)) for e in t.errors if empty):
        return  # the flag's own check already named it
    if empty:
        t.errors.append(f"{empty[0]} has no value: give the dataset prefixes (e.g. data/corpus_text_document), or "
                        "--mock-data for synthetic data; in a launch script, the variable written after it is empty")
    else:
        t.errors.append("no training data: give --data-path PREFIX (the .bin/.idx prefix preprocess_data.py wrote; "
                        "or --train-data-path/--valid-data-path), or --mock-data for synthetic data")


def _vouched(t, parsed, vouch):
    """(still unknown, ignored): unknown flags the user vouched for are ignored, each named in a warning."""
    unknown, ignored = [], []
    for flag, suggestions in parsed.unknown:
        if vouch is None or not vouch.covers(flag):
            unknown.append((flag, suggestions))
            continue
        ignored.append(flag)
        value = parsed.unknown_values.get(flag) or True
        t.lines.append(ReportLine(flag, value, "IGNORED", f"unknown here; ignored because {vouch.source} vouches "
                                                          "for it: whatever it did under Megatron does not happen"))
    if ignored:
        t.notes.append(f"WARNING: {len(ignored)} unknown flag(s) ignored on the user's word ({vouch.source}): "
                       f"{', '.join(ignored)}")
    return unknown, ignored


# Megatron-LM v1's names of flags renamed in v2.0 (where v1's --warmup, a fraction, became --lr-warmup-fraction).
MEGATRON_V1_SPELLINGS = ("--model-parallel-size", "--batch-size", "--warmup")


def _one_spelling(t: Translation) -> None:
    """Other spellings of a mapped flag (a fork's --rope-theta for --rotary-base) become the row's first spelling,
    so every handler reads one name; both spellings with different values is an error naming them."""
    renamed = {}
    for flag in list(t.given):
        rule = rule_for(flag)
        if rule is None or rule.status != "mapped" or flag == rule.flags[0]:
            continue
        canonical = rule.flags[0]
        value = t.given.pop(flag)
        if canonical in t.given and t.given[canonical] != value:
            t.errors.append(f"{flag} {value} and {canonical} {t.given[canonical]} are the same setting with "
                            "different values; keep one")
            continue
        t.given[canonical] = value
        renamed[flag] = canonical
    if renamed:
        v1 = [flag for flag in renamed if flag in MEGATRON_V1_SPELLINGS]
        t.notes.append("other spellings read as the mapped flag: "
                       + ", ".join(f"{a} = {b}" for a, b in renamed.items())
                       + (f" ({', '.join(v1)}: Megatron-LM v1's names, which Megatron-LM refuses since v2.0)"
                          if v1 else ""))
