"""The mapped rows are the one source of the translation: every row round-trips (flags -> config -> flags ->
config), every group it names has its handlers, and a row added in one place reaches --list-flags, the
migration guide and --to-megatron."""
from fsdp2_core.config import FIELD_INDEX, TrainConfig, config_to_sections
from megatron_compat import groups, mapping, registry
from megatron_compat.flag_spec import spec_for
from megatron_compat.mapping import GROUP_FIELDS, MAPPED_RULES, plain
from megatron_compat.reverse import GROUP_REVERSE, to_megatron
from megatron_compat.translate import translate
from tools import gen_docs

WORLD = 4
BASE = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --save /ckpt/run "
        "--data-path /data/corpus_text_document --tokenizer-type NullTokenizer --vocab-size 100").split()
# A value of each type that differs from every Megatron default the rows meet.
INVENTED = {"int": ["3"], "float": ["0.25"], "str": ["/invented/value"]}
MAPPED = [rule for rule in MAPPED_RULES if rule.status == "mapped"]
# Base flags a row's example cannot be combined with (Megatron refuses both together).
EXCLUDES = {"--train-samples": ("--train-iters",), "--patch-tokenizer-type": ("--tokenizer-type", "--vocab-size"),
            "--rampup-batch-size": ("--train-iters",), "--step-batch-size-schedule": ("--global-batch-size",),
            **{f"--{s}-weighted-split-paths{p}": ("--data-path",) for s in ("train", "valid", "test")
               for p in ("", "-path")}}  # the forks' two data modes exclude each other
# Rows whose only accepted value is what the dialect already gives: their example changes nothing.
RESTATE_DEFAULTS = {"--expert-tensor-parallel-size", "--dataloader-type", "--optimizer", "--dataset",
                    "--bias-gelu-fusion",
                    "--sequence-parallel"}  # on by default here (Megatron's advice), so the flag restates it


def _split(argv):
    """argv -> {flag: [values]} in order."""
    out, flag = {}, None
    for token in argv:
        if token.startswith("--"):
            flag = token
            out[flag] = []
        else:
            out[flag].append(token)
    return out


def _with(base, example):
    """The base command line with the example's flags added or replacing the base's values."""
    merged = _split(base)
    merged.update(_split(example))
    return [word for flag, values in merged.items() for word in [flag, *values]]


def example_for(rule):
    if rule.example:
        return list(rule.example)
    spec = spec_for(rule.flags[0])
    return [rule.flags[0]] + ([] if spec.kind == "switch" else INVENTED[spec.kind])


def _config(argv):
    result = translate(argv, world_size=WORLD)
    assert result.ok, result.problems()
    return result.config


def _flat(cfg):
    return {name: value for part in config_to_sections(cfg).values() for name, value in part.items()}


BASE_CONFIG = _config(BASE)
BASE_LEFTOVER = set(to_megatron(BASE_CONFIG)[1])


def _round_trip_problem(rule):
    """What is wrong with this row's round trip, or None."""
    flag = rule.flags[0]
    base = {f: v for f, v in _split(BASE).items() if f not in EXCLUDES.get(flag, ())}
    argv = _with([w for f, v in base.items() for w in [f, *v]], example_for(rule))
    result = translate(argv, world_size=WORLD)
    if not result.ok:
        return f"{flag}: its example does not translate: {result.problems()}"
    first = result.config
    if first == BASE_CONFIG and flag not in RESTATE_DEFAULTS:
        return f"{flag}: its example changes nothing; give the row an example that does"
    flags, leftover = to_megatron(first)
    again = translate(flags, world_size=WORLD)
    if not again.ok or again.config != first:
        return f"{flag}: {' '.join(argv)}\n    -> {' '.join(flags)}\n    -> {again.problems() or 'a different config'}"
    if set(leftover) - BASE_LEFTOVER:
        return f"{flag}: fields with no way back to flags: {sorted(set(leftover) - BASE_LEFTOVER)}"
    if rule.kind in ("plain", "switch") and _flat(first)[rule.field] != _flat(BASE_CONFIG)[rule.field] \
            and flag not in flags:
        return f"{flag} sets {rule.field}; the reverse wrote another flag for it: {' '.join(flags)}"
    return None


def test_every_mapped_row_round_trips():
    """flags -> config -> flags -> config is the identity for every mapped row's example."""
    problems = [p for p in map(_round_trip_problem, MAPPED) if p]
    assert not problems, "\n".join(problems)


def test_rows_name_real_fields_and_complete_groups():
    fields = set(FIELD_INDEX) | {"architecture"}
    for rule in MAPPED:
        assert all(spec_for(flag) is not None for flag in rule.flags), rule.flags
        if rule.kind in ("plain", "switch"):
            assert {rule.field, *(name for name, _ in rule.also)} <= fields, rule.flags
    named = {rule.group for rule in MAPPED if rule.kind == "group"}
    handlers = set(groups.HANDLERS) | set(groups.LATE_HANDLERS)
    assert named == set(GROUP_FIELDS) == set(GROUP_REVERSE) == handlers
    assert {f for written in GROUP_FIELDS.values() for f in written} <= fields


def test_a_row_added_in_one_place_reaches_every_view(monkeypatch):
    """`--save-total-limit`-like case: a reference flag nobody maps yet, made a plain row in mapping.py only."""
    flag, field_name = "--retro-workdir", "wandb_save_dir"  # any unmapped reference flag and a plain str field
    assert registry.rule_for(flag).status != "mapped"
    row = plain(flag, field_name)
    monkeypatch.setattr(mapping, "MAPPED_RULES", MAPPED_RULES)  # restored by monkeypatch, appended in place below
    MAPPED_RULES.insert(0, row)
    registry.registry.cache_clear()
    try:
        assert f"{flag}\tmapped\ttraining.{field_name}" in registry.list_flags_lines()
        assert f"| `{flag}` |" in gen_docs.migration_guide()
        cfg = TrainConfig()
        cfg.training.wandb_save_dir = "/somewhere"
        assert to_megatron(cfg)[0][:2] == [flag, "/somewhere"]
        assert _config(BASE + [flag, "/elsewhere"]).training.wandb_save_dir == "/elsewhere"
    finally:
        MAPPED_RULES.remove(row)
        registry.registry.cache_clear()
