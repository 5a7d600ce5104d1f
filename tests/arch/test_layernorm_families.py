"""The LayerNorm families beside GPT-2, from their Megatron flags: GPT-NeoX-like (rope, LayerNorm, GeLU, biases) is
transformers' gpt_neox with a sequential residual, computing what megatron-core 0.16 computes for those flags
(partial rotary included); rope with LayerNorm and SwiGLU (a Llama-style script left at Megatron's default
LayerNorm) is transformers' stablelm (its megatron-core logits: tests/megatron_ckpt, shape "stablelm"); ALiBi with
--embed-layernorm (bigscience Megatron-DeepSpeed) is transformers' bloom. All train on 2 ranks and export; the
translation's refusals name what no family has; --load compares with config.json."""
import json
import math
import types

import numpy as np
import pytest
import torch

from fsdp2_core.models.build import build_model
from fsdp2_core.testing.spawn import spawn
from megatron_compat.reverse import architecture_flags, to_megatron
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, export_with_trained_logits, spawn_flag_runs
from tests.arch.mcore_forward import megatron_and_hf_logits

# BASE is a Llama-style set: drop RMSNorm, SwiGLU and the bias switch for a GPT-NeoX-like model
LAYERNORM_BASE = [w for w in BASE if w not in ("--normalization", "RMSNorm", "--swiglu", "--disable-bias-linear")]
NEOX = "--rotary-percent 0.5 --rotary-base 5000 --norm-epsilon 1e-6"
# ALiBi instead of rope (the --position-embedding-type value replaced), BLOOM's embedding LayerNorm, tied embeddings
ALIBI_BASE = [("alibi" if w == "rope" else w) for w in LAYERNORM_BASE if w != "--untie-embeddings-and-output-weights"]
BLOOM = "--embed-layernorm"
# Learned positions (the --position-embedding-type value replaced) without linear biases: OPT
OPT_BASE = [("learned_absolute" if w == "rope" else w) for w in LAYERNORM_BASE] + ["--disable-bias-linear"]
STABLELM = "--swiglu --disable-bias-linear --add-qkv-bias --rotary-percent 0.5 --group-query-attention " \
           "--num-query-groups 2 --norm-epsilon 1e-6"


def _translate(extra, *more, base=LAYERNORM_BASE, world=1):
    return translate(base + extra.split() + list(more), world_size=world)


def _arch(extra, base=LAYERNORM_BASE):
    result = _translate(extra, base=base)
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


