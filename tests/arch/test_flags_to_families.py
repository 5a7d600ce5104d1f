"""Megatron / MindSpeed flag sets -> the Hugging Face family and config they describe, the engine settings beside
it, the refusals that name what to change, and the comparison with a --load checkpoint's config.json."""
import json

import pytest
import torch

from fsdp2_core.models.build import build_model
from megatron_compat.translate import translate
from tests.arch.arch_helpers import (
    BASE,
    DSV2,
    DSV2_MINDSPEED,
    DSV3,
    FAMILIES,
    GLM45,
    GPT_OSS,
    LLAMA31,
    MINIMAX_M2,
    MISTRAL,
    QWEN2_MOE,
    flag_config,
)


def _translate(extra, *more, world=1):
    return translate(BASE + extra.split() + list(more), world_size=world)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_flag_set_builds_its_family(family):
    cfg = flag_config(FAMILIES[family])
    assert cfg.model.architecture["model_type"] == family
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)  # transformers accepts the config
    assert type(model).__name__.lower().startswith(family.replace("_", ""))


def test_deepseek_v3_fields():
    cfg = flag_config(DSV3)
    arch, m = cfg.model.architecture, cfg.model
    assert {k: arch[k] for k in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                                 "n_routed_experts", "num_experts_per_tok", "n_shared_experts", "n_group", "topk_group",
                                 "routed_scaling_factor", "norm_topk_prob", "first_k_dense_replace",
                                 "num_nextn_predict_layers", "rope_interleave")} == {
        "q_lora_rank": 16, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8,
        "n_routed_experts": 8, "num_experts_per_tok": 4, "n_shared_experts": 1, "n_group": 4, "topk_group": 2,
        "routed_scaling_factor": 2.5, "norm_topk_prob": True, "first_k_dense_replace": 1, "num_nextn_predict_layers": 1,
        "rope_interleave": True}
    assert not arch["output_router_logits"]  # seq_aux_loss only: no batch-level aux loss
    assert (m.model_id, m.moe_seq_aux_loss_coeff, m.moe_z_loss_coeff, m.moe_router_bias_update_rate,
            m.mtp_num_layers, m.mtp_loss_scaling_factor) == ("deepseek_v3", 1e-3, 1e-3, 1e-2, 1, 0.3)


def test_deepseek_v2_fields():
    cfg = flag_config(DSV2)
    arch, m = cfg.model.architecture, cfg.model
    assert {k: arch[k] for k in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "n_routed_experts",
                                 "num_experts_per_tok", "n_shared_experts", "n_group", "topk_group", "topk_method",
                                 "routed_scaling_factor", "norm_topk_prob", "first_k_dense_replace",
                                 "router_aux_loss_coef", "output_router_logits")} == {
        "q_lora_rank": None, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "n_routed_experts": 8,
        "num_experts_per_tok": 2, "n_shared_experts": 2, "n_group": 4, "topk_group": 2,
        "topk_method": "group_limited_greedy", "routed_scaling_factor": 2.5, "norm_topk_prob": False,
        "first_k_dense_replace": 1, "router_aux_loss_coef": 1e-2, "output_router_logits": True}
    assert "rope_interleave" not in arch  # DeepSeek-V2 always rotates interleaved pairs
    assert (m.model_id, m.moe_z_loss_coeff) == ("deepseek_v2", 1e-3)
    ms = flag_config(DSV2_MINDSPEED).model.architecture
    assert (ms["topk_method"], ms["n_group"], ms["topk_group"], ms["num_experts_per_tok"], ms["q_lora_rank"],
            ms["n_shared_experts"], ms["routed_scaling_factor"]) == ("group_limited_greedy", 4, 2, 4, 16, 1, 2.0)
    # MindSpeed's --seq-aux turns group_limited_greedy's loss sequence-level; all groups kept is plain top-k
    seq = flag_config(DSV2_MINDSPEED.replace("--topk-group 2", "--topk-group 4").replace(
        "--moe-aux-loss-coeff 0", "--moe-aux-loss-coeff 1e-3 --seq-aux"))
    assert (seq.model.moe_seq_aux_loss_coeff, seq.model.architecture["router_aux_loss_coef"],
            seq.model.architecture["topk_method"], seq.model.architecture["n_group"]) == (1e-3, 0.0, "greedy", None)
    # MindSpeed's pai_megatron_aux_loss: megatron-core's pre-softmax router (unscaled) with its aux loss
    unscaled = DSV2.replace("--moe-router-topk-scaling-factor 2.5 ", "")
    pai = unscaled.replace("--moe-router-pre-softmax ", "").replace(
        "--moe-aux-loss-coeff 1e-2", "--moe-router-load-balancing-type pai_megatron_aux_loss --moe-aux-loss-coeff 1e-2")
    assert flag_config(pai).model == flag_config(unscaled).model


