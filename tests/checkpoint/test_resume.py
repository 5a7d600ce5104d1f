"""Two gloo ranks, fp32 on CPU, one sequence of runs sharing a process group setup:

exact resume after --exit-interval (synchronous and asynchronous saves), rotation, a checkpoint
without metadata skipped for the previous one (and refused when named), write errors that stop
the run and leave the previous checkpoint loadable, --no-load-optim, --finetune, save_only_model,
--exit-duration-in-mins, and the NaN/Inf skip limit."""
import errno
import functools
import os

import pytest

from tests.checkpoint.ckpt_helpers import (
    fail_writes,
    only_broken_checkpoints,
    poisoned,
    remove_file,
    spawn_sequence,
)

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ITERS = 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    p = lambda *parts: os.path.join(str(tmp), *parts)  # noqa: E731
    base = {"max_steps": ITERS, "save_hf_weights": False}  # export is test_hf_export's
    seq = [
        ("full", dict(base, save_steps=2, save_total_limit=2), {}, None),
        # Megatron's --save-retain-interval 4 with --save-interval 2: 2 goes once 4 is saved, 6 once 8 is
        ("retain", dict(base, save_steps=2, save_total_limit=None, save_retain_interval=4, out="retain"), {}, None),
        ("part", dict(base, save_steps=3, exit_interval=4, out="res"), {}, None),
        ("rest", dict(base, save_steps=3, resume_from_checkpoint="latest", out="res"), {}, None),
        # iter_0000008 loses its metadata: named explicitly it is an error, `latest` falls back to 6
        ("named_broken", dict(base, resume_from_checkpoint=p("res", "iter_0000008"), out="res"), {},
         functools.partial(remove_file, os.path.join("iter_0000008", ".metadata"))),
        ("fallback", dict(base, resume_from_checkpoint="latest", out="res"), {}, None),
        ("all_broken", dict(base, resume_from_checkpoint="latest", out="broken"), {}, only_broken_checkpoints),
        # asynchronous saves at 2 and 4 are written while training goes on; resume from 4 by name
        ("async_part", dict(base, save_steps=2, save_async=True, exit_interval=6, out="async"), {}, None),
        ("async_rest", dict(base, save_async=True, resume_from_checkpoint=p("async", "iter_0000004"),
                            out="async2"), {}, None),
        # write errors in the middle of a save: a read-only directory (sync), a full disk (async)
        ("write_error", dict(base, save_steps=2, out="werr"), {},
         functools.partial(fail_writes, "iter_0000004", errno.EACCES, 1)),
        ("after_write_error", dict(base, resume_from_checkpoint="latest", out="werr"), {}, None),
        ("disk_full_async", dict(base, save_steps=2, save_async=True, out="werr_async"), {},
         functools.partial(fail_writes, "iter_0000004", errno.ENOSPC, 0)),
        # partial restores
        ("no_load_optim", dict(base, resume_from_checkpoint=p("full", "iter_0000006"), load_optim=False,
                               out="noopt"), {}, None),
        ("finetune", dict(base, max_steps=2, resume_from_checkpoint=p("full", "iter_0000008"), finetune=True,
                          out="ft"), {}, None),
        ("model_only", dict(base, max_steps=2, save_only_model=True, out="mo"), {}, None),
        ("model_only_resume", dict(base, max_steps=4, resume_from_checkpoint="latest", out="mo"), {}, None),
        # exits and divergence
        ("duration", dict(base, exit_duration_in_mins=1e-9, save_hf_weights=True, out="dur"), {}, None),
        ("diverge", dict(base, out="nan", max_skipped_iterations=1), {}, functools.partial(poisoned, 2)),
    ]
    results = spawn_sequence(2, tmp, seq, timeout=500)
    return tmp, results[0], results[1]


def iters_in(path):
    return sorted(n for n in os.listdir(path) if n.startswith("iter_"))


def tracker(path):
    return int(open(os.path.join(path, "latest_checkpointed_iteration.txt")).read())


def test_exit_interval_then_resume_gives_the_same_losses(runs):
    tmp, r, _ = runs
    full, part, rest = r["full"], r["part"], r["rest"]
    assert part["iteration"] == 4 and len(part["losses"]) == 4
    assert rest["iteration"] == ITERS and rest["consumed_train_samples"] == ITERS * 4
    assert part["losses"] + rest["losses"] == full["losses"]          # bit-identical, iteration by iteration
    assert part["learning_rates"] + rest["learning_rates"] == full["learning_rates"]
    assert part["grad_norms"] + rest["grad_norms"] == full["grad_norms"]


