"""Every parallel layout trains like a single process: per-iteration losses and gradient norms
over 10 iterations in fp32 (gradient clipping is active: the norms are above max_grad_norm 1.0)."""
import numpy as np
import pytest

from tests.engine.helpers import spawn_layouts

pytestmark = [pytest.mark.dist, pytest.mark.slow]

RTOL = 1e-4


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """World of one: the plain run, then micro-batch 4 × 1 accumulation and per-token variants."""
    tmp = tmp_path_factory.mktemp("ref")
    return spawn_layouts(1, tmp, [
        ({}, False),                                                            # 0: reference, 4 micro-batches of 1
        ({"per_device_train_batch_size": 4}, False),                            # 1: one micro-batch of 4
        ({"calculate_per_token_loss": True}, True),                             # 2: per-token, ragged masks
        ({"calculate_per_token_loss": True, "per_device_train_batch_size": 4}, True),  # 3
        ({"chunk_loss_size": 8}, False),                                        # 4: chunked loss
        ({"init_model_with_meta_device": True}, False),                         # 5: meta-device build
    ])


def close(a, b, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(a["losses"]), np.asarray(b["losses"]), rtol=rtol)
    np.testing.assert_allclose(np.asarray(a["grad_norms"]), np.asarray(b["grad_norms"]), rtol=rtol)


def test_reference_learns_and_clips(reference):
    ref = reference[0]
    assert len(ref["losses"]) == 10 and ref["gradient_accumulation_steps"] == 4
    assert max(ref["grad_norms"]) > 1.0  # clipping is exercised in every comparison below


def test_accumulation_equals_one_big_micro_batch(reference):
    close(reference[0], reference[1])
    close(reference[2], reference[3])  # per-token normalisation, different token counts per sample


def test_per_token_loss_differs_from_mean_of_means(reference):
    assert not np.allclose(reference[0]["losses"], reference[2]["losses"])  # the two accountings are not the same


def test_chunked_loss_equals_plain(reference):
    close(reference[0], reference[4], rtol=1e-5)


def test_meta_device_init_equals_eager(reference):
    close(reference[0], reference[5], rtol=1e-6)


def test_two_ranks_fsdp_tp_and_variants(reference, tmp_path):
    fsdp = {"data_parallel": "fsdp"}  # on CPU in fp32, plain data parallelism would otherwise replicate (auto)
    fsdp, tp, fsdp_pt, fsdp_meta_chunk_recompute, tp_pt_meta, rep, rep_pt, rep_meta_chunk_recompute = spawn_layouts(
        2, tmp_path, [
            (fsdp, False),
            ({"tp_size": 2}, False),
            ({"calculate_per_token_loss": True, **fsdp}, True),
            ({"init_model_with_meta_device": True, "chunk_loss_size": 8, "recompute": True, **fsdp}, False),
            ({"tp_size": 2, "calculate_per_token_loss": True, "init_model_with_meta_device": True}, True),
            ({}, False),                                            # replicated (auto)
            ({"calculate_per_token_loss": True}, True),
            ({"init_model_with_meta_device": True, "chunk_loss_size": 8, "recompute": True}, False),
        ])
    assert fsdp["gradient_accumulation_steps"] == 2 and tp["gradient_accumulation_steps"] == 4
    close(reference[0], fsdp)
    close(reference[0], tp)
    close(reference[2], fsdp_pt)
    close(reference[0], fsdp_meta_chunk_recompute)
    close(reference[2], tp_pt_meta)  # per-token accounting over the vocabulary-parallel loss
    close(reference[0], rep)
    close(reference[2], rep_pt)
    close(reference[0], rep_meta_chunk_recompute)


def test_four_ranks_fsdp_x_tp_and_hsdp(reference, tmp_path):
    fsdp_tp, hsdp = spawn_layouts(4, tmp_path, [
        ({"tp_size": 2}, False),
        ({"fsdp_size": 2}, False),          # 2 replicas × 2 shards
    ])
    close(reference[0], fsdp_tp)
    close(reference[0], hsdp)
