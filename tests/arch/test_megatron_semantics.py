"""The flags' translations compute what megatron-core 0.16 computes: the Hugging Face routers the flags pick against
topk_routing_with_score_function, our router losses against its aux / sequence aux / z-loss functions, the expert
bias update against get_updated_expert_bias (on a hand-computed example), RoPE scaling against its rotary embeddings,
and MTP's rolled inputs against roll_tensor."""
import math

import pytest
import torch
import torch.distributed as dist

from fsdp2_core.models.mtp import depth_inputs
from fsdp2_core.models.router_losses import RouterLossCoeffs, layer_losses, updated_bias
from megatron_compat.translate import translate
from tests.arch.arch_helpers import (
    BASE,
    DSV2,
    DSV2_MINDSPEED,
    DSV3,
    GLM45,
    GPT_OSS,
    MINIMAX_M2,
    QWEN2_MOE,
    flag_config,
    hf_router,
    megatron_utils,
)

moe_utils = megatron_utils()


def _arch(extra, ep=1):
    if "--quick-geglu" in extra:
        return flag_config(extra, ep).model.architecture
    result = translate(BASE + extra.split(), world_size=ep)
    assert result.ok, result.problems()
    return result.config.model.architecture


def _sorted(weights, idx):
    order = idx.argsort(-1)
    return weights.gather(-1, order), idx.gather(-1, order)


def _megatron_route(logits, **kw):
    probs, routing_map = moe_utils.topk_routing_with_score_function(logits, **kw)
    idx = routing_map.nonzero()[:, 1].view(-1, kw["topk"])  # each row's experts, in expert order
    return probs.gather(-1, idx), idx


@pytest.mark.parametrize("flags,megatron", [
    (DSV3, dict(topk=4, score_function="sigmoid", num_groups=4, group_topk=2, scaling_factor=2.5)),
    (GLM45, dict(topk=4, score_function="sigmoid", scaling_factor=None)),
    (QWEN2_MOE, dict(topk=2, use_pre_softmax=True)),
    (QWEN2_MOE.replace("--moe-router-pre-softmax ", ""), dict(topk=2)),
    ("--num-experts 8 --moe-router-topk 2 --qk-layernorm", dict(topk=2)),                   # Qwen3-MoE
    ("--num-experts 8 --moe-router-topk 2", dict(topk=2)),                                  # Mixtral
    (DSV2, dict(topk=2, use_pre_softmax=True, num_groups=4, group_topk=2, scaling_factor=2.5)),  # DeepSeek-V2
    (DSV2.replace("--moe-router-num-groups 4 --moe-router-group-topk 2 ", ""),
     dict(topk=2, use_pre_softmax=True, scaling_factor=2.5)),
    (DSV2.replace("--moe-router-topk 2", "--moe-router-topk 3").replace("--moe-router-group-topk 2",
                                                                        "--moe-router-group-topk 4"),
     dict(topk=3, use_pre_softmax=True, scaling_factor=2.5)),  # every group kept: plain top-k
    (GPT_OSS, dict(topk=2)),                                                                # gpt-oss (biased logits)
])
def test_hugging_face_router_routes_as_megatron(flags, megatron):
    torch.manual_seed(0)
    router, arch = hf_router(_arch(flags))
    bias = None
    if hasattr(router, "e_score_correction_bias"):
        bias = torch.randn(router.e_score_correction_bias.shape) * 0.1
        router.e_score_correction_bias.copy_(bias)
    x = torch.randn(64, arch["hidden_size"])
    logits, weights, idx = router(x)
    want_w, want_i = _megatron_route(logits.float(), expert_bias=bias, **megatron)
    got_w, got_i = _sorted(weights.float(), idx)
    assert torch.equal(got_i, want_i)
    torch.testing.assert_close(got_w, want_w, rtol=1e-6, atol=1e-7)