def test_save_total_limit_keeps_newest_complete(runs):
    tmp = runs[0]
    assert iters_in(tmp / "full") == ["iter_0000006", "iter_0000008"] and tracker(tmp / "full") == 8
    assert not [n for n in os.listdir(tmp / "full") if n.endswith(".partial")]


def test_save_retain_interval_keeps_multiples_and_the_latest(runs):
    tmp = runs[0]
    assert iters_in(tmp / "retain") == ["iter_0000004", "iter_0000008"] and tracker(tmp / "retain") == 8


def test_checkpoint_without_metadata_is_skipped_for_the_previous_one(runs):
    tmp, r, r1 = runs
    for res in (r, r1):  # every rank gets the same clear error for the named checkpoint
        assert res["named_broken"].startswith("CheckpointError:")
        assert "iter_0000008 is not a complete checkpoint: no .metadata" in res["named_broken"]
    fb, full = r["fallback"], r["full"]
    assert fb["iteration"] == ITERS and len(fb["losses"]) == 2      # resumed from 6, trained 7 and 8
    assert fb["losses"] == full["losses"][6:]
    assert tracker(tmp / "res") == 8 and os.path.exists(tmp / "res" / "iter_0000008" / ".metadata")


def test_latest_with_only_incomplete_checkpoints_is_an_error(runs):
    _, r, r1 = runs
    for res in (r, r1):
        assert res["all_broken"].startswith("CheckpointError: resume_from_checkpoint latest:"), res["all_broken"]
        assert "holds checkpoints, but none is complete" in res["all_broken"]


def test_async_save_is_exact(runs):
    tmp, r, _ = runs
    assert r["async_part"]["iteration"] == 6 and tracker(tmp / "async") == 6
    assert r["async_part"]["losses"] == r["full"]["losses"][:6]
    assert r["async_rest"]["losses"] == r["full"]["losses"][4:]     # the checkpoint holds iteration 4's state


def test_write_error_stops_clearly_and_keeps_the_previous_checkpoint(runs):
    tmp, r, r1 = runs
    for res in (r, r1):
        err = res["write_error"]
        assert err.startswith("CheckpointError: saving checkpoint iteration 4"), err
        assert "Permission denied" in err and "iter_0000002 stays the latest checkpoint and loads" in err
    assert not os.path.exists(tmp / "werr" / "iter_0000004.partial")
    after = r["after_write_error"]
    assert after["iteration"] == ITERS and after["losses"] == r["full"]["losses"][2:]  # resumed from 2
    for res in (r, r1):
        err = res["disk_full_async"]
        assert err.startswith("CheckpointError: saving checkpoint iteration 4") and "No space left" in err, err
    assert tracker(tmp / "werr_async") == 2 and iters_in(tmp / "werr_async") == ["iter_0000002"]


def test_no_load_optim_and_finetune(runs):
    tmp, r, _ = runs
    full, noopt, ft = r["full"], r["no_load_optim"], r["finetune"]
    assert noopt["iteration"] == ITERS and len(noopt["losses"]) == 2
    assert noopt["losses"][0] == full["losses"][6]                  # same weights, same data
    assert noopt["losses"][1] != full["losses"][7]                  # fresh optimizer moments
    assert noopt["learning_rates"] == full["learning_rates"][6:]    # schedule placed at the consumed samples
    assert ft["iteration"] == 2 and ft["consumed_train_samples"] == 8
    assert ft["losses"][0] != full["losses"][0]                     # trained weights, counters from zero
    assert r["model_only"]["iteration"] == 2
    err = r["model_only_resume"]
    assert err.startswith("CheckpointError:") and "holds no optimizer state" in err and "--no-load-optim" in err


def test_exit_duration_saves_and_stops(runs):
    tmp, r, _ = runs
    assert r["duration"]["iteration"] == 1 and tracker(tmp / "dur") == 1
    assert not os.path.exists(tmp / "dur" / "hf_model")             # stopped early: no export


def test_nan_skip_limit_stops_with_a_clear_message(runs):
    _, r, r1 = runs
    for res in (r, r1):
        err = res["diverge"]
        assert err.startswith("TrainingDiverged: iteration 3: 2 iterations skipped"), err
        assert "limit of 1 (training.max_skipped_iterations)" in err
