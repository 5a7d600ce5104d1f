"""Qwen3-Next from Megatron / MindSpeed-LLM flags (issue #16): Gated DeltaNet layers beside gated full attention and
Qwen2-MoE-style experts become transformers' `qwen3_next`; it trains on 2 gloo ranks with a falling loss, the same
losses with expert parallelism 2 as with data parallelism, and its Hugging Face export loads with from_pretrained
and gives the trained logits. Tensor- and context-parallel ranks, which do not reach the linear-attention layers,
fold into data parallelism; Megatron-LM's and MindSpeed-LLM's spellings give the same model."""
import numpy as np
import pytest
import torch

from megatron_compat.entry_points import judge_entry
from tests.arch.arch_helpers import BASE, export_with_trained_logits, flag_config, spawn_flag_runs
from tests.translate_helpers import refused

PROBE = torch.as_tensor(np.random.default_rng(5).integers(0, 128, size=(2, 32)))
# MindSpeed-LLM's spelling (examples/mcore/qwen3_next): full attention every 3rd layer, a quarter of the head rotated,
# softmax over all 4 experts then the top 2 renormalised, one gated shared expert of the experts' width, and one MTP
# layer (the decoder's last kind of layer: full attention)
LINEAR = ("--qk-layernorm --group-query-attention --num-query-groups 2 --kv-channels 8 --linear-key-head-dim 8 "
          "--linear-value-head-dim 8 --linear-num-key-heads 2 --linear-num-value-heads 4 --partial-rotary-factor 0.25 "
          "--add-rmsnorm-offset --norm-epsilon 1e-6")
MOE = ("--num-experts 4 --moe-router-topk 2 --moe-ffn-hidden-size 16 --n-shared-experts 1 --shared-expert-gate "
       "--moe-router-pre-softmax --norm-topk-prob --moe-aux-loss-coeff 1e-2")
MINDSPEED = (f"--full-attention-interval 3 --mamba-d-conv 4 --mamba-expand 1 --mamba-chunk-size 8 {LINEAR} {MOE} "
             "--mtp-num-layers 1 --mtp-loss-scaling-factor 0.3")
# Megatron-LM's spelling of the same model
MEGATRON = (f"--experimental-attention-variant gated_delta_net --linear-attention-freq 3 --attention-output-gate "
            f"--linear-conv-kernel-dim 4 --apply-layernorm-1p {LINEAR} {MOE}").replace(
    "--n-shared-experts 1 --shared-expert-gate", "--moe-shared-expert-intermediate-size 16 --moe-shared-expert-gate")


def test_flags_describe_qwen3_next():
    cfg = flag_config(MINDSPEED)
    arch = cfg.model.architecture
    assert arch["model_type"] == "qwen3_next" and cfg.model.model_id == "qwen2_moe"
    assert arch["layer_types"] == ["linear_attention", "linear_attention", "full_attention"]
    assert {k: arch[k] for k in ("linear_key_head_dim", "linear_value_head_dim", "linear_num_key_heads",
                                 "linear_num_value_heads", "linear_conv_kernel_dim", "num_experts",
                                 "shared_expert_intermediate_size", "norm_topk_prob", "head_dim")} == {
        "linear_key_head_dim": 8, "linear_value_head_dim": 8, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
        "linear_conv_kernel_dim": 4, "num_experts": 4, "shared_expert_intermediate_size": 16, "norm_topk_prob": True,
        "head_dim": 8}
    assert arch["rope_parameters"]["partial_rotary_factor"] == 0.25
    assert cfg.training.gdn_chunk_size == 8
    megatron = flag_config(MEGATRON).model.architecture
    assert megatron == arch
    assert (cfg.model.mtp_num_layers, cfg.model.mtp_loss_scaling_factor) == (1, 0.3)
    # the model transformers builds from it: Gated DeltaNet where the pattern says, gated attention elsewhere
    from transformers import AutoConfig, AutoModelForCausalLM
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**arch))
    kinds = [type(layer.linear_attn if hasattr(layer, "linear_attn") else layer.self_attn).__name__
             for layer in model.model.layers]
    assert kinds == ["Qwen3NextGatedDeltaNet", "Qwen3NextGatedDeltaNet", "Qwen3NextAttention"]
    assert model.model.layers[2].self_attn.q_proj.out_features == 2 * 4 * 8  # queries and their output gate
    assert model.model.rotary_emb.inv_freq.numel() == 1  # a quarter of head_dim 8 rotated: one pair


