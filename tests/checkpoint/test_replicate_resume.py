"""Replicated data parallelism (parallel.data_parallel: replicate, plain tensors on every rank) and FSDP2 shards trade
checkpoints both ways on 2 ranks, each resumed run following the uninterrupted FSDP run to float-reduction
precision."""
import numpy as np
import pytest

from tests.checkpoint.ckpt_helpers import spawn_sequence

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ITERS = 6
RTOL = 1e-5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicate_resume")
    base = {"max_steps": ITERS, "save_hf_weights": False, "save_steps": 0}
    fsdp, replicate = dict(base, data_parallel="fsdp"), dict(base, data_parallel="replicate")
    results = spawn_sequence(2, tmp, [
        ("ref", fsdp, {}, None),
        ("part_rep", dict(replicate, exit_interval=3, out="from_rep"), {}, None),
        ("rest_fsdp", dict(fsdp, resume_from_checkpoint="latest", out="from_rep"), {}, None),
        ("part_fsdp", dict(fsdp, exit_interval=3, out="from_fsdp"), {}, None),
        ("rest_rep", dict(replicate, resume_from_checkpoint="latest", out="from_fsdp"), {}, None),
    ], timeout=600)[0]
    for name, res in results.items():
        assert not isinstance(res, str), f"{name}: {res}"
    return results


def test_fsdp_resumes_a_replicated_checkpoint(runs):
    ref, part, rest = runs["ref"], runs["part_rep"], runs["rest_fsdp"]
    np.testing.assert_allclose(part["losses"], ref["losses"][:3], rtol=RTOL)
    assert rest["iteration"] == ITERS
    np.testing.assert_allclose(rest["losses"], ref["losses"][3:], rtol=RTOL)


def test_replicate_resumes_an_fsdp_checkpoint(runs):
    ref, part, rest = runs["ref"], runs["part_fsdp"], runs["rest_rep"]
    np.testing.assert_allclose(part["losses"], ref["losses"][:3], rtol=RTOL)
    assert rest["iteration"] == ITERS
    np.testing.assert_allclose(rest["losses"], ref["losses"][3:], rtol=RTOL)