def test_rope_layernorm_swiglu_is_stablelm():
    """Megatron's default LayerNorm under a Llama-style script: StableLM's layer (sequential, LayerNorm with biases,
    SwiGLU), grouped-query attention, q/k/v biases and partial rotary as the flags say."""
    arch = _arch(STABLELM + " --hidden-dropout 0.1")
    assert {k: arch[k] for k in ("model_type", "use_parallel_residual", "use_qkv_bias", "qk_layernorm", "hidden_act",
                                 "layer_norm_eps", "intermediate_size", "num_key_value_heads", "hidden_dropout")} == {
        "model_type": "stablelm", "use_parallel_residual": False, "use_qkv_bias": True, "qk_layernorm": False,
        "hidden_act": "silu", "layer_norm_eps": 1e-6, "intermediate_size": 64, "num_key_value_heads": 2,
        "hidden_dropout": 0.1}
    assert arch["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5}
    # StableLM's own default would rotate a quarter of each head: full rotary is written out
    assert _arch("--swiglu --disable-bias-linear")["rope_parameters"]["partial_rotary_factor"] == 1.0
    cfg = translate(LAYERNORM_BASE + STABLELM.split(), world_size=1).config
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)
    assert type(model).__name__ == "StableLmForCausalLM"
    attention = model.model.layers[0].self_attn
    assert attention.rotary_ndims == 4 and attention.q_proj.bias is not None and attention.o_proj.bias is None
    assert model.model.layers[0].input_layernorm.bias is not None  # LayerNorm, not RMSNorm
    again = translate(LAYERNORM_BASE + architecture_flags(cfg.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture == cfg.model.architecture


def test_stablelm_takes_megatrons_hidden_dropout_where_megatron_applies_it():
    """StableLM drops out the MLP output itself; the embedding and the attention output are hooked (Megatron's other
    two places), so each of the three is dropped once."""
    from fsdp2_core.models.hidden_dropout import add_hidden_dropout
    cfg = translate(LAYERNORM_BASE + STABLELM.split() + ["--hidden-dropout", "0.1"], world_size=1).config
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)
    assert model.model.layers[0].dropout.p == 0.1
    assert add_hidden_dropout(model) == 1 + len(model.model.layers)  # the embedding and each attention, not the MLP


@pytest.mark.parametrize("extra,message", [
    ("--swiglu", "stablelm family, whose MLP and attention output have no biases (q/k/v may: --add-qkv-bias); add "
                 "--disable-bias-linear"),
    ("--swiglu --disable-bias-linear --num-experts 4", "stablelm family, which has no experts"),
    ("--swiglu --disable-bias-linear --qk-layernorm", "stablelm family, which has no --qk-layernorm"),
    ("--swiglu --disable-bias-linear --window-size 3,0", "stablelm family, which has no a sliding window"),
    ("--swiglu --disable-bias-linear --kv-channels 16", "the stablelm family's heads split --hidden-size 32 evenly"),
])
def test_stablelm_refusals_name_the_flag(extra, message):
    result = _translate(extra)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_learned_positions_without_biases_is_opt():
    """Megatron's GPT with --disable-bias-linear (MindSpeed's own example, GPT-3-style forks): GPT-2's layer without
    linear biases, which transformers' OPT computes (enable_bias false, pre-norm, exact GeLU)."""
    arch = _arch("--hidden-dropout 0.1", base=OPT_BASE)
    assert {k: arch[k] for k in ("model_type", "enable_bias", "do_layer_norm_before", "activation_function",
                                 "ffn_dim", "dropout", "pad_token_id", "tie_word_embeddings")} == {
        "model_type": "opt", "enable_bias": False, "do_layer_norm_before": True, "activation_function": "gelu",
        "ffn_dim": 128, "dropout": 0.1, "pad_token_id": None, "tie_word_embeddings": False}
    cfg = translate(OPT_BASE, world_size=1).config
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)
    assert type(model).__name__ == "OPTForCausalLM" and model.model.decoder.layers[0].fc1.bias is None
    assert model.model.decoder.embed_tokens.padding_idx is None  # every row of Megatron's embedding trains
    again = translate(OPT_BASE + architecture_flags(cfg.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture == cfg.model.architecture
    full = translate(OPT_BASE + ["--recompute-granularity", "full", "--recompute-method", "uniform"], world_size=1)
    assert full.config.parallel.recompute_modules == ["model.decoder.layers.{*}"]


def test_opt_drops_out_the_embeddings_sum_as_megatron_does():
    """OPT drops out attention and MLP outputs itself; Megatron's third place, the embeddings' sum, is the first
    layer's input: dropped out there, in training only."""
    cfg = translate(OPT_BASE + ["--hidden-dropout", "0.5"], world_size=1).config
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)  # hooks Megatron's dropout in
    assert model.config.dropout == 0.5
    seen = []
    model.model.decoder.layers[0].register_forward_pre_hook(lambda m, a: seen.append(a[0].clone()))
    ids = PROBE[:1, :8]
    model.eval()
    model(input_ids=ids)
    model.train()
    model(input_ids=ids)
    kept = seen[1] != 0
    assert 0.2 < kept.float().mean() < 0.8  # about half dropped
    torch.testing.assert_close(seen[1][kept], seen[0][kept] * 2)  # the rest scaled by 1 / (1 - p)


@pytest.mark.parametrize("extra,message", [
    ("--group-query-attention --num-query-groups 2", "opt family, which has no grouped-query or multi-query"),
    ("--norm-epsilon 1e-6", "OPT's LayerNorms keep eps 1e-5"),
    ("--num-experts 4", "opt family, which has no experts"),
])
def test_opt_refusals_name_the_flag(extra, message):
    result = _translate(extra, base=OPT_BASE)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_opt_folds_tensor_and_context_parallel_ranks_into_data_parallelism():
    result = _translate("--tensor-model-parallel-size 2", base=OPT_BASE, world=2)
    assert result.ok and result.config.parallel.tp_size == 1, result.problems()
    assert any("folded into FSDP sharding: OPT's decoder layers" in n for n in result.notes), result.notes


def _opt_megatron_pair():
    """megatron-core's GPTModel (learned positions, LayerNorm, no linear biases) against the translated opt model."""
    from fsdp2_core.checkpoint.megatron.names import split_qkv
    arch = _arch("", base=OPT_BASE)
    config = dict(num_layers=3, hidden_size=32, num_attention_heads=4, ffn_hidden_size=128, normalization="LayerNorm",
                  add_bias_linear=False, gated_linear_unit=False, activation_func=torch.nn.functional.gelu,
                  bias_activation_fusion=False)
    gpt = dict(vocab_size=128, max_sequence_length=64, position_embedding_type="learned_absolute",
               share_embeddings_and_output_weights=False)

    def to_hf(mg):
        hf = {"model.decoder.embed_tokens.weight": mg["embedding.word_embeddings.weight"],
              # OPT looks its positions up two rows further on
              "model.decoder.embed_positions.weight": torch.cat([torch.zeros(2, 32),
                                                                 mg["embedding.position_embeddings.weight"]]),
              "model.decoder.final_layer_norm.weight": mg["decoder.final_layernorm.weight"],
              "model.decoder.final_layer_norm.bias": mg["decoder.final_layernorm.bias"],
              "lm_head.weight": mg["output_layer.weight"]}
        for i in range(3):
            m, h = f"decoder.layers.{i}.", f"model.decoder.layers.{i}."
            q, k, v = split_qkv(mg[m + "self_attention.linear_qkv.weight"], 4, 4, 8)
            hf.update({h + "self_attn.q_proj.weight": q, h + "self_attn.k_proj.weight": k,
                       h + "self_attn.v_proj.weight": v,
                       h + "self_attn.out_proj.weight": mg[m + "self_attention.linear_proj.weight"],
                       h + "fc1.weight": mg[m + "mlp.linear_fc1.weight"],
                       h + "fc2.weight": mg[m + "mlp.linear_fc2.weight"]})
            for part in ("weight", "bias"):
                hf[h + f"self_attn_layer_norm.{part}"] = mg[m + f"input_layernorm.{part}"]
                hf[h + f"final_layer_norm.{part}"] = mg[m + f"pre_mlp_layernorm.{part}"]
        return hf

    tokens = torch.as_tensor(np.random.default_rng(0).integers(0, 128, size=(2, 16)))
    return megatron_and_hf_logits(config, gpt, arch, tokens, to_hf=to_hf)


def test_opt_computes_what_megatron_core_computes():
    theirs, ours = spawn(1, _opt_megatron_pair, timeout=300)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=2e-5)


