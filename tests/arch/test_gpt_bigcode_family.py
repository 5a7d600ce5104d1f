"""Learned positions with multi-query attention (bigcode's --attention-head-type multiquery, as Pai-Megatron-Patch's
StarCoder script gives it, or Megatron-LM's --group-query-attention --num-query-groups 1) are transformers'
gpt_bigcode: one key/value head shared by every query head, GPT-2's model otherwise. It trains on 2 ranks and
exports; tensor and context parallelism are refused with the reason; --load compares with config.json."""
import json

import numpy as np
import pytest
import torch

from fsdp2_core.models.build import build_model
from fsdp2_core.testing.spawn import spawn
from megatron_compat.reverse import architecture_flags
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, export_with_trained_logits, spawn_flag_runs
from tests.arch.mcore_forward import megatron_and_hf_logits

# learned positions, LayerNorm, GeLU, biases, tied embeddings (Megatron's defaults): BASE without its Llama flags
GPT_BASE = [w for w in BASE if w not in ("--position-embedding-type", "rope", "--normalization", "RMSNorm",
                                         "--swiglu", "--disable-bias-linear", "--untie-embeddings-and-output-weights")]
MQA = "--attention-head-type multiquery"


def _translate(extra, *more, world=1):
    return translate(GPT_BASE + extra.split() + list(more), world_size=world)


def _arch(extra=MQA):
    result = _translate(extra)
    assert result.ok, result.problems()
    return result.config.model.architecture


def test_multi_query_learned_positions_are_gpt_bigcode():
    arch = _arch()
    assert {k: arch[k] for k in ("model_type", "multi_query", "n_head", "n_embd", "n_inner", "tie_word_embeddings",
                                 "activation_function")} == {
        "model_type": "gpt_bigcode", "multi_query": True, "n_head": 4, "n_embd": 32, "n_inner": 128,
        "tie_word_embeddings": True, "activation_function": "gelu_pytorch_tanh"}
    assert _arch("--group-query-attention --num-query-groups 1") == arch  # Megatron-LM's spelling
    assert _arch("")["model_type"] == "gpt2"
    cfg = _translate(MQA).config
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)
    attn = model.transformer.h[0].attn
    assert type(model).__name__ == "GPTBigCodeForCausalLM" and attn.kv_heads == 1
    assert attn.c_attn.weight.shape[0] == 32 + 2 * 8  # the queries, then one key and one value head
    again = translate(GPT_BASE + architecture_flags(cfg.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture == cfg.model.architecture


def _bigcode_megatron_pair():
    """megatron-core's GPTModel with learned positions and one query group (bias-GeLU fusion: tanh GeLU) against the
    translated gpt_bigcode."""
    arch = dict(_arch(MQA + " --untie-embeddings-and-output-weights"))
    config = dict(num_layers=3, hidden_size=32, num_attention_heads=4, num_query_groups=1, ffn_hidden_size=128,
                  normalization="LayerNorm", add_bias_linear=True, gated_linear_unit=False,
                  activation_func=torch.nn.functional.gelu, bias_activation_fusion=True)
    gpt = dict(vocab_size=128, max_sequence_length=64, position_embedding_type="learned_absolute",
               share_embeddings_and_output_weights=False)
    tokens = torch.as_tensor(np.random.default_rng(0).integers(0, 128, size=(2, 16)))
    return megatron_and_hf_logits(config, gpt, arch, tokens)


def test_gpt_bigcode_computes_what_megatron_core_computes():
    theirs, ours = spawn(1, _bigcode_megatron_pair, timeout=300)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("extra,message", [
    ("--group-query-attention --num-query-groups 2", "one or all key/value heads (no grouped-query attention)"),
    (MQA + " --normalization RMSNorm", "learned absolute positions map to the GPT-2 family (GPT-BigCode"),
])
def test_refusals_name_what_is_missing(extra, message):
    result = _translate(extra)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


@pytest.mark.parametrize("parallel", ["--tensor-model-parallel-size 2", "--context-parallel-size 2"])
def test_gpt_bigcode_folds_tensor_and_context_parallel_ranks_into_data_parallelism(parallel):
    """StarCoder's scripts use --tensor-model-parallel-size 2..4; the one fused key/value head splits neither by heads
    nor by sequence here, so those ranks become data-parallel ranks and the accumulation steps follow."""
    result = _translate(MQA + " " + parallel, world=2)
    assert result.ok, result.problems()
    p, tr = result.config.parallel, result.config.training
    assert (p.tp_size, p.cp_size, p.sequence_parallel) == (1, 1, False)
    assert tr.global_batch_size == tr.per_device_train_batch_size * 2 * tr.gradient_accumulation_steps
    assert any("folded into FSDP sharding: GPT-BigCode's multi-query attention" in n for n in result.notes)


def test_load_compares_gpt_bigcode_flags_with_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(dict(_arch(), multi_query=False, n_head=8)))
    result = _translate(MQA, "--load", str(tmp_path))
    assert result.ok, result.problems()
    note = next(n for n in result.notes if "disagree with" in n)
    assert "multi_query: flags say True, config.json says False" in note and "n_head: flags say 4" in note


PROBE = torch.as_tensor(np.random.default_rng(3).integers(0, 128, size=(2, 32)))


@pytest.mark.dist
@pytest.mark.slow
def test_gpt_bigcode_trains_and_exports(tmp_path):
    flags = MQA + " --hidden-dropout 0 --attention-dropout 0"
    run = spawn_flag_runs(2, tmp_path, [((GPT_BASE, flags), {}, PROBE)])[0][0]
    losses = run["losses"]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    hf = export_with_trained_logits(run, PROBE)
    assert hf.config.model_type == "gpt_bigcode" and hf.config.multi_query
