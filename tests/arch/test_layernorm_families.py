"""The LayerNorm families beside GPT-2, from their Megatron flags: GPT-NeoX-like (rope, LayerNorm, GeLU, biases) is
transformers' gpt_neox with a sequential residual, computing what megatron-core 0.16 computes for those flags
(partial rotary included); the translation's refusals name what no family has; --load compares with config.json."""
import json

import numpy as np
import pytest
import torch

from fsdp2_core.models.build import build_model
from fsdp2_core.testing.spawn import spawn
from megatron_compat.reverse import architecture_flags
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, spawn_flag_runs
from tests.arch.mcore_forward import megatron_and_hf_logits

# BASE is a Llama-style set: drop RMSNorm, SwiGLU and the bias switch for a GPT-NeoX-like model
LAYERNORM_BASE = [w for w in BASE if w not in ("--normalization", "RMSNorm", "--swiglu", "--disable-bias-linear")]
NEOX = "--rotary-percent 0.5 --rotary-base 5000 --norm-epsilon 1e-6"


def _translate(extra, *more, base=LAYERNORM_BASE):
    return translate(base + extra.split() + list(more), world_size=1)


def _arch(extra):
    result = _translate(extra)
    assert result.ok, result.problems()
    return result.config.model.architecture


def test_rope_layernorm_gelu_is_gpt_neox_with_a_sequential_residual():
    arch = _arch(NEOX + " --hidden-dropout 0.1")
    assert {k: arch[k] for k in ("model_type", "use_parallel_residual", "attention_bias", "hidden_act",
                                 "layer_norm_eps", "intermediate_size", "hidden_dropout", "tie_word_embeddings")} == {
        "model_type": "gpt_neox", "use_parallel_residual": False, "attention_bias": True,
        "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "intermediate_size": 128, "hidden_dropout": 0.1,
        "tie_word_embeddings": False}
    assert arch["rope_parameters"] == {"rope_type": "default", "rope_theta": 5000.0, "partial_rotary_factor": 0.5}
    assert _arch("--no-bias-gelu-fusion")["hidden_act"] == "gelu"
    # gpt_neox's own default would rotate a quarter of each head: full rotary is written out
    assert _arch("")["rope_parameters"]["partial_rotary_factor"] == 1.0


def test_gpt_neox_builds_and_round_trips_through_the_reverse_conversion():
    cfg = translate(LAYERNORM_BASE + NEOX.split(), world_size=1).config
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)
    assert type(model).__name__ == "GPTNeoXForCausalLM" and not model.config.use_parallel_residual
    assert model.gpt_neox.layers[0].attention.rotary_ndims == 4  # half of head size 8
    again = translate(LAYERNORM_BASE + architecture_flags(cfg.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture == cfg.model.architecture


def _neox_megatron_pair():
    """megatron-core's GPTModel for the NEOX flags (bias-GeLU fusion on: tanh GeLU) against the translated gpt_neox."""
    arch = dict(_arch(NEOX), tie_word_embeddings=False)
    config = dict(num_layers=3, hidden_size=32, num_attention_heads=4, ffn_hidden_size=128, normalization="LayerNorm",
                  layernorm_epsilon=1e-6, add_bias_linear=True, gated_linear_unit=False,
                  activation_func=torch.nn.functional.gelu, bias_activation_fusion=True)
    gpt = dict(vocab_size=128, max_sequence_length=64, position_embedding_type="rope", rotary_percent=0.5,
               rotary_base=5000, share_embeddings_and_output_weights=False)
    tokens = torch.as_tensor(np.random.default_rng(0).integers(0, 128, size=(2, 16)))
    return megatron_and_hf_logits(config, gpt, arch, tokens)


def test_gpt_neox_computes_what_megatron_core_computes():
    theirs, ours = spawn(1, _neox_megatron_pair, timeout=300)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=2e-5)  # exact GeLU would be 1.4e-4 off


@pytest.mark.parametrize("extra,message", [
    ("--swiglu", "rope with LayerNorm and --swiglu has no Hugging Face family here"),
    ("--normalization RMSNorm", "rope with RMSNorm and GeLU has no Hugging Face family here"),
    ("--disable-bias-linear", "always have biases; drop --disable-bias-linear"),
    ("--group-query-attention --num-query-groups 2", "has no grouped-query or multi-query attention"),
    ("--num-experts 4", "has no experts (--num-experts)"),
    ("--qk-layernorm", "has no --qk-layernorm"),
    ("--kv-channels 16", "--kv-channels 16: the gpt_neox family's heads split --hidden-size 32 evenly"),
    ("--mtp-num-layers 1", "has no multi-token prediction"),
])
def test_gpt_neox_refusals_name_the_flag(extra, message):
    result = _translate(extra)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_load_compares_gpt_neox_flags_with_config_json(tmp_path):
    """A Pythia-style config.json (parallel residual, rotary_pct 0.25 in the older spelling) against the flags."""
    config = dict(_arch(NEOX), use_parallel_residual=True, rotary_pct=0.25, rotary_emb_base=10000)
    del config["rope_parameters"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = _translate(NEOX, "--load", str(tmp_path))
    assert result.ok, result.problems()
    note = next(n for n in result.notes if "disagree with" in n)
    for diff in ("use_parallel_residual: flags say False, config.json says True",
                 "partial_rotary_factor: flags say 0.5, config.json says 0.25",
                 "rope_theta: flags say 5000.0, config.json says 10000"):
        assert diff in note, note


PROBE = torch.as_tensor(np.random.default_rng(3).integers(0, 128, size=(2, 32)))


@pytest.fixture(scope="module")
def neox_runs(tmp_path_factory):
    """GPT-NeoX-like flags on 2 ranks: data parallel (exported), and tensor parallel 2 with sequence parallelism."""
    flags = (LAYERNORM_BASE, NEOX)
    tp = (LAYERNORM_BASE, NEOX + " --tensor-model-parallel-size 2 --sequence-parallel")
    return spawn_flag_runs(2, tmp_path_factory.mktemp("neox"), [(flags, {}, PROBE), (tp, {}, None)])[0]


@pytest.mark.dist
@pytest.mark.slow
def test_gpt_neox_trains_and_exports(neox_runs):
    from transformers import AutoModelForCausalLM
    dp = neox_runs[0]
    losses = dp["losses"]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    hf = AutoModelForCausalLM.from_pretrained(dp["hf_dir"], dtype=torch.float32)
    assert hf.config.model_type == "gpt_neox" and not hf.config.use_parallel_residual
    with torch.no_grad():
        logits = hf(input_ids=PROBE, use_cache=False).logits
    torch.testing.assert_close(logits, torch.as_tensor(dp["probe_logits"]), rtol=1e-4, atol=1e-4)


@pytest.mark.dist
@pytest.mark.slow
def test_gpt_neox_tensor_parallel_equals_data_parallel(neox_runs):
    np.testing.assert_allclose(neox_runs[1]["losses"], neox_runs[0]["losses"], rtol=0, atol=1e-4)
