"""Megatron's schedule flags end to end: --rampup-batch-size with --train-samples and --decoupled-lr, translated and
trained on 2 CPU ranks with mock data; the translation of the batch-schedule and decoupled-LR flags."""
import pytest

from fsdp2_core.config.batch_schedule import RampupBatch
from fsdp2_core.testing.spawn import spawn
from megatron_compat.translate import translate

FLAGS = ("--num-layers 2 --hidden-size 32 --ffn-hidden-size 64 --num-attention-heads 4 --seq-length 32 "
         "--max-position-embeddings 32 --position-embedding-type rope --normalization RMSNorm --swiglu "
         "--disable-bias-linear --hidden-dropout 0 --attention-dropout 0 --untie-embeddings-and-output-weights "
         "--micro-batch-size 1 --global-batch-size 4 --rampup-batch-size 2 2 8 --train-samples 24 "
         "--lr 1e-2 --min-lr 1e-3 --decoupled-lr 3e-2 --decoupled-min-lr 2e-3 --lr-decay-style cosine "
         "--lr-warmup-samples 4 --mock-data --tokenizer-type NullTokenizer --vocab-size 60 --log-interval 1 "
         "--seed 3").split()
# ramp 2 -> 4 over 8 samples (one increment): 2 while consumed <= 7, 4 from 8 on; 5 ramp iterations reach 12,
# then (24 - 12) // 4 = 3 more (Megatron-LM 0.16.1 update_train_iters)
BATCHES = [2, 2, 2, 2, 4, 4, 4, 4]


def train_from_flags(out_dir):
    from fsdp2_core.train import CheckpointHooks, run_training
    result = translate(FLAGS + ["--save", out_dir], world_size=2)
    assert result.ok, result.problems()
    lines = []
    summary = run_training(result.config, checkpoint=CheckpointHooks(), print_fn=lines.append)
    return summary, [l for l in lines if l.startswith(" iteration")]


@pytest.mark.dist
@pytest.mark.slow
def test_ramp_and_decoupled_lr_flags_train(tmp_path):
    summary, lines = spawn(2, train_from_flags, str(tmp_path / "out"))[0]
    assert summary["global_batch_sizes"] == BATCHES and summary["consumed_train_samples"] == 24
    assert summary["train_iters"] == 8 and len(summary["losses"]) == 8
    assert [" global batch size:     2 |" in l for l in lines] == [b == 2 for b in BATCHES]


def _ok(argv, world=2):
    result = translate(argv, world_size=world)
    assert result.ok, result.problems()
    return result


def test_translation_of_the_ramp_with_samples():
    t = _ok(FLAGS + ["--save", "/ckpt/x"]).config.training
    assert t.rampup_batch_size == [2, 2, 8] and t.train_samples == 24 and t.global_batch_size == 4
    assert t.max_steps == RampupBatch(2, 2, 8, 4).train_iters(24) == len(BATCHES)
    assert (t.decoupled_lr, t.decoupled_min_lr, t.lr_warmup_steps) == (3e-2, 2e-3, 1.0)


def _replace(argv, flag, words):
    i = argv.index(flag)
    end = i + 1
    while end < len(argv) and not argv[end].startswith("--"):
        end += 1
    return argv[:i] + ([flag] + words if words is not None else []) + argv[end:]


BASE = _replace(_replace(FLAGS, "--rampup-batch-size", None), "--train-samples", None) + [
    "--train-iters", "20", "--save", "/ckpt/x"]


def test_ramp_with_train_iters_converts_with_a_warning():
    result = _ok(BASE + ["--rampup-batch-size", "2", "2", "8"])
    assert result.config.training.max_steps == 20 and result.config.training.train_samples is None
    assert any("WARNING: --rampup-batch-size with --train-iters: Megatron-LM 0.16 refuses" in n for n in result.notes)


def test_step_schedule_and_the_global_batch():
    schedule = ["--step-batch-size-schedule", "0:2 256:4"]  # tokens: 256 // 32 = 8 samples
    result = _ok(_replace(BASE, "--global-batch-size", None) + schedule)
    t = result.config.training
    assert t.step_batch_size_schedule == "0:2 256:4" and t.global_batch_size == 2  # Megatron's micro × dp
    assert any("without --global-batch-size" in n for n in result.notes)
    assert _ok(BASE + schedule).config.training.global_batch_size == 4  # equal to the last batch: accepted
    wrong = translate(_replace(BASE, "--global-batch-size", ["8"]) + schedule, world_size=2)
    assert "--global-batch-size 8 and --step-batch-size-schedule (ending at 4) disagree" in " ".join(wrong.errors)
    bad = translate(BASE + ["--step-batch-size-schedule", "0:4 256:2"], world_size=2)
    assert "must not decrease" in " ".join(bad.errors)


@pytest.mark.parametrize("extra,problem", [
    (["--rampup-batch-size", "2", "2", "8", "--step-batch-size-schedule", "0:4"], "exclude each other"),
    (["--rampup-batch-size", "2", "2", "8", "--train-tokens", "640"],
     "--train-tokens as the run's length counts steps of a constant global batch"),  # LR token counts: accepted
    (["--rampup-batch-size", "3", "2", "8"], "a multiple of 2"),
])
def test_schedule_refusals(extra, problem):
    result = translate(BASE + extra, world_size=2)
    assert problem in " ".join(result.problems()), result.problems()


def test_decoupled_min_lr_alone_has_no_effect_as_in_megatron():
    result = _ok(_replace(BASE, "--decoupled-lr", None))
    assert result.config.training.decoupled_lr is None and result.config.training.decoupled_min_lr is None
    line = next(l for l in result.lines if l.flag == "--decoupled-min-lr")
    assert line.status == "absorbed" and "without --decoupled-lr" in line.text
