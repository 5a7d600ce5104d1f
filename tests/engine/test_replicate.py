"""Replicated data parallelism (parallel/replicate.py): the same losses, gradient norms and parameters as FSDP2 on
2 ranks (gradient accumulation, per-token loss over ragged masks, clipping, weight decay), the rule that picks it,
and a parameter without a gradient on one rank."""
import types

import numpy as np
import pytest
import torch

from fsdp2_core.config import ConfigError
from fsdp2_core.parallel.replicate import AUTO_MAX_PARAMS, use_replicate
from fsdp2_core.testing.spawn import spawn
from fsdp2_core.testing.tiny import SyntheticDataset, tiny_config

STEPS = 4


def _train(data_parallel: str, tmp: str):
    """Full parameters, losses and norms after STEPS iterations of 2 micro-batches per rank (global batch 4)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from fsdp2_core.device import init_distributed
    from fsdp2_core.parallel import build_mesh
    from fsdp2_core.train.data import collate
    from fsdp2_core.train.entry import build_parallel_model
    from fsdp2_core.train.lr_schedule import build_schedule
    from fsdp2_core.train.optimizer import build_optimizer
    from fsdp2_core.train.step import RunContext, train_step
    cfg = tiny_config(f"{tmp}/{data_parallel}", weight_decay=0.1, max_grad_norm=0.05, warmup_ratio=0.0,
                      calculate_per_token_loss=True, data_parallel=data_parallel)
    device = init_distributed("cpu")
    world, rank = dist.get_world_size(), dist.get_rank()
    mesh = build_mesh(cfg.parallel, world, "cpu")
    model = build_parallel_model(cfg, device, mesh)
    optimizer = build_optimizer(model, cfg.training)
    ctx = RunContext(cfg, model, optimizer, build_schedule(cfg.training, 100, 4), mesh, device, 2, 4)
    data = SyntheticDataset(4 * STEPS, ragged_mask=True)
    losses, norms = [], []
    for step in range(STEPS):
        first = step * 4 + rank * 2
        r = train_step(ctx, [collate([data[first]]), collate([data[first + 1]])])
        losses.append(r.loss)
        norms.append(r.grad_norm)
    params = {n: (p.full_tensor() if isinstance(p, DTensor) else p).detach().clone().numpy()
              for n, p in model.named_parameters()}
    layout = ("dtensor" if any(isinstance(p, DTensor) for p in model.parameters()) else "plain",
              getattr(model, "_fsdp2_grad_sync", None) is not None)
    return params, losses, norms, layout


def _both(tmp):
    import torch.distributed as dist
    out = [_train(mode, tmp) for mode in ("fsdp", "replicate", "auto")]
    dist.destroy_process_group()
    return out


@pytest.mark.dist
def test_replicate_trains_as_fsdp_on_two_ranks(tmp_path):
    ranks = spawn(2, _both, str(tmp_path))
    fsdp, replicate, auto = ranks[0]
    assert fsdp[3] == ("dtensor", False)
    assert replicate[3] == ("plain", True) and auto[3] == ("plain", True)  # auto: CPU, fp32, a tiny model
    assert max(fsdp[2]) > 0.05  # clipping is active
    np.testing.assert_allclose(replicate[1], fsdp[1], rtol=1e-6)
    np.testing.assert_allclose(replicate[2], fsdp[2], rtol=1e-5)
    assert replicate[1] == auto[1]
    for name, value in fsdp[0].items():
        np.testing.assert_allclose(replicate[0][name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    other = ranks[1][1][0]  # rank 1 holds exactly rank 0's replicated parameters
    assert all(np.array_equal(other[n], replicate[0][n]) for n in other)


def _mesh(world=2, tp=1, cp=1, ep=1):
    return types.SimpleNamespace(dims=types.SimpleNamespace(world_size=world, tp=tp, cp=cp, ep=ep))


def test_the_rule_that_picks_replicate(tmp_path):
    model = torch.nn.Linear(4, 4)
    p = tiny_config(str(tmp_path)).parallel
    assert p.data_parallel == "auto"
    assert use_replicate(_mesh(), p, model, "cpu")
    assert not use_replicate(_mesh(), p, model, "cuda")           # auto replicates on CPU only
    assert not use_replicate(_mesh(world=1), p, model, "cpu")     # one rank: nothing to reduce
    assert not use_replicate(_mesh(world=4, tp=2), p, model, "cpu")
    big = types.SimpleNamespace(parameters=lambda: [torch.empty(1).expand(AUTO_MAX_PARAMS + 1)])
    assert not use_replicate(_mesh(), p, big, "cpu")
    for over in ({"param_dtype": "bf16"}, {"fsdp_size": 2}, {"ignored_modules": ["lm_head"]}):
        q = tiny_config(str(tmp_path), **over).parallel
        assert not use_replicate(_mesh(), q, model, "cpu"), over
        with pytest.raises(ConfigError, match="data_parallel: replicate"):
            use_replicate(_mesh(), tiny_config(str(tmp_path), data_parallel="replicate", **over).parallel, model,
                          "cpu")
    assert use_replicate(_mesh(), tiny_config(str(tmp_path), data_parallel="replicate").parallel, model, "cuda")
    assert not use_replicate(_mesh(), tiny_config(str(tmp_path), data_parallel="fsdp").parallel, model, "cpu")


def _unused_on_one_rank():
    """Rank 1 never uses the second layer: its gradient there is zero, and no rank hangs. No rank uses the third:
    it keeps no gradient."""
    import torch.distributed as dist

    from fsdp2_core.parallel.replicate import GradSync
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    a, b, c = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    sync = GradSync(list(a.parameters()) + list(b.parameters()) + list(c.parameters()), dist.group.WORLD,
                    bucket_bytes=16, first_bucket_bytes=16)
    x = torch.full((2, 3), float(rank + 1))
    (b(a(x)) if rank == 0 else a(x)).sum().backward()
    sync.finish()
    grads = [p.grad.clone().numpy() for p in list(a.parameters()) + list(b.parameters())]
    unused = [p.grad for p in c.parameters()]
    dist.destroy_process_group()
    return grads, unused


@pytest.mark.dist
def test_a_parameter_without_gradient_on_one_rank():
    (g0, unused0), (g1, unused1) = spawn(2, _unused_on_one_rank)
    assert unused0 == unused1 == [None, None]
    for x, y in zip(g0, g1):
        np.testing.assert_array_equal(x, y)  # the same averaged gradient on both ranks
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    b(a(torch.full((2, 3), 1.0))).sum().backward()
    np.testing.assert_allclose(g0[2], b.weight.grad.numpy() / 2, rtol=1e-6)  # rank 0's gradient, averaged with 0