def test_gpt_oss_fields():
    cfg = flag_config(GPT_OSS)
    arch, m = cfg.model.architecture, cfg.model
    assert {k: arch[k] for k in ("num_local_experts", "num_experts_per_tok", "intermediate_size", "attention_bias",
                                 "swiglu_limit", "sliding_window", "layer_types", "router_aux_loss_coef",
                                 "num_key_value_heads", "head_dim")} == {
        "num_local_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 16, "attention_bias": True,
        "swiglu_limit": 7.0, "sliding_window": 9, "router_aux_loss_coef": 1e-2, "num_key_value_heads": 2,
        "head_dim": 8, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]}
    assert (m.model_id, m.moe_z_loss_coeff) == ("gpt_oss", 1e-3)
    # a list marks the windowed layers; without --window-size every layer is full attention
    listed = flag_config(GPT_OSS.replace("--window-attn-skip-freq 2", "--window-attn-skip-freq [0,1,1]"))
    assert listed.model.architecture["layer_types"] == ["full_attention", "sliding_attention", "sliding_attention"]
    full = flag_config(GPT_OSS.replace("--window-size 8,0 ", "")).model.architecture
    assert (full["layer_types"], full["sliding_window"]) == (["full_attention"] * 3, None)


def test_minimax_m2_fields_and_its_spec():
    """A layer spec naming MiniMax-M2 (q/k norms over all heads) picks transformers' minimax_m2; the same flags without
    it describe per-head q/k norms, the GLM-4.5 family."""
    cfg = flag_config(MINIMAX_M2)
    arch, m = cfg.model.architecture, cfg.model
    assert {k: arch[k] for k in ("model_type", "num_local_experts", "num_experts_per_tok", "intermediate_size",
                                 "head_dim")} == {"model_type": "minimax_m2", "num_local_experts": 8,
                                                  "num_experts_per_tok": 2, "intermediate_size": 16, "head_dim": 8}
    assert arch["rope_parameters"]["partial_rotary_factor"] == 0.5
    assert (m.model_id, m.moe_router_bias_update_rate, m.moe_seq_aux_loss_coeff) == ("minimax_m2", 1e-2, 1e-3)
    plain = flag_config(MINIMAX_M2.replace("--spec miles_plugins.models.minimax_m2 get_minimax_m2_spec ", ""))
    assert (plain.model.architecture["model_type"], plain.model.architecture["use_qk_norm"]) == ("glm4_moe", True)


def test_mindspeed_and_megatron_spellings_agree():
    megatron = flag_config("--num-experts 8 --moe-router-topk 4 --moe-ffn-hidden-size 16 "
                           "--moe-shared-expert-intermediate-size 16 --moe-router-score-function sigmoid "
                           "--moe-router-num-groups 4 --moe-router-group-topk 2 --moe-router-topk-scaling-factor 2.5 "
                           "--moe-router-load-balancing-type seq_aux_loss --moe-aux-loss-coeff 1e-4 "
                           "--mtp-num-layers 1 --multi-latent-attention --qk-layernorm --qk-head-dim 8 "
                           "--qk-pos-emb-head-dim 8 --kv-lora-rank 16 --v-head-dim 8")
    mindspeed = flag_config("--num-experts 8 --moe-router-topk 4 --moe-intermediate-size 16 --n-shared-experts 1 "
                            "--moe-router-score-function sigmoid --n-group 4 --topk-group 2 "
                            "--routed-scaling-factor 2.5 "
                            "--moe-router-load-balancing-type noaux_tc --moe-aux-loss-coeff 1e-4 --seq-aux "
                            "--num-nextn-predict-layers 1 --share-mtp-embedding-and-output-weight "
                            "--multi-head-latent-attention --qk-layernorm --qk-nope-head-dim 8 --qk-rope-head-dim 8 "
                            "--kv-lora-rank 16 --v-head-dim 8 --norm-topk-prob")
    assert megatron.model == mindspeed.model