PROBE = torch.as_tensor(np.random.default_rng(3).integers(0, 128, size=(2, 32)))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """On 2 ranks: GPT-NeoX-like flags data parallel (exported) and tensor parallel 2 with sequence parallelism;
    BLOOM data parallel (exported)."""
    tp = (LAYERNORM_BASE, NEOX + " --tensor-model-parallel-size 2 --sequence-parallel")
    recompute = (ALIBI_BASE, BLOOM + " --recompute-granularity full --recompute-method uniform")
    stablelm_tp = (LAYERNORM_BASE, STABLELM + " --tensor-model-parallel-size 2 --sequence-parallel")
    stablelm_cp = (LAYERNORM_BASE, STABLELM + " --context-parallel-size 2")
    summaries = spawn_flag_runs(2, tmp_path_factory.mktemp("layernorm"), [
        ((LAYERNORM_BASE, NEOX), {}, PROBE), (tp, {}, None), ((ALIBI_BASE, BLOOM), {}, PROBE),
        (recompute, {}, None), ((LAYERNORM_BASE, STABLELM), {}, PROBE), (stablelm_tp, {}, None),
        (stablelm_cp, {}, None), ((OPT_BASE, "--hidden-dropout 0.1"), {}, PROBE)])[0]
    return dict(zip(("gpt_neox", "gpt_neox_tp2", "bloom", "bloom_recompute", "stablelm", "stablelm_tp2",
                     "stablelm_cp2", "opt"), summaries))


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("family", ["gpt_neox", "stablelm", "bloom", "opt"])
def test_family_trains_and_exports(family, runs):
    dp = runs[family]
    losses = dp["losses"]
    assert len(losses) == 8 and np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    hf = export_with_trained_logits(dp, PROBE)
    assert hf.config.model_type == family


