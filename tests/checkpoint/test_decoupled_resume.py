"""Checkpoints and the decoupled-LR parameter group: switching --decoupled-lr on at a resume is refused clearly
(the checkpoint has no optimizer state for the new group), switching it off resumes."""
import pytest

from tests.checkpoint.ckpt_helpers import spawn_sequence

pytestmark = [pytest.mark.dist, pytest.mark.slow]

BASE = {"max_steps": 4, "save_steps": 2, "save_hf_weights": False}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    seq = [("plain", dict(BASE, exit_interval=2, out="a"), {}, None),
           ("turned_on", dict(BASE, decoupled_lr=3e-3, resume_from_checkpoint="latest", out="a"), {}, None),
           ("turned_on_fresh_moments", dict(BASE, decoupled_lr=3e-3, resume_from_checkpoint="latest",
                                            load_optim=False, out="a"), {}, None),
           ("decoupled", dict(BASE, decoupled_lr=3e-3, exit_interval=2, out="b"), {}, None),
           ("turned_off", dict(BASE, resume_from_checkpoint="latest", out="b"), {}, None)]
    return spawn_sequence(1, tmp_path_factory.mktemp("decoupled_resume"), seq, timeout=500)[0]


def test_turning_decoupled_lr_on_at_resume_is_refused_clearly(runs):
    err = runs["turned_on"]
    assert err.startswith("CheckpointError:") and "optimizer state for 2 parameter groups" in err, err
    assert "this run has 3" in err and "--no-load-optim" in err
    assert runs["turned_on_fresh_moments"]["iteration"] == 4


def test_turning_decoupled_lr_off_resumes(runs):
    assert runs["decoupled"]["iteration"] == 2 and runs["turned_off"]["iteration"] == 4