def test_glm45_qwen2_moe_llama31_mistral_fields():
    glm = flag_config(GLM45).model.architecture
    assert (glm["attention_bias"], glm["use_qk_norm"], glm["rope_parameters"]["partial_rotary_factor"],
            glm["n_shared_experts"], glm["first_k_dense_replace"], glm["routed_scaling_factor"]) == (
        True, False, 0.5, 1, 1, 1.0)
    qwen2 = flag_config(QWEN2_MOE).model.architecture
    assert (qwen2["shared_expert_intermediate_size"], qwen2["norm_topk_prob"], qwen2["qkv_bias"],
            qwen2["router_aux_loss_coef"]) == (32, False, True, 1e-2)
    llama = flag_config(LLAMA31).model.architecture
    assert llama["rope_parameters"] == {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 8192}
    assert flag_config(MISTRAL).model.architecture["sliding_window"] == 8
    assert flag_config("--window-size 7,0").model.architecture["sliding_window"] == 8   # Megatron's (left, right)


def test_moe_layer_freq_list_form():
    arch = flag_config("--num-experts 4 --qk-layernorm --moe-layer-freq [0]*2+[1]").model.architecture
    assert arch["mlp_only_layers"] == [0, 1]
    # Pai-Megatron-Patch writes the list in parentheses, which Megatron's eval takes as the list
    arch = flag_config("--num-experts 4 --qk-layernorm --moe-layer-freq ([0]*1+[1]*2)").model.architecture
    assert arch["mlp_only_layers"] == [0]


