"""pretrain_gpt.py --load MEGATRON_SAVE --save NEW_DIR continues the Megatron run: iteration N+1 is logged first,
with Megatron's learning rate for it and consumed samples continuing from the checkpoint's (2 gloo ranks)."""
import contextlib
import io
import os
import re

import pytest

from fsdp2_core.testing.spawn import spawn_runs
from tests.checkpoint.ckpt_helpers import write_corpus
from tests.megatron_ckpt.conftest import save_dir
from tests.megatron_ckpt.mcore import GBS, ITERATION

pytestmark = [pytest.mark.dist, pytest.mark.slow, pytest.mark.subprocess]
CONSUMED = ITERATION * GBS + 3
LLAMA_FLAGS = ["--num-layers", "4", "--hidden-size", "32", "--num-attention-heads", "4", "--group-query-attention",
               "--num-query-groups", "2", "--ffn-hidden-size", "64", "--position-embedding-type", "rope",
               "--normalization", "RMSNorm", "--swiglu", "--disable-bias-linear",
               "--untie-embeddings-and-output-weights", "--max-position-embeddings", "64"]


def run_flags(corpus, load, save, *extra):
    return ["--micro-batch-size", "1", "--global-batch-size", str(GBS), "--train-iters", "20", "--lr", "1e-3",
            "--min-lr", "1e-4", "--lr-decay-style", "cosine", "--lr-warmup-iters", "2", "--seq-length", "16",
            "--tokenizer-type", "NullTokenizer", "--vocab-size", "119", "--make-vocab-size-divisible-by", "64",
            "--data-path", corpus, "--split", "100,0,0", "--log-interval", "1", "--exit-interval", str(ITERATION + 2),
            "--hidden-dropout", "0", "--attention-dropout", "0", "--num-workers", "0", "--load", load, "--save", save,
            *extra]


def run_pretrain(argv):
    """One pretrain_gpt.py run on this rank; rank 0's printed lines come back."""
    from megatron_compat.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def megatron_lr(consumed_after):
    """Megatron's learning rate once its OptimizerParamScheduler has counted `consumed_after` samples."""
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    class _Opt:
        param_groups = [{"wd_mult": 1.0}]
    sched = OptimizerParamScheduler(_Opt(), init_lr=0.0, max_lr=1e-3, min_lr=1e-4, lr_warmup_steps=2 * GBS,
                                    lr_decay_steps=20 * GBS, lr_decay_style="cosine", start_wd=0.01, end_wd=0.01,
                                    wd_incr_steps=20 * GBS, wd_incr_style="constant")
    sched.step(consumed_after)
    return _Opt.param_groups[0]["lr"]


def iterations(text):
    return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in re.finditer(
        r" iteration +(\d+)/ +\d+ \| consumed samples: +(\d+) \| .*?learning rate: (\S+) \|", text)]


@pytest.fixture(scope="module")
def runs(megatron_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("continue")
    corpus = write_corpus(str(tmp / "corpus"))
    argvs = {
        "legacy": run_flags(corpus, save_dir(megatron_root, "llama", "torch"), str(tmp / "legacy"), *LLAMA_FLAGS),
        "moments": run_flags(corpus, save_dir(megatron_root, "qwen3", "torch_dist_optim"), str(tmp / "moments")),
        "finetune": run_flags(corpus, save_dir(megatron_root, "llama", "torch_dist"), str(tmp / "finetune"),
                              "--finetune"),
    }
    results = spawn_runs(2, run_pretrain, list(argvs.values()), timeout=900)[0]
    return {name: (code, text, tmp / name) for name, (code, text) in zip(argvs, results)}


def test_continues_at_the_next_iteration_with_megatrons_lr_and_samples(runs):
    code, text, save = runs["legacy"]
    assert code == 0, text
    logged = iterations(text)
    assert [(i, c) for i, c, _ in logged] == [(ITERATION + 1, CONSUMED + GBS), (ITERATION + 2, CONSUMED + 2 * GBS)]
    assert logged[0][2] == "{:.6E}".format(megatron_lr(CONSUMED + GBS))
    assert f"at iteration {ITERATION}, consumed samples {CONSUMED}" in text
    assert "optimizer moments start fresh: " in text and "torch (legacy) checkpoint" in text
    assert os.path.isdir(save / f"iter_{ITERATION + 2:07d}")


def test_moments_carry_over_from_a_fully_reshardable_checkpoint(runs):
    code, text, _ = runs["moments"]
    assert code == 0, text
    assert "restored model, counters, scheduler, optimizer moments, rng" in text
    assert iterations(text)[0][:2] == (ITERATION + 1, CONSUMED + GBS)


def test_finetune_starts_a_new_run_from_the_weights(runs):
    code, text, _ = runs["finetune"]
    assert code == 0, text
    logged = iterations(text)
    assert logged[0][:2] == (1, GBS)
    assert logged[0][2] == "{:.6E}".format(megatron_lr(GBS))