@pytest.mark.dist
@pytest.mark.slow
def test_full_recompute_of_bloom_layers_trains_the_same(runs):
    """--recompute-granularity full names BLOOM's layers (transformer.h.N), so the engine recomputes them."""
    np.testing.assert_allclose(runs["bloom_recompute"]["losses"], runs["bloom"]["losses"], rtol=0, atol=1e-5)


def test_recompute_and_fsdp_units_name_each_familys_layers():
    full = " --recompute-granularity full --recompute-method uniform"
    neox = _translate(NEOX + full).config.parallel
    assert neox.recompute_modules == ["gpt_neox.layers.{*}"]
    assert neox.fsdp_modules == ["gpt_neox.layers.{*}", "gpt_neox.embed_in", "lm_head"]
    bloom = _translate(BLOOM + " --recompute-activations", base=ALIBI_BASE).config.parallel
    assert bloom.recompute_modules == ["transformer.h.{*}.self_attention"]
    assert bloom.fsdp_modules == ["transformer.h.{*}", "transformer.word_embeddings", "lm_head"]
    for base, extra in ((LAYERNORM_BASE, NEOX + full), (ALIBI_BASE, BLOOM + " --recompute-activations")):
        cfg = translate(base + extra.split(), world_size=1).config
        flags, leftover = to_megatron(cfg)
        assert not {"recompute_modules", "fsdp_modules"} & set(leftover), leftover
        assert translate(flags, world_size=1).config.parallel == cfg.parallel


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("run", ["gpt_neox_tp2", "stablelm_tp2", "stablelm_cp2"])
def test_tensor_and_context_parallel_equal_data_parallel(run, runs):
    np.testing.assert_allclose(runs[run]["losses"], runs[run.rsplit("_", 1)[0]]["losses"], rtol=0, atol=1e-4)