@pytest.mark.parametrize("extra,message", [
    (DSV3.replace("--qk-layernorm ", ""), "always normalises the q and kv latents"),
    ("--multi-latent-attention --qk-layernorm --num-experts 4", "add --moe-router-pre-softmax (and drop"),
    (DSV2 + " --norm-topk-prob --moe-router-load-balancing-type aux_loss", "without renormalising"),
    (DSV2.replace("--moe-router-topk 2", "--moe-router-topk 4"), "agree when --moe-router-topk / "
                                                                 "--moe-router-group-topk is 1"),
    (DSV2.replace("--moe-router-pre-softmax", "--moe-router-pre-softmax --moe-router-enable-expert-bias"),
     "DeepSeek-V2's router has no expert bias"),
    (DSV2 + " --moe-shared-expert-gate", "DeepSeek-V2 adds its shared experts ungated"),
    (DSV2 + " --moe-router-load-balancing-type pai_megatron_aux_loss", "never scales the weights"),
    (DSV2_MINDSPEED.replace("--n-group 4 ", ""), "--topk-group 2 with 1 expert groups"),  # EP 1: one group
    (DSV2 + " --moe-device-level-aux-loss-coeff 0.05", "--moe-device-level-aux-loss-coeff balances the expert "
                                                       "groups of MindSpeed's DeepSeek-V2 router"),
    ("--num-experts 4 --moe-router-load-balancing-type group_limited_greedy --n-group 2 --topk-group 1",
     "add --multi-latent-attention"),
    ("--num-experts 4 --moe-router-enable-expert-bias", "add --moe-router-score-function sigmoid"),
    ("--num-experts 4 --moe-router-load-balancing-type softmax_topk --moe-router-enable-expert-bias",
     "score with sigmoid (DeepSeek-V3, GLM-4.5, MiniMax-M2)"),
    (GPT_OSS, "gpt-oss's attention, router and experts have biases"),  # BASE's --disable-bias-linear
    ("--softmax-type learnable", "--softmax-type without --quick-geglu"),
    ("--glu-linear-offset 1.0 --activation-func-clamp-value 7.0", "--glu-linear-offset, "
                                                                  "--activation-func-clamp-value without"),
    ("--num-experts 4 --moe-router-topk-scaling-factor 2.5", "add --moe-router-score-function sigmoid"),
    ("--num-experts 8 --moe-router-topk 4 --moe-router-score-function sigmoid --moe-router-num-groups 2 "
     "--moe-router-group-topk 1", "rank a group by its top two"),
    ("--num-experts 4 --moe-shared-expert-intermediate-size 32", "without --moe-shared-expert-gate"),
    ("--num-experts 4 --moe-router-load-balancing-type global_aux_loss", "global_aux_loss balances the loads"),
    ("--num-experts 4 --moe-router-score-function sigmoid --moe-layer-freq [1,0,1]", "have their dense layers first"),
    ("--sliding-window 8 --qk-layernorm", "only the Mistral family"),
    ("--window-size 8,4", "the right extent must be 0"),
    ("--rope-scaling-type llama3", "needs --low-freq-factor, --high-freq-factor, --original-max-position-embeddings"),
    ("--rope-scaling-type longrope", "longrope needs --rope-scaling-original-max-position-embeddings"),
    ("--rope-scaling-type plm", "only llama3, yarn and longrope"),
    # nonsense values: named, never a crash
    (GLM45.replace("--moe-ffn-hidden-size 16", "--moe-ffn-hidden-size 0"), "--moe-ffn-hidden-size 0: the experts'"),
    (DSV3.replace("--q-lora-rank 16", "--q-lora-rank 0"), "leave --q-lora-rank out"),
    (DSV3.replace("--kv-lora-rank 16", "--kv-lora-rank -1"), "--kv-lora-rank -1: MLA's kv_lora_rank"),
    ("--sliding-window 0", "a window holds at least one position"),
    ("--rope-scaling-type llama3 --rope-scaling-factor 8 --low-freq-factor 4 --high-freq-factor 4 "
     "--original-max-position-embeddings 16", "--high-freq-factor 4.0 must be above --low-freq-factor 4.0"),
    ("--rope-scaling-type yarn --rope-scaling-factor nan --rope-scaling-original-max-position-embeddings 16",
     "factor must be a positive number"),
    ("--rope-scaling-type llama3 --rope-scaling-factor 8 --low-freq-factor 1 --high-freq-factor 4 "
     "--original-max-position-embeddings 16.5", "a positive whole number of positions"),
])
def test_refusals_name_what_to_change(extra, message):
    result = _translate(extra)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_load_compares_flags_with_config_json(tmp_path):
    """With --load of a Hugging Face directory the flags are checked against its config.json, differences named; a
    combination no family builds is reported, not refused, since the checkpoint defines the model."""
    arch = dict(flag_config(DSV3).model.architecture, q_lora_rank=32, rope_parameters={"rope_type": "default",
                                                                                       "rope_theta": 10000.0})
    (tmp_path / "config.json").write_text(json.dumps(arch))
    result = _translate(DSV3, "--load", str(tmp_path))
    assert result.ok, result.problems()
    note = next(n for n in result.notes if "disagree with" in n)
    assert "q_lora_rank: flags say 16, config.json says 32" in note and "rope_type: flags say yarn" not in note
    assert result.config.model.model_id == "deepseek_v3" and result.config.model.mtp_num_layers == 1
    unbuildable = _translate(DSV3.replace("--qk-layernorm ", ""), "--load", str(tmp_path))
    assert unbuildable.ok, unbuildable.problems()
    assert any("could not be compared" in n and "--qk-layernorm" in n for n in unbuildable.notes)


def test_mla_latent_norm_epsilon_is_named_when_it_differs():
    """transformers' DeepSeek-V3 latent norms (q_a_layernorm, kv_a_layernorm) always use eps 1e-6."""
    def notes(extra):
        result = translate(BASE + extra.split(), world_size=1)
        assert result.ok, result.problems()
        return [n for n in result.notes if "latents with eps 1e-6" in n]
    assert notes(DSV3 + " --norm-epsilon 1e-5") and "--norm-epsilon 1e-05" in notes(DSV3 + " --norm-epsilon 1e-5")[0]
    assert not notes(DSV3 + " --norm-epsilon 1e-6")


