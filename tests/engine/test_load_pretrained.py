"""A Hugging Face directory loads the same eagerly and shard by shard on the meta device (2 ranks)."""
import numpy as np
import pytest
import torch

from fsdp2_core.testing.tiny import LLAMA
from tests.engine.helpers import spawn_layouts

pytestmark = pytest.mark.dist


def test_meta_device_loading_equals_from_pretrained(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM
    arch = dict(LLAMA)
    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch.pop("model_type"), **arch))
    model.save_pretrained(tmp_path / "hf")
    common = {"architecture": None, "model_name_or_path": str(tmp_path / "hf"), "train_from_scratch": False}
    eager, meta = spawn_layouts(2, tmp_path, [(common, False),
                                              ({**common, "init_model_with_meta_device": True}, False)])
    np.testing.assert_allclose(eager["losses"], meta["losses"], rtol=1e-6)
    np.testing.assert_allclose(eager["grad_norms"], meta["grad_norms"], rtol=1e-6)
