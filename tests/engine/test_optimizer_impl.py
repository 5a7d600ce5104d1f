"""AdamW's fused and foreach implementations: the same parameters after a few steps, on 1 and 2 ranks (FSDP
DTensor shards, or replicated whole tensors), the choice made per device and dtype, printed, and kept across a
checkpoint load."""
import copy

import pytest
import torch

from fsdp2_core.testing.spawn import spawn
from fsdp2_core.testing.tiny import SyntheticDataset, tiny_config
from fsdp2_core.train.data import collate
from fsdp2_core.train.optimizer import adamw_implementation, build_optimizer, describe_optimizer, has_fused_adamw

STEPS = 4


def _steps_with(implementation: str, tmp: str, data_parallel: str):
    """Full parameters after STEPS engine iterations (FSDP over the world, weight decay, clipping) with the given
    AdamW implementation, and the implementation the optimizer reports."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from fsdp2_core.device import init_distributed
    from fsdp2_core.parallel import build_mesh
    from fsdp2_core.train.entry import build_parallel_model
    from fsdp2_core.train.lr_schedule import build_schedule
    from fsdp2_core.train.step import RunContext, train_step
    cfg = tiny_config(tmp, weight_decay=0.1, max_grad_norm=0.05, warmup_ratio=0.0, data_parallel=data_parallel)
    device = init_distributed("cpu")
    world, rank = dist.get_world_size(), dist.get_rank()
    mesh = build_mesh(cfg.parallel, world, "cpu")
    model = build_parallel_model(cfg, device, mesh)
    optimizer = build_optimizer(model, cfg.training, implementation=implementation)
    micro = 4 // world
    ctx = RunContext(cfg, model, optimizer, build_schedule(cfg.training, 100, 4), mesh, device, 1, 4)
    data = SyntheticDataset(4 * STEPS)
    full = lambda: {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone()  # noqa: E731
                    for n, p in model.named_parameters()}
    before = full()
    for step in range(STEPS):
        start = step * 4 + rank * micro
        train_step(ctx, [collate([data[i] for i in range(start, start + micro)])])
    after = full()
    moved = all(not torch.equal(before[n], after[n]) for n in after)
    return after, optimizer.implementation, any(isinstance(p, DTensor) for p in model.parameters()), moved


def _both(tmp, data_parallel):
    import torch.distributed as dist
    out = []
    for implementation in ("fused", "foreach"):
        params, *facts = _steps_with(implementation, tmp, data_parallel)
        out.append(({n: t.numpy() for n, t in params.items()}, *facts))  # arrays travel back by value
    dist.destroy_process_group()
    return out


def _assert_same(fused, foreach):
    assert fused.keys() == foreach.keys()
    for name in fused:
        torch.testing.assert_close(torch.from_numpy(fused[name]), torch.from_numpy(foreach[name]), rtol=1e-5,
                                   atol=1e-6, msg=name)


@pytest.mark.dist
@pytest.mark.parametrize("world, data_parallel", [(1, "auto"), (2, "fsdp"), (2, "replicate")])
def test_fused_and_foreach_give_the_same_parameters(world, data_parallel, tmp_path):
    (fused, impl_a, sharded, moved), (foreach, impl_b, _, _) = spawn(world, _both, str(tmp_path), data_parallel)[0]
    assert (impl_a, impl_b) == ("fused", "foreach")
    assert moved  # every parameter updated
    # FSDP's DTensor shards on 2 ranks; replicated or one fp32 rank: plain tensors
    assert sharded == (data_parallel == "fsdp")
    _assert_same(fused, foreach)


def _linear_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))


def test_choice_per_device_and_dtype_and_log_line(tmp_path):
    cfg = tiny_config(str(tmp_path))
    assert has_fused_adamw(torch.device("cpu"), torch.float32)  # PyTorch has fused AdamW on CPU
    assert not has_fused_adamw(torch.device("meta"), torch.float32)
    assert adamw_implementation([torch.zeros(2)]) == "fused"
    assert adamw_implementation([torch.zeros(2, device="meta")]) == "foreach"
    optimizer = build_optimizer(_linear_model(), cfg.training)
    assert optimizer.implementation == "fused"
    assert all(g["fused"] and not g["foreach"] for g in optimizer.param_groups)
    assert describe_optimizer(optimizer) == "optimizer: AdamW, fused implementation (cpu float32)"
    with pytest.raises(ValueError, match="expected one of fused, foreach"):
        build_optimizer(_linear_model(), cfg.training, implementation="apex")


def _train(model, optimizer, steps):
    for i in range(steps):
        torch.manual_seed(100 + i)
        model(torch.randn(4, 8)).square().sum().backward()
        optimizer.step()
        optimizer.zero_grad()


def test_implementation_kept_across_a_state_load(tmp_path):
    """A state written by a foreach optimizer loads into a fused one: it stays fused and continues the same run."""
    cfg = tiny_config(str(tmp_path), weight_decay=0.1)
    writer_model = _linear_model()
    writer = build_optimizer(writer_model, cfg.training, implementation="foreach")
    _train(writer_model, writer, 2)
    saved_params = {k: v.clone() for k, v in writer_model.state_dict().items()}
    saved_state = copy.deepcopy(writer.state_dict())  # its tensors would move on with the writer
    assert saved_state["param_groups"][0]["foreach"] is True
    _train(writer_model, writer, 2)

    reader_model = _linear_model()
    reader_model.load_state_dict(saved_params)
    reader = build_optimizer(reader_model, cfg.training)
    reader.load_state_dict(saved_state)
    assert reader.implementation == "fused"
    assert all(g["fused"] and not g["foreach"] for g in reader.param_groups)
    _train(reader_model, reader, 2)
    for name, value in writer_model.state_dict().items():
        torch.testing.assert_close(reader_model.state_dict()[name], value, rtol=1e-5, atol=1e-6)