def test_dense_mla_model_builds_deepseek_v3_without_experts():
    cfg = flag_config(DSV3.replace("--num-experts 8", ""))
    arch = cfg.model.architecture
    assert (arch["model_type"], arch["first_k_dense_replace"], arch["n_routed_experts"]) == ("deepseek_v3", 4, 1)


def test_mtp_with_tensor_parallelism_runs_without_sequence_parallelism():
    result = _translate(DSV3, "--tensor-model-parallel-size", "2", "--sequence-parallel", world=2)
    assert result.ok and result.config.parallel.sequence_parallel is False
    assert any("sequence parallelism is off" in n for n in result.notes)
    from fsdp2_core.config import ConfigError
    from fsdp2_core.config.validate import validate
    result.config.parallel.sequence_parallel = True  # as a YAML could ask
    with pytest.raises(ConfigError, match="set parallel.sequence_parallel false"):
        validate(result.config)


@pytest.mark.parametrize("extra,message", [
    (GPT_OSS.replace("--glu-linear-offset 1.0", "--glu-linear-offset 0.5"), "give --glu-linear-offset 1.0"),
    (GPT_OSS.replace("--activation-func-clamp-value 7.0 ", ""), "give the clamp (gpt-oss: 7.0)"),
    (GPT_OSS.replace("--softmax-type learnable", "--softmax-type off-by-one"), "give --softmax-type learnable"),
    (GPT_OSS.replace("--window-attn-skip-freq 2", "--window-attn-skip-freq [1,0]"), "one per layer (3 layers)"),
    (GPT_OSS + " --moe-router-pre-softmax", "softmax before top-k (--moe-router-pre-softmax)"),
    (GPT_OSS + " --first-k-dense-replace 1", "dense layers"),
    (GPT_OSS + " --qk-layernorm", "--quick-geglu with --qk-layernorm"),
    (GPT_OSS.replace("--num-experts 8 ", ""), "a dense quick-GeGLU model has no Hugging Face family"),
    (GPT_OSS + " --enable-gpt-oss", "sets YaRN parameters behind the flags"),
    (MINIMAX_M2.replace("--moe-router-score-function sigmoid --moe-router-enable-expert-bias "
                        "--moe-router-bias-update-rate 1e-2 ", ""), "a softmax router"),
    (MINIMAX_M2 + " --moe-shared-expert-intermediate-size 16", "shared experts"),
    (MINIMAX_M2 + " --first-k-dense-replace 1", "dense layers"),
    (MINIMAX_M2.replace("--qk-layernorm ", ""), "no --qk-layernorm"),
    (MINIMAX_M2.replace("--moe-router-topk 2", "--moe-router-topk 1"), "--moe-router-topk 1"),
])
def test_gpt_oss_and_minimax_refusals_name_what_to_change(extra, message):
    with pytest.raises(AssertionError) as refused:
        flag_config(extra)
    assert message in str(refused.value), refused.value


@pytest.mark.parametrize("flags", [DSV2, DSV2_MINDSPEED, GPT_OSS, MINIMAX_M2],
                         ids=["megatron", "mindspeed", "gpt_oss", "minimax_m2"])
def test_new_families_round_trip_to_megatron_flags(flags):
    """--to-megatron writes DeepSeek-V2's router back (megatron-core's group flags where its group rule is the
    family's, MindSpeed's group_limited_greedy where only that says it: top 4 from 2 groups), gpt-oss's flags and
    MiniMax-M2's layer spec."""
    from megatron_compat.reverse import to_megatron
    cfg = flag_config(flags)
    argv, _ = to_megatron(cfg)
    assert ("group_limited_greedy" in argv) == (flags is DSV2_MINDSPEED)
    assert ("--window-attn-skip-freq" in argv) == (flags is GPT_OSS)
    again = translate(argv, world_size=1)
    assert again.ok, again.problems()
    assert again.config.model == cfg.model