def test_group_limited_greedy_ranks_groups_by_their_best_score():
    """MindSpeed's group_limited_greedy (DeepSeek-V2's router) keeps the groups with the best single score, takes the
    top k there from the softmax over all experts, scaled, not renormalised: a hand example where ranking by the sum
    of the top two (megatron-core's rule for k / group-topk = 2) would keep the other group."""
    arch = _arch(DSV2_MINDSPEED.replace("--n-group 4 --topk-group 2", "--n-group 4 --topk-group 1")
                 .replace("--moe-router-topk 4", "--moe-router-topk 2"))
    assert (arch["topk_method"], arch["n_group"], arch["topk_group"], arch["norm_topk_prob"]) == \
        ("group_limited_greedy", 4, 1, False)
    router, arch = hf_router(arch)
    probs = torch.tensor([[0.30, 0.02, 0.20, 0.20, 0.10, 0.08, 0.05, 0.05]])  # group 0: best 0.30; group 1: 0.4 by two
    logits = probs.log()
    with torch.no_grad():  # a router whose logits are these: x = e_0, weight column 0 = the logits
        router.weight.zero_()
        router.weight[:, 0] = logits[0]
    x = torch.zeros(1, arch["hidden_size"])
    x[0, 0] = 1.0
    _, weights, idx = router(x)
    got_w, got_i = _sorted(weights, idx)
    assert got_i.tolist() == [[0, 1]]
    torch.testing.assert_close(got_w, 2.0 * probs[:, :2])
    want_w, want_i = _megatron_route(logits, topk=2, use_pre_softmax=True, num_groups=4, group_topk=1)
    assert want_i.tolist() == [[2, 3]]  # megatron-core ranks by the top two: a different model, hence refused


def test_deepseek_v2_latent_attention_is_deepseek_v3s():
    """transformers' DeepSeek-V2 attention (rotary part by complex products of pairs) computes DeepSeek-V3's with
    rope_interleave, which is Megatron's MLA (its YaRN scale checked above): the same weights, the same layer."""
    from transformers import AutoConfig, AutoModelForCausalLM
    yarn = " --rotary-scaling-factor 40 --mscale 0.707 --mscale-all-dim 0.707"
    v2 = _arch(DSV2 + yarn)
    v3 = _arch(DSV2.replace("--moe-router-pre-softmax", "--moe-router-score-function sigmoid")
               .replace("--moe-router-group-topk 2", "--moe-router-group-topk 1") + yarn)
    assert (v2["model_type"], v3["model_type"], v3["rope_interleave"]) == ("deepseek_v2", "deepseek_v3", True)
    assert v2["rope_parameters"] == v3["rope_parameters"] and v2["rope_parameters"]["rope_type"] == "yarn"
    torch.manual_seed(0)
    models = [AutoModelForCausalLM.from_config(AutoConfig.for_model(**a, attn_implementation="eager"))
              for a in (v2, v3)]
    state = {k: v for k, v in models[1].state_dict().items() if k.startswith(("model.embed_tokens", "model.layers.0."))}
    missing = models[0].load_state_dict(state, strict=False)
    assert not missing.unexpected_keys
    tokens = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        first = [m(input_ids=tokens, output_hidden_states=True, use_cache=False).hidden_states[1] for m in models]
    torch.testing.assert_close(first[0], first[1], rtol=1e-5, atol=1e-5)


def test_minimax_m2_router_routes_as_megatrons_sigmoid_router_with_expert_bias():
    """MiniMax-M2's router (the expert bias on its MoE block, handed to the router) is megatron-core's sigmoid router
    with --moe-router-enable-expert-bias: the bias for the choice only, the chosen scores renormalised."""
    from transformers import AutoConfig, AutoModelForCausalLM
    arch = _arch(MINIMAX_M2)
    torch.manual_seed(0)
    block = AutoModelForCausalLM.from_config(AutoConfig.for_model(**arch)).model.layers[0].mlp
    bias = torch.randn(arch["num_local_experts"]) * 0.1
    x = torch.randn(64, arch["hidden_size"])
    logits, weights, idx = block.gate(x, bias)
    want_w, want_i = _megatron_route(logits.float(), topk=2, score_function="sigmoid", expert_bias=bias)
    got_w, got_i = _sorted(weights.float(), idx)
    assert torch.equal(got_i, want_i)
    torch.testing.assert_close(got_w, want_w, rtol=1e-6, atol=1e-7)
    assert not torch.equal(got_i, _megatron_route(logits.float(), topk=2, score_function="sigmoid")[1])  # bias used


def _gpt_oss(arch):
    from transformers import AutoConfig, AutoModelForCausalLM
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**arch, attn_implementation="eager"))


