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
from tests.arch.arch_helpers import BASE, spawn_flag_runs

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
    tp = GEMMA.replace("--num-query-groups 1", "--num-query-groups 2") + " --tensor-model-parallel-size 2"
    dp = GEMMA.replace("--num-query-groups 1", "--num-query-groups 2")
    return spawn_flag_runs(2, tmp_path_factory.mktemp("gemma"), [((GEMMA_BASE, dp), {}, PROBE),
                                                                 ((GEMMA_BASE, tp), {}, None)])[0]


@pytest.mark.dist
@pytest.mark.slow
def test_gemma_trains_and_exports(gemma_runs):
    from transformers import AutoModelForCausalLM
    dp = gemma_runs[0]
    losses = dp["losses"]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    hf = AutoModelForCausalLM.from_pretrained(dp["hf_dir"], dtype=torch.float32)
    assert hf.config.model_type == "gemma"
    with torch.no_grad():
        logits = hf(input_ids=PROBE, use_cache=False).logits
    torch.testing.assert_close(logits, torch.as_tensor(dp["probe_logits"]), rtol=1e-4, atol=1e-4)


@pytest.mark.dist
@pytest.mark.slow
def test_gemma_tensor_parallel_equals_data_parallel(gemma_runs):
    np.testing.assert_allclose(gemma_runs[1]["losses"], gemma_runs[0]["losses"], rtol=0, atol=1e-4)
