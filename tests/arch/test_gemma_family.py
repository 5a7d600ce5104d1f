"""MindSpeed-LLM's Gemma flags (examples/mcore/gemma: rope, RMSNorm with --add-rmsnorm-offset, --geglu or
--gelu-tanh, --input-embeds-norm, --kv-channels wider than hidden / heads, tied embeddings) are transformers' gemma:
its MLP, embedding scale and norm compute what MindSpeed's flags say; it trains on 2 ranks (data and tensor
parallel alike) and exports; refusals name the flag; --load compares with config.json."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsdp2_core.models.build import build_model
from megatron_compat.reverse import architecture_flags
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, export_with_trained_logits, spawn_flag_runs

GEMMA_BASE = [w for w in BASE if w not in ("--swiglu", "--untie-embeddings-and-output-weights")]
# MindSpeed's gemma_2b layout in miniature: one key/value head, heads wider than hidden / heads
GEMMA = "--geglu --input-embeds-norm --add-rmsnorm-offset --kv-channels 16 --group-query-attention --num-query-groups 1"


def _translate(extra, *more, world=1):
    return translate(GEMMA_BASE + extra.split() + list(more), world_size=world)


def _arch(extra=GEMMA):
    result = _translate(extra)
    assert result.ok, result.problems()
    return result.config.model.architecture


def test_mindspeed_gemma_flags_are_gemma():
    arch = _arch()
    assert {k: arch[k] for k in ("model_type", "hidden_act", "head_dim", "num_key_value_heads", "attention_bias",
                                 "tie_word_embeddings", "intermediate_size")} == {
        "model_type": "gemma", "hidden_act": "gelu_python", "head_dim": 16, "num_key_value_heads": 1,
        "attention_bias": False, "tie_word_embeddings": True, "intermediate_size": 128}
    assert _arch(GEMMA.replace("--geglu", "--gelu-tanh"))["hidden_act"] == "gelu_pytorch_tanh"
    # Gemma's config names padding token 0, whose embedding row transformers would never train; Megatron does
    model = build_model(_translate(GEMMA).config, torch.device("cpu"), meta=False, seed=3)
    assert arch["pad_token_id"] is None and model.model.embed_tokens.padding_idx is None
    # without --add-rmsnorm-offset: x · w instead of x · (1 + w), the same model trained the same way
    assert _arch(GEMMA.replace("--add-rmsnorm-offset", "")) == _arch()
    cfg = _translate(GEMMA).config
    again = translate(GEMMA_BASE + architecture_flags(cfg.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture == cfg.model.architecture


@pytest.mark.parametrize("flag,gelu", [("--geglu", "none"), ("--gelu-tanh", "tanh")])
def test_gemma_computes_mindspeeds_gated_gelu_embedding_scale_and_offset_norm(flag, gelu):
    """MindSpeed: fc1's first half through GeLU times its second half; embeddings × sqrt(hidden); x · (1 + w)."""
    model = build_model(_translate(GEMMA.replace("--geglu", flag)).config, torch.device("cpu"), meta=False, seed=3)
    layer, x = model.model.layers[0], torch.randn(2, 5, 32)
    mlp = layer.mlp
    with torch.no_grad():  # weights large enough for exact and tanh GeLU to differ
        for p in mlp.parameters():
            p.normal_()
    def gated(approximate):
        gate, up = F.linear(x, mlp.gate_proj.weight), F.linear(x, mlp.up_proj.weight)
        return F.linear(F.gelu(gate, approximate=approximate) * up, mlp.down_proj.weight)
    with torch.no_grad():
        torch.testing.assert_close(mlp(x), gated(gelu), rtol=1e-4, atol=1e-4)
        assert (mlp(x) - gated("tanh" if gelu == "none" else "none")).abs().max() > 1e-2  # the other GeLU is off
    with torch.no_grad():
        layer.input_layernorm.weight.normal_()
    w = layer.input_layernorm.weight
    rms = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(layer.input_layernorm(x), rms * (1 + w))
    ids = torch.tensor([[1, 2, 3]])
    seen = {}
    model.model.layers[0].register_forward_pre_hook(lambda m, args, kw: seen.update(h=args[0] if args else
                                                                                    kw["hidden_states"]),
                                                    with_kwargs=True)
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    torch.testing.assert_close(seen["h"], F.embedding(ids, model.model.embed_tokens.weight) * math.sqrt(32))