def test_gpt_oss_experts_compute_megatrons_clamped_quick_geglu():
    """--quick-geglu --glu-linear-offset 1.0 --activation-func-clamp-value 7.0 (megatron-core's
    weighted_bias_quick_geglu_impl, gate and linear halves side by side) is gpt-oss's gate on interleaved columns."""
    from megatron.core.fusions.fused_bias_geglu import weighted_bias_quick_geglu_impl
    arch = _arch(GPT_OSS)
    assert arch["swiglu_limit"] == 7.0
    experts = _gpt_oss(arch).model.layers[0].mlp.experts
    y = torch.randn(64, 2 * arch["intermediate_size"]) * 6  # well past the clamp
    halves = torch.cat([y[:, ::2], y[:, 1::2]], dim=-1)
    ours = experts._apply_gate(y)
    theirs = weighted_bias_quick_geglu_impl(halves, None, torch.ones(64, 1), False, 1.0, 7.0)
    torch.testing.assert_close(ours, theirs)


def test_gpt_oss_sinks_are_megatrons_learnable_softmax_offset():
    """The sinks enter the softmax's denominator as Megatron's SoftmaxOne with the learnable offset does."""
    from megatron.core.fusions.fused_softmax import SoftmaxOne
    from transformers.models.gpt_oss.modeling_gpt_oss import eager_attention_forward
    attention = _gpt_oss(_arch(GPT_OSS)).model.layers[1].self_attn
    heads, s = attention.sinks.shape[0], 12
    with torch.no_grad():
        attention.sinks.copy_(torch.randn(heads))
        scores = torch.randn(1, heads, s, s)
        causal = torch.ones(s, s, dtype=torch.bool).triu(1)
        # q = scores, k = v = identity (one kv head per q head here): q·kᵀ = scores and the output is the probabilities
        attention.num_key_value_groups = 1
        eye = torch.eye(s).expand(1, heads, s, s)
        _, ours = eager_attention_forward(attention, scores, eye, eye, torch.zeros(s, s).masked_fill(causal, -1e9),
                                          scaling=1.0)
        theirs = SoftmaxOne(-1, attention.sinks)(scores.masked_fill(causal, -10000.0))
    torch.testing.assert_close(ours, theirs)
    assert (ours.sum(-1) < 1).all()  # the sink takes its share


def test_gpt_oss_window_layers_are_megatrons(monkeypatch):
    """--window-size 8,0 --window-attn-skip-freq 2: layers 1 and 3 (1-based) see Megatron's sliding-window mask
    (get_sliding_window_causal_mask), layer 2 the whole causal past; transformers' attention probabilities vanish
    exactly where Megatron masks."""
    from megatron.core.transformer import utils as megatron_utils_module
    arch = _arch(GPT_OSS)
    assert arch["layer_types"] == ["sliding_attention", "full_attention", "sliding_attention"]
    ones = torch.ones
    monkeypatch.setattr(torch, "ones", lambda *a, device=None, **k: ones(*a, **k))  # Megatron builds it on cuda
    s = 24
    window = megatron_utils_module.get_sliding_window_causal_mask(s, s, (8, 0))
    monkeypatch.undo()
    causal = torch.ones(s, s, dtype=torch.bool).triu(1)
    with torch.no_grad():
        attentions = _gpt_oss(arch)(input_ids=torch.randint(0, 128, (1, s)), output_attentions=True,
                                    use_cache=False).attentions
    for layer, masked in zip(attentions, (window, causal, window)):
        assert torch.equal(layer[0] == 0, masked.expand_as(layer[0]))


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
def test_router_losses_equal_megatrons(score):
    torch.manual_seed(1)
    b, s, experts, k = 3, 16, 8, 2
    logits = torch.randn(b * s, experts, dtype=torch.float64)      # ours: token order (sample, position)
    coeffs = RouterLossCoeffs(aux=0.01, seq_aux=0.001, z=0.002, score_function=score)
    ours = layer_losses(logits, k, b, coeffs)
    megatron = logits.view(b, s, experts).transpose(0, 1).reshape(s * b, experts)  # Megatron's [s, b] order
    routing_map, scores = moe_utils.compute_routing_scores_for_aux_loss(megatron, k, score)
    aux = moe_utils.switch_load_balancing_loss_func(scores, routing_map.sum(0), s * b, k, experts, 1.0)
    seq = moe_utils.switch_load_balancing_loss_func(scores.reshape(s, -1), routing_map.reshape(s, -1).sum(0), s, k,
                                                    experts, 1.0) / b          # router._apply_seq_aux_loss
    z = moe_utils.z_loss_func(megatron, 1.0)
    for name, want in (("load_balancing_loss", aux), ("seq_load_balancing_loss", seq), ("z_loss", z)):
        assert math.isclose(float(ours[name]), float(want), rel_tol=1e-9), name