def test_alibi_with_embedding_layernorm_is_bloom():
    arch = _arch(BLOOM, base=ALIBI_BASE)
    assert {k: arch[k] for k in ("model_type", "n_layer", "n_head", "hidden_size", "layer_norm_epsilon",
                                 "tie_word_embeddings", "hidden_dropout", "apply_residual_connection_post_layernorm")} \
        == {"model_type": "bloom", "n_layer": 3, "n_head": 4, "hidden_size": 32, "layer_norm_epsilon": 1e-5,
            "tie_word_embeddings": True, "hidden_dropout": 0.0, "apply_residual_connection_post_layernorm": False}
    cfg = translate(ALIBI_BASE + BLOOM.split(), world_size=1).config
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)
    assert type(model).__name__ == "BloomForCausalLM"
    again = translate(ALIBI_BASE + architecture_flags(cfg.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture == cfg.model.architecture
    # Megatron's default hidden dropout (0.1) also drops out the embeddings: trained without it, said so
    at = ALIBI_BASE.index("--hidden-dropout")
    default = translate(ALIBI_BASE[:at] + ALIBI_BASE[at + 2:] + [BLOOM], world_size=1)
    assert default.ok and any("drops out the embeddings too" in n for n in default.notes)


@pytest.mark.parametrize("extra,message", [
    ("", "alibi without --embed-layernorm: transformers' BLOOM, the family of ALiBi with LayerNorm and GeLU, always"),
    ("--normalization RMSNorm --swiglu",
     "without --embed-layernorm (Baichuan-13B-style, RMSNorm and SwiGLU): no transformers family computes it"),
    ("--embed-layernorm --normalization RMSNorm --swiglu", "drop --normalization RMSNorm and --swiglu"),
    ("--embed-layernorm --ffn-hidden-size 96", "BLOOM's MLP is 4 × --hidden-size (128) wide"),
    ("--embed-layernorm --no-bias-gelu-fusion", "BLOOM computes the tanh approximation"),
    ("--embed-layernorm --norm-epsilon 1e-6", "Megatron-DeepSpeed keeps 1e-5 there"),
    ("--embed-layernorm --hidden-dropout 0.1", "Megatron drops out the embeddings too"),
    ("--embed-layernorm --group-query-attention --num-query-groups 2", "bloom family, which has no grouped-query"),
])
def test_bloom_refusals_name_the_flag(extra, message):
    result = _translate(extra, base=ALIBI_BASE)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


@pytest.mark.parametrize("extra", ["--reset-attention-mask", "--reset-attention-mask --reset-position-ids"])
def test_bloom_keeps_documents_apart(extra):
    """bigscience's --reset-attention-mask on BLOOM: the 4-D document mask reaches it (models/alibi_documents.py,
    tests/engine/test_document_masks.py checks the logits)."""
    result = _translate("--embed-layernorm " + extra, base=ALIBI_BASE)
    assert result.ok, result.problems()
    assert result.config.model.architecture["model_type"] == "bloom" and result.config.data.reset_attention_mask


@pytest.mark.parametrize("parallel", ["--tensor-model-parallel-size 2", "--context-parallel-size 2"])
def test_bloom_folds_tensor_and_context_parallel_ranks_into_data_parallelism(parallel):
    """BLOOM's attention splits neither by heads nor by sequence: those ranks become data-parallel ranks."""
    result = _translate(BLOOM + " " + parallel, base=ALIBI_BASE, world=2)
    assert result.ok, result.problems()
    p = result.config.parallel
    assert (p.tp_size, p.cp_size) == (1, 1)
    assert any("folded into FSDP sharding: BLOOM's ALiBi attention" in n for n in result.notes), result.notes


def _with_batch(base, micro, global_batch=None):
    """base with --micro-batch-size MICRO and --global-batch-size GLOBAL_BATCH (left out when None)."""
    out = list(base)
    at = out.index("--micro-batch-size")
    out[at + 1] = str(micro)
    at = out.index("--global-batch-size")
    if global_batch is None:
        del out[at:at + 2]
    else:
        out[at + 1] = str(global_batch)
    return out


def test_bloom_folded_tensor_parallel_ranks_keep_the_scripts_global_batch():
    """bigscience's tr14-2B7-mup.slurm: micro 16, global 512, tp 2 on 64 GPUs (Megatron: dp 32, one step). Folded, dp
    is 64: the micro batch halves so that the global batch stays 512, as for folded pipeline ranks (it was refused:
    'choose a global batch that is a multiple of 1024')."""
    result = _translate(BLOOM + " --tensor-model-parallel-size 2", base=_with_batch(ALIBI_BASE, 4, 8), world=4)
    assert result.ok, result.problems()
    t = result.config.training
    assert (t.global_batch_size, t.per_device_train_batch_size, t.gradient_accumulation_steps) == (8, 2, 1)
    assert any(n.startswith("micro batch 4 → 2: with its 2 tensor/context-parallel ranks folded") for n in result.notes)


def test_bloom_folded_ranks_leave_megatrons_default_global_batch():
    """Without --global-batch-size Megatron's global batch is micro × its own dp (world / (tp × pp)), not the folded
    dp's."""
    result = _translate(BLOOM + " --tensor-model-parallel-size 2", base=_with_batch(ALIBI_BASE, 2), world=4)
    assert result.ok, result.problems()
    t = result.config.training
    assert (t.global_batch_size, t.per_device_train_batch_size, t.gradient_accumulation_steps) == (4, 1, 1)


def test_embedding_layernorm_without_alibi_is_refused():
    result = _translate("--embed-layernorm")
    assert not result.ok and any("only BLOOM" in p for p in result.problems()), result.problems()


def test_load_compares_bloom_flags_with_config_json(tmp_path):
    config = dict(_arch(BLOOM, base=ALIBI_BASE), n_head=8, apply_residual_connection_post_layernorm=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = _translate(BLOOM, "--load", str(tmp_path), base=ALIBI_BASE)
    assert result.ok, result.problems()
    note = next(n for n in result.notes if "disagree with" in n)
    assert "n_head: flags say 4, config.json says 8" in note
    assert "apply_residual_connection_post_layernorm: flags say False, config.json says True" in note


def _megatron_deepspeed_slopes(n):
    """bigscience Megatron-DeepSpeed's ALiBi slopes (ParallelTransformerLayer._build_alibi_tensor's get_slopes): a
    geometric series from 2^(-8/n) for a power of two, else the nearest power's and every other of twice it."""
    def power_of_2(m):
        start = 2 ** (-2 ** -(math.log2(m) - 3))
        return [start * start ** i for i in range(m)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + _megatron_deepspeed_slopes(2 * closest)[0::2][:n - closest]


@pytest.mark.parametrize("heads", [4, 6, 12])
def test_bloom_alibi_slopes_are_megatron_deepspeeds(heads):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor
    # Megatron-DeepSpeed adds slope × key position to every query row (softmax is blind to a per-row constant)
    alibi = build_alibi_tensor(torch.ones(1, 5), heads, torch.float64).view(heads, 5)
    want = torch.tensor(_megatron_deepspeed_slopes(heads), dtype=torch.float64)[:, None] * torch.arange(5)
    torch.testing.assert_close(alibi, want, rtol=1e-6, atol=1e-7)


def test_a_yaml_asking_tensor_parallelism_for_bloom_is_refused_by_the_engine():
    """Only the flag translation folds the ranks; a config that asks tp_size > 1 itself gets the reason."""
    from transformers import BloomConfig, BloomForCausalLM

    from fsdp2_core.config import ConfigError
    from fsdp2_core.models.tp_layout import tp_layout_for
    model = BloomForCausalLM(BloomConfig(n_layer=1, hidden_size=32, n_head=4, vocab_size=64))
    with pytest.raises(ConfigError, match="tp_size > 1 with model_type bloom"):
        tp_layout_for(model)


@pytest.mark.parametrize("model_type", ["nemotron_h", "qwen3_next"])
def test_a_yaml_asking_tensor_or_context_parallelism_for_mamba_or_gated_deltanet_is_refused(model_type):
    """The flag translation folds those ranks (tests/arch/test_hybrid_flags.py, test_qwen3_next.py); a config that
    asks for them itself is refused naming the layers, for tp by the layout and for cp by Ulysses' check."""
    import transformers

    from fsdp2_core.config import ConfigError
    from fsdp2_core.models.tp_layout import tp_layout_for
    from fsdp2_core.parallel.context_parallel import check_attention_only
    config = transformers.AutoConfig.for_model(model_type)
    model = types.SimpleNamespace(config=config)
    with pytest.raises(ConfigError, match=f"tp_size > 1 with model_type {model_type}"):
        tp_layout_for(model)
    with pytest.raises(ConfigError, match="cp_size > 1: this model has .*(linear_attention|mamba)"):
        check_attention_only(config)