@pytest.mark.parametrize("extra,message", [
    (GEMMA.replace("--input-embeds-norm ", ""), "add --input-embeds-norm"),
    (GEMMA + " --swiglu", "both choose the gated MLP's activation"),
    (GEMMA.replace("--geglu", ""), "--input-embeds-norm: only Gemma"),
    (GEMMA + " --add-qkv-bias", "has no --add-qkv-bias"),
    (GEMMA + " --qk-layernorm", "has no --qk-layernorm"),
])
def test_gemma_refusals_name_the_flag(extra, message):
    result = _translate(extra)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_gemma_needs_rmsnorm_and_no_biases():
    layernorm = translate([w for w in GEMMA_BASE if w not in ("--normalization", "RMSNorm")] + GEMMA.split(),
                          world_size=1)
    assert any("needs --normalization RMSNorm" in p for p in layernorm.problems())
    biased = translate([w for w in GEMMA_BASE if w != "--disable-bias-linear"] + GEMMA.split(), world_size=1)
    assert any("add --disable-bias-linear" in p for p in biased.problems())


def test_load_compares_gemma_flags_with_config_json(tmp_path):
    config = dict(_arch(), head_dim=8, hidden_act="gelu_pytorch_tanh")
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = _translate(GEMMA, "--load", str(tmp_path))
    assert result.ok, result.problems()
    note = next(n for n in result.notes if "disagree with" in n)
    assert "head_dim: flags say 16, config.json says 8" in note and "hidden_act: flags say gelu_python" in note


PROBE = torch.as_tensor(np.random.default_rng(3).integers(0, 128, size=(2, 32)))


@pytest.fixture(scope="module")
def gemma_runs(tmp_path_factory):
    """On 2 ranks: Gemma and Gemma 2 data parallel (exported) and tensor parallel 2; Gemma 2 without the attention
    soft-cap (MindSpeed's gemma2_27b) data and context parallel 2."""
    gemma = GEMMA.replace("--num-query-groups 1", "--num-query-groups 2")
    uncapped = GEMMA2.replace("--attn-logit-softcapping 20 ", "")
    tp = " --tensor-model-parallel-size 2"
    runs = {"gemma": (gemma, PROBE), "gemma_tp2": (gemma + tp, None), "gemma2": (GEMMA2, PROBE),
            "gemma2_tp2": (GEMMA2 + tp, None), "uncapped": (uncapped, None),
            "uncapped_cp2": (uncapped + " --context-parallel-size 2", None)}
    summaries = spawn_flag_runs(2, tmp_path_factory.mktemp("gemma"),
                                [((GEMMA_BASE, flags), {}, probe) for flags, probe in runs.values()])[0]
    return dict(zip(runs, summaries))


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("family", ["gemma", "gemma2"])
def test_gemma_trains_and_exports(family, gemma_runs):
    dp = gemma_runs[family]
    losses = dp["losses"]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    hf = export_with_trained_logits(dp, PROBE)
    assert hf.config.model_type == family


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("run,reference", [("gemma_tp2", "gemma"), ("gemma2_tp2", "gemma2"),
                                           ("uncapped_cp2", "uncapped")])
def test_gemma_parallel_layouts_equal_data_parallel(run, reference, gemma_runs):
    np.testing.assert_allclose(gemma_runs[run]["losses"], gemma_runs[reference]["losses"], rtol=0, atol=1e-4)