def _mindspeed_group_limited(logits, b, s, k, groups, group_topk, seq):
    """MindSpeed's group_limited_greedy_topKgating (DeepSeek-V2's router and its balance losses), restated from its
    formulas on [b · s, E] logits in (sample, position) order: (chosen experts, expert-, device-, comm-level loss)."""
    experts = logits.shape[1]
    scores = torch.softmax(logits, dim=1)
    best = scores.view(b * s, groups, -1).max(-1).values
    kept = torch.zeros_like(best).scatter(1, best.topk(group_topk, dim=-1).indices, 1.0)
    idx = scores.masked_fill(~kept.repeat_interleave(experts // groups, dim=1).bool(), 0.0).topk(k, dim=-1).indices
    hits = torch.zeros(b, s, experts, dtype=logits.dtype).scatter_add(
        2, idx.view(b, s, k), torch.ones(b, s, k, dtype=logits.dtype))
    if seq:
        f, p = hits.sum(1) / (s * k / experts), scores.view(b, s, experts).mean(1)        # [b, E]
        reached = (hits.view(b, s, groups, -1).sum(-1) > 0).to(logits.dtype).sum(1) / (s * group_topk / groups)
    else:
        f, p = hits.view(-1, experts).mean(0, keepdim=True) * experts / k, scores.mean(0, keepdim=True)
        reached = (hits.view(b * s, groups, -1).sum(-1) > 0).to(logits.dtype).mean(0, keepdim=True) / (
            group_topk / groups)
    p_group = p.view(p.shape[0], groups, -1).sum(-1)
    device = (f.view(f.shape[0], groups, -1).mean(-1) * p_group).sum(-1).mean()
    return idx, (p * f).sum(-1).mean(), device, (reached * p_group).sum(-1).mean()


@pytest.mark.parametrize("seq", [False, True])
def test_deepseek_v2_balance_losses_equal_mindspeeds(seq):
    """Expert-, device- and communication-level losses of MindSpeed's group-limited router, counted on the experts
    it chose (MindSpeed --seq-aux: per sample)."""
    torch.manual_seed(2)
    b, s, experts, k, groups, group_topk = 3, 16, 12, 3, 4, 2
    logits = torch.randn(b * s, experts, dtype=torch.float64)
    idx, expert_level, device, comm = _mindspeed_group_limited(logits, b, s, k, groups, group_topk, seq)
    coeffs = RouterLossCoeffs(aux=0.0 if seq else 1.0, seq_aux=1.0 if seq else 0.0, device=0.05, comm=0.02,
                              groups=groups, group_topk=group_topk, on_choice=True, per_sample=seq)
    ours = layer_losses(logits, k, b, coeffs, idx=idx)
    for name, want in (("seq_load_balancing_loss" if seq else "load_balancing_loss", expert_level),
                       ("load_balancing_device_level_loss", device), ("load_balancing_comm_level_loss", comm)):
        assert math.isclose(float(ours[name]), float(want), rel_tol=1e-6), name  # our scores are fp32, as Megatron's
    plain = layer_losses(logits, k, b, RouterLossCoeffs(aux=1.0, seq_aux=1.0))  # the plain top k would differ
    assert not math.isclose(float(plain["seq_load_balancing_loss" if seq else "load_balancing_loss"]),
                            float(expert_level), rel_tol=1e-3)


def test_expert_bias_update_is_megatrons_rule_on_a_hand_example(tmp_path, monkeypatch):
    counts = torch.tensor([[3.0, 1.0, 2.0, 2.0], [0.0, 4.0, 4.0, 0.0]])
    bias = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.5, -0.5, 0.0, 0.25]])
    # mean load 2 per expert: over-loaded experts lose the rate, under-loaded ones gain it, exact ones keep their bias
    hand = torch.tensor([[-0.1, 0.1, 0.0, 0.0], [0.6, -0.6, -0.1, 0.35]])
    ours = updated_bias(counts, bias, 0.1)
    torch.testing.assert_close(ours, hand)
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        from megatron.core import parallel_state
        monkeypatch.setattr(parallel_state, "get_tensor_and_data_parallel_group", lambda **_: dist.group.WORLD)
        torch.testing.assert_close(moe_utils.get_updated_expert_bias(counts.clone(), bias, 0.1), ours)
    finally:
        dist.destroy_process_group()


