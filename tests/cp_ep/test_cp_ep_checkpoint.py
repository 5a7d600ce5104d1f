"""A checkpoint saved with ep_size 2 holds full expert dimensions and resumes with ep_size 1
(weights and optimizer state resharded by DCP): the resumed iterations equal an uninterrupted run."""
import os

import numpy as np
import pytest

from tests.cp_ep.cp_ep_helpers import QWEN3_MOE, spawn_checkpointed

pytestmark = [pytest.mark.dist, pytest.mark.slow]

BASE = {"architecture": QWEN3_MOE, "model_id": "qwen3_moe", "max_grad_norm": 0.5, "save_hf_weights": False}


def test_saved_with_ep2_resumes_with_ep1(tmp_path):
    runs = [(dict(BASE), "full"),                                            # ep 1 throughout, 10 iterations
            (dict(BASE, ep_size=2, exit_interval=4), "ck"),                  # ep 2, saves at 4 and stops
            (dict(BASE, resume_from_checkpoint="latest"), "ck")]             # ep 1 from that checkpoint
    full, part, rest = spawn_checkpointed(2, tmp_path, runs)[0]
    assert os.path.isdir(os.path.join(str(tmp_path), "ck", "iter_0000004"))
    assert part["iteration"] == 4 and rest["iteration"] == 10 and len(rest["losses"]) == 6
    np.testing.assert_allclose(part["losses"] + rest["losses"], full["losses"], rtol=1e-4)
    np.testing.assert_allclose(part["grad_norms"] + rest["grad_norms"], full["grad_norms"], rtol=1e-4)