# MindSpeed's gemma2_27b flags in miniature (4 layers so two slide), with both soft-caps
GEMMA2 = (GEMMA.replace("--num-query-groups 1", "--num-query-groups 2") + " --post-norm --query-pre-attn-scalar 12 "
          "--interleave-sliding-window 8 --attn-logit-softcapping 20 --output-logit-softcapping 5 --num-layers 4")


def test_mindspeed_gemma2_flags_are_gemma2():
    arch = _arch(GEMMA2)
    assert {k: arch[k] for k in ("model_type", "hidden_activation", "query_pre_attn_scalar", "attn_logit_softcapping",
                                 "final_logit_softcapping", "sliding_window", "layer_types")} == {
        "model_type": "gemma2", "hidden_activation": "gelu_python", "query_pre_attn_scalar": 12,
        "attn_logit_softcapping": 20.0, "final_logit_softcapping": 5.0, "sliding_window": 8,
        # MindSpeed's is_sliding: layer numbers 1 and 3 (1-based, odd) slide
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]}
    # unset: MindSpeed scales by head_dim^-0.5 and caps nothing; every layer attends fully
    plain = _arch(GEMMA + " --post-norm")
    assert (plain["query_pre_attn_scalar"], plain["attn_logit_softcapping"], plain["final_logit_softcapping"],
            set(plain["layer_types"])) == (16, None, None, {"full_attention"})
    cfg = _translate(GEMMA2).config
    again = translate(GEMMA_BASE + architecture_flags(cfg.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture == cfg.model.architecture


def test_gemma2_windows_scale_and_caps_are_mindspeeds():
    """MindSpeed's sliding mask tril(ones, -W) hides keys W or more positions back; scores × S^-0.5, then capped."""
    model = build_model(_translate(GEMMA2).config, torch.device("cpu"), meta=False, seed=3)
    attn = model.model.layers[0].self_attn
    assert attn.scaling == 12 ** -0.5 and attn.attn_logit_softcapping == 20.0
    assert (attn.sliding_window, model.model.layers[1].self_attn.sliding_window) == (8, None)
    from transformers.masking_utils import sliding_window_causal_mask_function
    allowed = torch.tensor([[bool(sliding_window_causal_mask_function(8)(0, 0, torch.tensor(q), torch.tensor(k)))
                             for k in range(12)]
                            for q in range(12)])
    mindspeed_masked = torch.tril(torch.ones(12, 12, dtype=torch.bool), diagonal=-8) | \
        torch.triu(torch.ones(12, 12, dtype=torch.bool), diagonal=1)
    assert torch.equal(allowed, ~mindspeed_masked)


def test_the_loss_soft_caps_the_logits_as_gemma2_does():
    from fsdp2_core.train.loss import lm_loss_sums
    model = build_model(_translate(GEMMA2).config, torch.device("cpu"), meta=False, seed=3)
    with torch.no_grad():
        model.lm_head.weight.mul_(300)  # logits far beyond the cap
        tokens = PROBE[:, :16]
        labels = torch.roll(tokens, -1, 1)
        total, count = lm_loss_sums(model, tokens, labels, torch.ones_like(tokens, dtype=torch.float))
        logits = model(input_ids=tokens, use_cache=False).logits  # transformers caps them in its forward
    assert logits.abs().max() <= 5.0
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")
    torch.testing.assert_close(total, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("extra,message", [
    (GEMMA2.replace("--post-norm ", ""), "add --post-norm"),
    ("--post-norm --swiglu", "--post-norm: Gemma 2's"),
    (GEMMA2.replace("--interleave-sliding-window 8", "--interleave-sliding-window 0"),
     "--interleave-sliding-window 0: expects a positive number"),
])
def test_gemma2_refusals_name_the_flag(extra, message):
    result = _translate(extra)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_gemma2_attention_soft_capping_refuses_context_parallelism():
    result = _translate(GEMMA2, "--context-parallel-size", "2", world=2)
    assert not result.ok and any("has no soft-capping" in p for p in result.problems()), result.problems()
