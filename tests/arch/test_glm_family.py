"""MindSpeed-LLM's ChatGLM3 / GLM-4 flags (--use-glm-rope --rotary-percent 0.5, RMSNorm, SwiGLU, q/k/v biases only,
grouped-query attention, untied) are transformers' glm, whose rotary embedding is MindSpeed's glm rope (adjacent
channel pairs of the rotary part, frequencies over that part); it trains on 2 ranks with data, tensor (GLM's fused
gate_up_proj split by blocks) and context parallelism alike and exports; refusals name the flag; --load compares."""
import json

import numpy as np
import pytest
import torch

from fsdp2_core.models.build import build_model
from megatron_compat.reverse import architecture_flags
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, export_with_trained_logits, spawn_flag_runs

GLM = ("--use-glm-rope --rotary-percent 0.5 --add-qkv-bias --group-query-attention --num-query-groups 2 "
       "--rotary-base 500")


def _translate(extra, *more, world=1):
    return translate(BASE + extra.split() + list(more), world_size=world)


def _arch(extra=GLM):
    result = _translate(extra)
    assert result.ok, result.problems()
    return result.config.model.architecture


def test_mindspeed_glm_flags_are_glm():
    arch = _arch()
    assert {k: arch[k] for k in ("model_type", "attention_bias", "num_key_value_heads", "head_dim",
                                 "tie_word_embeddings", "pad_token_id")} == {
        "model_type": "glm", "attention_bias": True, "num_key_value_heads": 2, "head_dim": 8,
        "tie_word_embeddings": False, "pad_token_id": None}  # Megatron's embedding has no untrained padding row
    assert arch["rope_parameters"] == {"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5}
    assert _arch("--use-glm-rope")["rope_parameters"]["partial_rotary_factor"] == 1.0  # written: glm's default is half
    cfg = _translate(GLM).config
    again = translate(BASE + architecture_flags(cfg.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture == cfg.model.architecture


def _mindspeed_glm_rope(t, positions, head_dim, percent, base):
    """MindSpeed's --use-glm-rope (_process_partial_rope on rotary_embedding_forward's stacked cos/sin): the first
    head_dim × percent channels taken as adjacent pairs (2i, 2i+1), pair i turned by position × base^(-2i/dim)."""
    dim = int(head_dim * percent)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    freqs = positions[:, None].float() * inv_freq  # [seq, dim/2]
    rot, rest = t[..., :dim], t[..., dim:]
    x = rot.reshape(*rot.shape[:-1], dim // 2, 2)
    cos, sin = freqs.cos()[:, None, :], freqs.sin()[:, None, :]  # t is [seq, heads, head_dim]
    turned = torch.stack([x[..., 0] * cos - x[..., 1] * sin, x[..., 1] * cos + x[..., 0] * sin], -1).flatten(-2)
    return torch.cat([turned, rest], -1)


def test_glm_rotary_is_mindspeeds_glm_rope():
    from transformers.models.glm.modeling_glm import apply_rotary_pos_emb
    model = build_model(_translate(GLM).config, torch.device("cpu"), meta=False, seed=3)
    q, k = torch.randn(2, 1, 4, 6, 8).unbind(0)  # [batch 1, heads 4, seq 6, head_dim 8]
    positions = torch.arange(6)
    cos, sin = model.model.rotary_emb(q, positions[None])
    ours, _ = apply_rotary_pos_emb(q, k, cos, sin)
    want = _mindspeed_glm_rope(q[0].transpose(0, 1), positions, 8, 0.5, 500.0).transpose(0, 1)[None]
    torch.testing.assert_close(ours, want)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as llama_rotary
    halves, _ = llama_rotary(q[..., :4], k[..., :4], cos[..., :4], sin[..., :4])  # Llama's halves on the same part
    assert not torch.allclose(halves, ours[..., :4], atol=1e-3)


@pytest.mark.parametrize("extra,message", [
    ("--use-glm-rope --qk-layernorm", "glm family (ChatGLM3, GLM-4), which has no --qk-layernorm"),
    ("--use-glm-rope --num-experts 4", "which has no experts"),
    ("--use-glm-rope --normalization LayerNorm", "a rope model with --normalization RMSNorm and --swiglu"),
])
def test_glm_refusals_name_the_flag(extra, message):
    result = _translate(extra)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_load_compares_glm_flags_with_config_json(tmp_path):
    arch = _arch()
    config = dict(arch, rope_parameters=dict(arch["rope_parameters"], partial_rotary_factor=1.0), attention_bias=False)
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = _translate(GLM, "--load", str(tmp_path))
    assert result.ok, result.problems()
    note = next(n for n in result.notes if "disagree with" in n)
    assert "partial_rotary_factor: flags say 0.5, config.json says 1.0" in note
    assert "attention_bias: flags say True, config.json says False" in note


PROBE = torch.as_tensor(np.random.default_rng(3).integers(0, 128, size=(2, 32)))


@pytest.fixture(scope="module")
def glm_runs(tmp_path_factory):
    runs = {"dp": (GLM, PROBE), "tp2": (GLM + " --tensor-model-parallel-size 2 --sequence-parallel", None),
            "cp2": (GLM + " --context-parallel-size 2", None)}
    summaries = spawn_flag_runs(2, tmp_path_factory.mktemp("glm"), [(flags, {}, p) for flags, p in runs.values()])[0]
    return dict(zip(runs, summaries))


@pytest.mark.dist
@pytest.mark.slow
def test_glm_trains_and_exports(glm_runs):
    dp = glm_runs["dp"]
    losses = dp["losses"]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    hf = export_with_trained_logits(dp, PROBE)
    assert hf.config.model_type == "glm"


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("layout", ["tp2", "cp2"])
def test_glm_parallel_layouts_equal_data_parallel(layout, glm_runs):
    np.testing.assert_allclose(glm_runs[layout]["losses"], glm_runs["dp"]["losses"], rtol=0, atol=1e-4)
