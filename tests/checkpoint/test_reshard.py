"""2 ranks resume a checkpoint saved by 4: DCP reshards model and optimizer state by parameter name,
and the data position maps by consumed samples. The resumed losses follow the 4-rank run's to
float-reduction precision; without the optimizer state (--no-load-optim) they visibly do not,
so the tolerance tells a resharded optimizer from a fresh one."""
import numpy as np
import pytest

from tests.checkpoint.ckpt_helpers import spawn_sequence

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ITERS = 8
RTOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reshard")
    base = {"max_steps": ITERS, "save_hf_weights": False, "data_parallel": "fsdp"}  # sharded (auto would replicate)
    four = spawn_sequence(4, tmp, [
        ("ref4", dict(base, save_steps=0), {}, None),
        ("part4", dict(base, save_steps=0, exit_interval=4, out="run"), {}, None),
    ], timeout=500)[0]
    two = spawn_sequence(2, tmp, [
        ("rest2", dict(base, resume_from_checkpoint="latest", out="run"), {}, None),
        ("fresh_optim2", dict(base, resume_from_checkpoint=str(tmp / "run" / "iter_0000004"), load_optim=False,
                              out="noopt"), {}, None),
    ], timeout=500)[0]
    for name, res in {**four, **two}.items():
        assert not isinstance(res, str), f"{name}: {res}"
    return four, two


def test_two_ranks_resume_a_four_rank_checkpoint(runs):
    four, two = runs
    ref, part, rest = four["ref4"], four["part4"], two["rest2"]
    assert part["world_size"] == 4 and rest["world_size"] == 2
    assert part["iteration"] == 4 and rest["iteration"] == ITERS and rest["consumed_train_samples"] == ITERS * 4
    assert part["losses"] == ref["losses"][:4]
    np.testing.assert_allclose(rest["losses"], ref["losses"][4:], rtol=RTOL)
    np.testing.assert_allclose(rest["grad_norms"], ref["grad_norms"][4:], rtol=1e-4)
    assert rest["learning_rates"] == pytest.approx(ref["learning_rates"][4:], rel=1e-12)


def test_the_tolerance_sees_a_missing_optimizer_state(runs):
    four, two = runs
    fresh, ref = two["fresh_optim2"]["losses"], four["ref4"]["losses"]
    assert fresh[0] == pytest.approx(ref[4], rel=RTOL)               # same weights and data
    assert not np.allclose(fresh[1:], ref[5:], rtol=RTOL, atol=0)
