"""One rank computing and reducing in fp32 trains unwrapped (FSDP would only copy); any other layout is wrapped."""
import pytest
import torch

from fsdp2_core.testing.spawn import spawn
from fsdp2_core.testing.tiny import tiny_config

pytestmark = pytest.mark.dist


def _layouts(tmp):
    import torch.distributed as dist
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    from fsdp2_core.device import init_distributed
    from fsdp2_core.parallel import build_mesh
    from fsdp2_core.train.entry import build_parallel_model
    device = init_distributed("cpu")
    out = {}
    layouts = {"fp32": {}, "bf16": {"param_dtype": "bf16"}, "meta": {"init_model_with_meta_device": True}}
    for name, over in layouts.items():
        cfg = tiny_config(f"{tmp}/{name}", **over)
        model = build_parallel_model(cfg, device, build_mesh(cfg.parallel, dist.get_world_size(), "cpu"))
        out[name] = (isinstance(model, FSDPModule), any(isinstance(p, DTensor) for p in model.parameters()),
                     model._fsdp2_compute_dtype, all(p.device.type == "cpu" for p in model.parameters()))
    dist.destroy_process_group()
    return out


def test_one_fp32_rank_is_left_unwrapped(tmp_path):
    got = spawn(1, _layouts, str(tmp_path))[0]
    assert got["fp32"] == (False, False, torch.float32, True)
    assert got["meta"] == (False, False, torch.float32, True)  # meta-built, then materialised unwrapped
    assert got["bf16"] == (True, True, torch.bfloat16, True)   # FSDP keeps fp32 masters and casts
