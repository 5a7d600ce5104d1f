"""One set of real Megatron checkpoints (megatron-core 0.16.1 on 4 CPU gloo ranks) shared by every test here."""
import os

import pytest

from fsdp2_core.testing.spawn import spawn

from .mcore import SHAPES, build_all


@pytest.fixture(scope="session")
def megatron_root(tmp_path_factory):
    """<root>/<shape>/{torch,torch_dist}/ save directories and <root>/<shape>/logits.pt (megatron-core's logits);
    <root>/qwen3/torch_dist_optim/ also holds the distributed optimizer's state per parameter."""
    pytest.importorskip("megatron.core")  # a test extra; the output-safety tests here do not need it
    root = tmp_path_factory.mktemp("megatron")
    spawn(4, build_all, str(root), list(SHAPES), timeout=900)
    return root


def save_dir(root, shape: str, fmt: str) -> str:
    return os.path.join(str(root), shape, fmt)
