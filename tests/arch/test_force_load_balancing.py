"""--moe-router-force-load-balancing (model.moe_router_force_load_balancing), a benchmarking aid: the routers' gate
logits become random standard-normal values (a straight-through estimator from a per-rank stream, as megatron-core's
RandomSTE), so tokens spread near-uniformly over the experts; routing then runs as usual."""
import pytest
import torch
import torch.nn.functional as F

from fsdp2_core.config import ConfigError
from fsdp2_core.config.validate import validate
from fsdp2_core.models.build import build_model
from fsdp2_core.models.random_logits import RandomLogitSource, random_logits_seed
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, DSV3, QWEN2_MOE, QWEN3_MOE, flag_config

FLAG = " --moe-router-force-load-balancing"


# ---------------------------------------------------------------- the straight-through function

def test_forward_is_standard_normal_whatever_the_input():
    small, large = torch.randn(4096, 8), 1e3 * torch.randn(4096, 8) + 50
    a, b = RandomLogitSource(7)(small), RandomLogitSource(7)(large)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # the input's values play no part
    assert a.shape == small.shape and a.dtype == small.dtype
    assert abs(float(a.mean())) < 0.05 and abs(float(a.std()) - 1) < 0.05


def test_backward_passes_the_gradient_unchanged():
    logits = torch.randn(16, 8, requires_grad=True)
    grad = torch.randn(16, 8)
    RandomLogitSource(7)(logits).backward(grad)
    torch.testing.assert_close(logits.grad, grad, rtol=0, atol=0)


def test_each_rank_its_own_stream_and_a_seed_reproduces_it():
    seeds = [random_logits_seed(42, rank, tp_size=1) for rank in (0, 1)]
    assert seeds == [42 + 1024, 42 + 1024 + 100]  # Megatron's expert-parallel offset, 100 per rank
    assert random_logits_seed(42, 0, tp_size=2) == random_logits_seed(42, 1, tp_size=2)  # one TP group routes alike
    logits = torch.zeros(64, 8)
    rank0, rank1 = (RandomLogitSource(s)(logits) for s in seeds)
    assert not torch.allclose(rank0, rank1)
    again = RandomLogitSource(seeds[0])
    torch.testing.assert_close(again(logits), rank0, rtol=0, atol=0)
    assert not torch.allclose(again(logits), rank0)  # the stream moves on: each call draws new logits


# ---------------------------------------------------------------- a tiny MoE model built from flags

def _model(flags):
    return build_model(flag_config(flags), torch.device("cpu"), meta=False, seed=3)


def _routes(model, tokens=512):
    """Every MoE layer the forward ran (the MTP layers run in the loss): (block, gate input, route logits, chosen
    experts) on one forward of random tokens, and a backward."""
    inputs = {}
    for block in model._fsdp2_moe_blocks:
        block.register_forward_pre_hook(lambda m, args: inputs.__setitem__(m, args[0].reshape(-1, args[0].shape[-1])))
    ids = torch.randint(0, 127, (tokens // 32, 32), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids).logits.float().square().mean().backward()
    return [(b, inputs[b], b._fsdp2_route[0].detach(), b._fsdp2_route[1]) for b in model._fsdp2_moe_blocks
            if b in inputs]


def _zero_gates(model):
    with torch.no_grad():
        for block in model._fsdp2_moe_blocks:
            block.gate.weight.zero_()


def test_a_zero_gate_sends_every_token_to_the_same_experts_without_the_flag():
    model = _model(QWEN3_MOE)
    _zero_gates(model)
    for _, _, logits, idx in _routes(model):
        torch.testing.assert_close(logits, torch.zeros_like(logits))  # the route is the gate's
        assert len(idx.unique()) == idx.shape[1]  # k experts take all the tokens


def test_with_the_flag_tokens_spread_near_uniformly_and_the_gate_still_learns():
    model = _model(QWEN3_MOE + FLAG)
    _zero_gates(model)
    for _, _, logits, idx in _routes(model):
        experts = logits.shape[1]
        counts = torch.bincount(idx.reshape(-1), minlength=experts).float()
        mean = idx.numel() / experts  # 128 token-expert pairs per expert; a binomial's sd is about 11
        assert float((counts - mean).abs().max()) < 0.35 * mean, counts
        assert abs(float(logits.std()) - 1) < 0.1  # the route's logits are the random ones
    assert all(float(b.gate.weight.grad.abs().sum()) > 0 for b in model._fsdp2_moe_blocks)  # straight through


@pytest.mark.parametrize("flags", [DSV3, QWEN2_MOE], ids=["deepseek_v3", "qwen2_moe"])
def test_every_routed_family_takes_the_random_logits(flags):
    model = _model(flags + FLAG)
    routes = _routes(model, tokens=64)
    assert routes
    for block, x, logits, idx in routes:
        gate = F.linear(x.float(), block.gate.weight.float())
        assert not torch.allclose(logits.float(), gate, atol=1e-3)
        assert idx.shape[1] == model.config.num_experts_per_tok


# ---------------------------------------------------------------- translation

def test_the_flag_maps_and_the_report_says_it_is_for_benchmarking():
    result = translate(BASE + (QWEN3_MOE + FLAG).split())
    assert result.ok, result.problems()
    assert result.config.model.moe_router_force_load_balancing and result.config.model.model_id == "qwen3_moe"
    line = next(ln for ln in result.lines if ln.flag == "--moe-router-force-load-balancing")
    assert line.status == "mapped" and "benchmarking" in line.text


def test_without_our_moe_forward_it_is_refused_naming_the_field():
    cfg = flag_config(QWEN3_MOE)
    cfg.model.model_id = None
    cfg.model.moe_router_force_load_balancing = True
    with pytest.raises(ConfigError, match="moe_router_force_load_balancing.*model_id"):
        validate(cfg)