def test_a_full_attention_layer_every_n_or_a_pattern():
    arch = flag_config(MEGATRON.replace("--linear-attention-freq 3", "--linear-attention-freq [1,0]+[1]*1"))
    assert arch.model.architecture["layer_types"] == ["linear_attention", "full_attention", "linear_attention"]
    arch = flag_config(MINDSPEED.replace("--full-attention-interval 3", "--full-attention-interval 2"))
    assert arch.model.architecture["layer_types"] == ["linear_attention", "full_attention", "linear_attention"]


@pytest.mark.parametrize("extra", ["--tensor-model-parallel-size 2", "--context-parallel-size 2"])
def test_tensor_and_context_parallel_ranks_fold_into_data_parallelism(extra):
    """The Gated DeltaNet layers split neither by heads nor by sequence here: those ranks become data-parallel ranks
    (the model and the global batch stay the script's), as for BLOOM; a YAML asking for them is refused."""
    cfg = flag_config(f"{MINDSPEED} {extra}", world=2)
    assert (cfg.parallel.tp_size, cfg.parallel.cp_size) == (1, 1)


@pytest.mark.parametrize("change,words", [
    (("--attention-output-gate", ""), "add --attention-output-gate"),
    (("--qk-layernorm", ""), "needs --qk-layernorm"),
    (("--moe-shared-expert-gate", ""), "add one gated shared expert"),
    (("--experimental-attention-variant gated_delta_net", "--experimental-attention-variant dsa"),
     "--experimental-attention-variant dsa: only Gated DeltaNet"),
])
def test_what_qwen3_next_cannot_compute_is_refused(change, words):
    assert words in refused(BASE + MEGATRON.replace(*change).split())


def test_the_engine_refuses_tensor_parallel_gated_deltanet():
    from transformers import AutoConfig, AutoModelForCausalLM

    from fsdp2_core.config import ConfigError
    from fsdp2_core.models.families.qwen3_next import apply_gdn_options
    cfg = flag_config(MINDSPEED)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg.model.architecture))
    cfg.parallel.tp_size = 2
    with pytest.raises(ConfigError, match="tp_size 2 / cp_size 1 with Gated DeltaNet layers"):
        apply_gdn_options(model, cfg)


def test_pai_megatron_patch_entry_point_trains_a_gpt_style_model():
    judged = judge_entry("examples/qwen3_next/pretrain_qwen3_next.py", ["--num-layers", "2"])
    assert (judged.translate_as, judged.problem) == ("pretrain_gpt.py", None)
    assert "Qwen3-Next" in judged.note


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    layouts = [(MINDSPEED, {}, PROBE), (f"{MINDSPEED} --expert-model-parallel-size 2", {}, None)]
    summaries = spawn_flag_runs(2, tmp_path_factory.mktemp("qwen3_next"), layouts)
    return summaries


@pytest.mark.dist
@pytest.mark.slow
def test_qwen3_next_trains_with_expert_parallelism_and_exports(runs):
    (dp, ep), (dp1, ep1) = runs
    losses = dp["losses"]
    assert len(losses) == 8 and losses == dp1["losses"]
    assert dp["extra_losses"][-1]["mtp_1 loss"] > 0
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses
    np.testing.assert_allclose(ep["losses"], losses, rtol=1e-4, atol=1e-5)
    hf = export_with_trained_logits(dp, PROBE)
    assert hf.config.model_type == "qwen3_next"
