"""One rank in fp32 trains unwrapped (nothing to shard: parallel.nothing_to_shard) and still trades checkpoints
with FSDP-sharded runs both ways: a 2-rank checkpoint resumes on one rank, and a one-rank checkpoint (plain
tensors) resumes on 2 ranks, each following the uninterrupted run to float-reduction precision."""
import numpy as np
import pytest

from tests.checkpoint.ckpt_helpers import spawn_sequence

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ITERS = 6
RTOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("world_one")
    base = {"max_steps": ITERS, "save_hf_weights": False, "save_steps": 0}
    sharded = dict(base, data_parallel="fsdp")  # FSDP shards on 2 ranks (auto would replicate this fp32 CPU run)
    two = spawn_sequence(2, tmp, [
        ("ref2", sharded, {}, None),
        ("part2", dict(sharded, exit_interval=3, out="from2"), {}, None),
    ], timeout=500)[0]
    one = spawn_sequence(1, tmp, [
        ("rest1", dict(base, resume_from_checkpoint="latest", out="from2"), {}, None),
        ("part1", dict(base, exit_interval=3, out="from1"), {}, None),
    ], timeout=500)[0]
    back = spawn_sequence(2, tmp, [("rest2", dict(sharded, resume_from_checkpoint="latest", out="from1"), {}, None)],
                          timeout=500)[0]
    results = {**two, **one, **back}
    for name, res in results.items():
        assert not isinstance(res, str), f"{name}: {res}"
    return results


def test_one_rank_resumes_a_two_rank_checkpoint(runs):
    ref, rest = runs["ref2"], runs["rest1"]
    assert rest["world_size"] == 1 and rest["iteration"] == ITERS
    np.testing.assert_allclose(rest["losses"], ref["losses"][3:], rtol=RTOL)


def test_two_ranks_resume_a_one_rank_checkpoint(runs):
    ref, part, rest = runs["ref2"], runs["part1"], runs["rest2"]
    np.testing.assert_allclose(part["losses"], ref["losses"][:3], rtol=RTOL)
    assert rest["world_size"] == 2 and rest["iteration"] == ITERS
    np.testing.assert_allclose(rest["losses"], ref["losses"][3:], rtol=RTOL)