def test_llama3_scaling_is_megatrons_use_rope_scaling():
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    arch = _arch("--use-rope-scaling --rope-scaling-factor 8 --rotary-base 500000 --kv-channels 64")
    config = AutoConfig.for_model(**arch)
    ours, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    theirs = RotaryEmbedding(64, rotary_percent=1.0, rotary_base=500000, rope_scaling=True, rope_scaling_factor=8.0,
                             use_cpu_initialization=True).inv_freq
    torch.testing.assert_close(ours, theirs)
    mindspeed = _arch("--rope-scaling-type llama3 --rope-scaling-factor 8 --low-freq-factor 1 --high-freq-factor 4 "
                      "--original-max-position-embeddings 8192 --rotary-base 500000 --kv-channels 64")
    assert mindspeed["rope_parameters"] == arch["rope_parameters"]


def test_linear_interpolation_is_megatrons_seq_len_interpolation_factor():
    """Megatron divides the positions by --rotary-seq-len-interpolation-factor; transformers' linear rope_type gives
    the same angles (position x inverse frequency) by dividing the frequencies."""
    from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    arch = _arch("--rotary-seq-len-interpolation-factor 4 --rotary-base 10000 --kv-channels 32")
    assert arch["rope_parameters"]["rope_type"] == "linear"
    ours, _ = ROPE_INIT_FUNCTIONS["linear"](AutoConfig.for_model(**arch), "cpu")
    theirs = RotaryEmbedding(32, rotary_percent=1.0, rotary_base=10000, seq_len_interpolation_factor=4.0,
                             use_cpu_initialization=True)
    positions = torch.arange(16, dtype=torch.float32)
    torch.testing.assert_close(torch.outer(positions, ours), theirs.get_freqs_non_repeated(16))
    assert _arch("--rotary-seq-len-interpolation-factor 1")["rope_parameters"]["rope_type"] == "default"


@pytest.mark.parametrize("flags,dim", [
    ("--rope-scaling-type yarn --rope-scaling-factor 16 --rope-scaling-original-max-position-embeddings 4096 "
     "--rotary-base 1000000 --kv-channels 32", 32),
    (DSV3 + " --rotary-scaling-factor 40 --mscale 0.707 --mscale-all-dim 0.707 --rope-scaling-beta-fast 16", 8),
])
def test_yarn_is_megatrons(flags, dim):
    from megatron.core.models.common.embeddings import yarn_rotary_pos_embedding as yarn
    from transformers import AutoConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    arch = _arch(flags)
    rope = arch["rope_parameters"]
    ours, attention_factor = ROPE_INIT_FUNCTIONS["yarn"](AutoConfig.for_model(**arch), "cpu")
    base, factor = rope["rope_theta"], rope["factor"]
    extra = 1.0 / base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    low, high = yarn._yarn_find_correction_range(rope["beta_fast"], rope["beta_slow"], dim, base,
                                                 rope["original_max_position_embeddings"])
    mask = 1.0 - yarn._yarn_linear_ramp_mask(low, high, dim // 2, "cpu")
    torch.testing.assert_close(ours, extra / factor * (1 - mask) + extra * mask)
    want = yarn._yarn_get_concentration_factor(factor, rope["mscale"], rope["mscale_all_dim"])
    assert math.isclose(attention_factor, want, rel_tol=1e-9)


def test_mla_softmax_scale_is_megatrons():
    from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import _yarn_get_mscale
    from transformers import AutoConfig
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention
    arch = _arch(DSV3 + " --rotary-scaling-factor 40 --mscale 1.0 --mscale-all-dim 1.0")
    attention = DeepseekV3Attention(AutoConfig.for_model(**arch), 0)
    q_head_dim = arch["qk_nope_head_dim"] + arch["qk_rope_head_dim"]
    assert math.isclose(attention.scaling, _yarn_get_mscale(40, 1.0) ** 2 / math.sqrt(q_head_dim), rel_tol=1e-12)


def test_mtp_inputs_roll_as_megatrons_roll_tensor():
    from megatron.core.transformer.multi_token_prediction import roll_tensor
    tokens = torch.arange(1, 13).view(2, 6)
    labels, mask = tokens + 100, torch.ones(2, 6)
    depths = depth_inputs(tokens, labels, mask, 2)
    rolled = [tokens, labels, mask]
    for k in range(2):
        rolled = [roll_tensor(x, shifts=-1, dims=-1)[0] for x in rolled]
        for ours, theirs in zip(depths[k], rolled):
            assert torch.equal(ours, theirs)
    assert depths[1][0].tolist() == [[3, 4, 5, 6, 0, 0], [9, 10, 11, 12, 0, 0]]
