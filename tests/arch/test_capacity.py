"""Megatron's expert capacity with token dropping (--moe-expert-capacity-factor, --moe-token-drop-policy):
the pairs kept and their weights equal megatron-core's `apply_router_token_dropping` on the same routes, the flags
map, and a Mixtral-shaped model from flags trains with the same losses under expert parallelism 2 and 1."""
import pytest
import torch
from megatron.core.transformer.moe.moe_utils import apply_router_token_dropping

from fsdp2_core.config import ConfigError
from fsdp2_core.config.validate import validate
from fsdp2_core.models.build import build_model
from fsdp2_core.models.capacity import drop_over_capacity
from fsdp2_core.testing.spawn import spawn_runs
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, QWEN3_MOE, flag_config


def _route(tokens, experts, k, seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(tokens, experts, generator=g).softmax(-1)
    weights, idx = torch.topk(scores, k, dim=-1)
    return weights / weights.sum(-1, keepdim=True), idx


@pytest.mark.parametrize("policy", ["probs", "position"])
@pytest.mark.parametrize("tokens,experts,k,factor", [(64, 8, 2, 1.0), (64, 8, 2, 0.5), (50, 4, 1, 1.1),
                                                      (33, 6, 3, 0.75), (16, 4, 2, 3.0)])
def test_same_pairs_and_weights_as_megatron_core(tokens, experts, k, factor, policy):
    weights, idx = _route(tokens, experts, k, seed=tokens + experts)
    ours, kept = drop_over_capacity(weights, idx, experts, factor, policy)
    probs = torch.zeros(tokens, experts).scatter(1, idx, weights)
    routing_map = torch.zeros(tokens, experts, dtype=torch.bool).scatter(1, idx, True)
    final_probs, final_map = apply_router_token_dropping(probs, routing_map, router_topk=k, capacity_factor=factor,
                                                         drop_policy=policy)
    torch.testing.assert_close(torch.zeros(tokens, experts).scatter(1, idx, ours), final_probs, rtol=0, atol=0)
    assert torch.equal(torch.zeros(tokens, experts, dtype=torch.bool).scatter(1, idx, kept), final_map)
    if factor < 1:
        assert not kept.all()  # the case drops something
    padded, _ = apply_router_token_dropping(probs, routing_map, router_topk=k, capacity_factor=factor,
                                            drop_policy=policy, pad_to_capacity=True)
    torch.testing.assert_close(padded, final_probs, rtol=0, atol=0)  # padding pairs weigh 0: absorbed


def test_dropped_pairs_get_no_gradient():
    weights, idx = _route(64, 8, 2, seed=1)
    weights.requires_grad_(True)
    out, kept = drop_over_capacity(weights, idx, 8, 0.5, "probs")
    out.sum().backward()
    assert torch.equal(weights.grad, kept.float())


def test_flags_map_and_the_translation_sets_the_moe_forward():
    result = translate(BASE + (QWEN3_MOE + " --moe-expert-capacity-factor 1.1 --moe-token-drop-policy position "
                                           "--moe-pad-expert-input-to-capacity").split())
    assert result.ok, result.problems()
    m = result.config.model
    assert (m.moe_expert_capacity_factor, m.moe_token_drop_policy, m.model_id) == (1.1, "position", "qwen3_moe")


def test_capacity_without_the_moe_forward_or_below_zero_is_refused():
    cfg = flag_config(QWEN3_MOE)
    cfg.model.model_id = None
    cfg.model.moe_expert_capacity_factor = 1.0
    with pytest.raises(ConfigError, match="moe_expert_capacity_factor.*model_id"):
        validate(cfg)
    result = translate(BASE + (QWEN3_MOE + " --moe-expert-capacity-factor -1").split())
    assert not result.ok and "moe_expert_capacity_factor" in " ".join(result.problems())


def _logits(flags):
    model = build_model(flag_config(flags), torch.device("cpu"), meta=False, seed=3)
    ids = torch.randint(0, 127, (4, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_a_large_capacity_changes_nothing_and_a_small_one_drops():
    dropless = _logits(QWEN3_MOE)
    torch.testing.assert_close(_logits(QWEN3_MOE + " --moe-expert-capacity-factor 100"), dropless, rtol=0, atol=0)
    assert not torch.allclose(_logits(QWEN3_MOE + " --moe-expert-capacity-factor 0.5"), dropless, atol=1e-4)


FLAGS = ("--num-layers 2 --hidden-size 32 --ffn-hidden-size 64 --num-attention-heads 4 --seq-length 32 "
         "--max-position-embeddings 32 --position-embedding-type rope --normalization RMSNorm --swiglu "
         "--disable-bias-linear --hidden-dropout 0 --attention-dropout 0 --num-experts 4 --moe-router-topk 2 "
         "--moe-ffn-hidden-size 32 --moe-aux-loss-coeff 0.01 --moe-expert-capacity-factor 0.6 "
         "--micro-batch-size 2 --global-batch-size 4 --train-iters 6 --lr 1e-2 --mock-data "
         "--tokenizer-type NullTokenizer --vocab-size 60 --seed 3").split()


def _train(run):
    from fsdp2_core.train import CheckpointHooks, run_training
    out_dir, ep = run
    result = translate(FLAGS + ["--save", out_dir, "--expert-model-parallel-size", str(ep)], world_size=2)
    assert result.ok, result.problems()
    summary = run_training(result.config, checkpoint=CheckpointHooks(), print_fn=lambda s: None)
    return summary["losses"]


@pytest.mark.dist
@pytest.mark.slow
def test_expert_parallel_2_equals_1_with_token_dropping(tmp_path):
    ep2, ep1 = spawn_runs(2, _train, [(str(tmp_path / "ep2"), 2), (str(tmp_path / "ep1"), 1)])[0]
    assert len(ep2) == 6
    torch.testing.assert_close(torch.tensor(ep2), torch.tensor(ep1), rtol=0, atol=1e-5)