@pytest.mark.parametrize("flags,field,theirs", [
    (DSV2, "topk_method", "greedy"),
    (GPT_OSS, "layer_types", ["full_attention"] * 3),
    (GPT_OSS, "swiglu_limit", 5.0),
    (MINIMAX_M2, "num_local_experts", 16),
])
def test_load_of_new_families_compares_flags_with_config_json(tmp_path, flags, field, theirs):
    """--load of a Hugging Face directory of these families: the flags are checked against its config.json (the
    difference named) and the family's engine forward is chosen from its model_type."""
    cfg = flag_config(flags)
    (tmp_path / "config.json").write_text(json.dumps(dict(cfg.model.architecture, **{field: theirs})))
    base = [w for w in BASE if "--quick-geglu" not in flags.split() or w not in ("--disable-bias-linear", "--swiglu")]
    result = translate(base + flags.split() + ["--load", str(tmp_path)], world_size=1)
    assert result.ok, result.problems()
    note = next(n for n in result.notes if "disagree with" in n)
    assert f"{field}: flags say {cfg.model.architecture[field]}, config.json says {theirs}" in note, note
    assert result.config.model.model_id == cfg.model.model_id


def test_mindspeed_deepseek_v2_balance_losses_and_groups_from_the_expert_parallel_size():
    """MindSpeed's DeepSeek-V2 scripts: no --n-group (one group per expert-parallel rank), --seq-aux, the expert-,
    device- and communication-level coefficients."""
    flags = (DSV2_MINDSPEED.replace("--n-group 4 --topk-group 2", "--topk-group 2")
             .replace("--moe-aux-loss-coeff 0", "--moe-aux-loss-coeff 0.003")
             + " --moe-device-level-aux-loss-coeff 0.05 --moe-comm-aux-loss-coeff 0.02 --seq-aux")
    cfg = flag_config(flags + " --expert-model-parallel-size 4", world=4)
    arch, m = cfg.model.architecture, cfg.model
    assert (arch["topk_method"], arch["n_group"], arch["topk_group"]) == ("group_limited_greedy", 4, 2)
    assert (m.moe_seq_aux_loss_coeff, m.moe_device_level_aux_loss_coeff, m.moe_comm_aux_loss_coeff,
            m.moe_balance_per_sample) == (0.003, 0.05, 0.02, True)
    without_seq = flag_config(flags.replace(" --seq-aux", "") + " --expert-model-parallel-size 4", world=4).model
    assert (without_seq.moe_seq_aux_loss_coeff, without_seq.moe_balance_per_sample) == (0.0, False)


PAI_QWEN1_BASE = tuple(w for w in BASE if w != "--disable-bias-linear")  # Megatron's default: biases on


def test_pai_bias_flags_give_qwen1_biases_on_q_k_v_only():
    """Pai-Megatron-Patch's Qwen-1 switches the MLP and attention-output biases off and keeps q/k/v's: qwen2."""
    cfg = flag_config((PAI_QWEN1_BASE, "--disable-bias-linear-fc --disable-bias-attn-fc"))
    assert cfg.model.architecture["model_type"] == "qwen2"
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)
    layer = model.model.layers[0]
    assert layer.self_attn.q_proj.bias is not None and layer.self_attn.v_proj.bias is not None
    assert layer.self_attn.o_proj.bias is None and layer.mlp.down_proj.bias is None


@pytest.mark.parametrize("extra, message", [
    ("--disable-bias-linear-fc", "--disable-bias-linear-fc without --disable-bias-attn-fc"),
    ("--disable-bias-attn-fc", "--disable-bias-attn-fc without --disable-bias-linear-fc"),
    ("--disable-bias-linear-fc --disable-bias-attn-fc --disable-bias-linear", "depends on Pai's model code"),
])
def test_pai_bias_flags_alone_are_refused_naming_the_other(extra, message):
    with pytest.raises(AssertionError) as refused:
        flag_config((PAI_QWEN1_BASE, extra))
    assert message in str(refused.value), refused.value
