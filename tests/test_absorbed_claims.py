"""Absorbed rows of flag_status.tsv whose reason promises what the engine does are claims: each names a test
that would fail if the engine stopped doing it. New reasons that promise engine behaviour must be added here.

CLAIMS maps a phrase of the reasons to the tests that keep it (`path::function`); the small checks that no
other test makes live below. ABSENT lists phrases that only say what the engine lacks."""
import csv
import os
import re
import sys
import types

import pytest
import torch
import torch.nn as nn

from fsdp2_core.config import ConfigError
from fsdp2_core.device import Device
from fsdp2_core.parallel import fsdp
from fsdp2_core.parallel.tensor_parallel import check_tp_divides
from fsdp2_core.testing.tiny import tiny_config
from fsdp2_core.train.metrics import MetricsSink
from fsdp2_core.train.optimizer import build_optimizer
from fsdp2_core.train.profiler import StepProfiler
from megatron_compat.flag_spec import DATA_DIR
from megatron_compat.translate import translate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = "tests/test_absorbed_claims.py"
PROMISE = re.compile(r"\b(the engine|FSDP2|DTensor|here)\b")

EQUIVALENCE = "tests/engine/test_equivalence.py::test_two_ranks_fsdp_tp_and_variants"
HSDP = "tests/engine/test_equivalence.py::test_four_ranks_fsdp_x_tp_and_hsdp"
MESH = ["tests/engine/test_mesh_and_tokens.py::test_unset_fsdp_size_shards_over_every_dp_rank",
        "tests/engine/test_mesh_and_tokens.py::test_explicit_fsdp_size_is_honoured_with_replicas"]
RESUME_EXACT = "tests/checkpoint/test_kill_and_signal.py::test_sigkill_after_a_checkpoint_resumes_exactly"
CP = ["tests/cp_ep/test_cp_ep_equivalence.py::test_cp2_equals_cp1",
      "tests/cp_ep/test_cp_ep_equivalence.py::test_four_ranks_ep2_cp2_and_tp2_cp2_equal_one_process"]
HF_LOAD = "tests/engine/test_load_pretrained.py::test_meta_device_loading_equals_from_pretrained"
META = ["tests/engine/test_equivalence.py::test_meta_device_init_equals_eager", HF_LOAD]
PRETRAIN = "tests/engine/test_end_to_end.py::test_pretrain_gpt_torchrun_two_ranks"
RESUME_SAME_LOSSES = "tests/checkpoint/test_resume.py::test_exit_interval_then_resume_gives_the_same_losses"
PADDING = "tests/lf/test_processing.py::test_collator_padding_labels_positions"
FP32_REDUCE = f"{HERE}::test_fsdp_reduces_in_fp32_and_follows_reshard_after_forward"

MTP_LAYOUT = "tests/arch/test_families_forward.py::test_mtp_export_is_deepseek_v3_layout"

DSA_TESTS = ["tests/arch/test_dsa.py::test_sparse_attention_equals_megatron_core",
             "tests/arch/test_dsa.py::test_indexer_loss_equals_megatron_cores_sparse_loss",
             "tests/arch/test_dsa.py::test_our_forward_equals_transformers_and_trains_the_indexer"]
CLAIMS = {
    "the FP8 recipes mapped here convert linear layers only": [
        "tests/kernels/test_fp8_flags.py::test_fp8_recipes_leave_the_routed_experts_in_the_training_dtype"],
    "the engine pads instruction batches on the right": [
        "tests/test_script_flags.py::test_tokenizer_padding_side_is_a_no_op_for_pretraining_and_refused_left_for_"
        "instruction_data",
        "tests/test_script_flags.py::test_left_padding_gives_a_rotary_model_the_loss_of_right_padding"],
    "the engine computes the same scores and selection": DSA_TESTS,
    "the engine computes the same loss with autograd": DSA_TESTS,
    "the engine computes the same attention with the top-k as a mask": DSA_TESTS,
    "the engine keeps every master weight in fp32 and casts it to the compute dtype": [FP32_REDUCE],
    "which the engine runs on PyTorch (an msrun script becomes a torchrun one)": [
        "tests/test_cli.py::test_corpus_script_converts_to_expected_config",
        "tests/test_shell_reader.py::test_render_round_trip_corpus"],
    "the engine drops over capacity (--moe-expert-capacity-factor) without padding": [
        "tests/arch/test_capacity.py::test_same_pairs_and_weights_as_megatron_core"],
    "which the engine always shares with them": [MTP_LAYOUT],
    "the engine's chunk_loss_size saves logits memory for every head": [
        "tests/arch/test_families_forward.py::test_chunked_loss_covers_the_mtp_heads"],
    "the engine's attention takes the two sizes as they are": [
        "tests/arch/test_families_forward.py::test_our_forward_equals_transformers"],
    "the engine keeps transformers' DeepSeek-V3 layout": [MTP_LAYOUT],
    "the engine keeps transformers' layout": [MTP_LAYOUT],
    "keep their own softmax precision": ["tests/kernels/test_kernels.py::test_selection_per_device"],
    "the one timeout of --distributed-timeout-minutes": [
        "tests/engine/test_process_group_timeout.py::test_a_silent_rank_fails_the_collective_after_the_timeout",
        "tests/engine/test_process_group_timeout.py::test_run_training_hands_the_configured_timeout_to_the_process_group"],
    "the engine picks kernels itself": ["tests/kernels/test_kernels.py::test_selection_per_device",
                                        "tests/kernels/test_kernels.py::test_plain_forward_switches_change_kernel_not_loss"],
    "the engine resumes from the latest checkpoint when relaunched": [RESUME_EXACT],
    "the engine resumes from --load when restarted": [
        RESUME_EXACT, "tests/test_translate.py::test_load_equal_to_save_resumes_latest_and_checkpoint_flags"],
    "writes only persistent checkpoints and resumes from the latest one": [
        RESUME_EXACT, "tests/checkpoint/test_layout.py::test_latest_skips_incomplete_for_the_previous_one"],
    "the engine has no pipeline stages": ["tests/test_translate.py::test_pipeline_parallel_folds_into_data_parallel",
                                          "tests/test_translate.py::test_pipeline_folding_keeps_the_global_batch"],
    "always writes torch DCP checkpoints in the iter_XXXXXXX layout": [
        "tests/checkpoint/test_layout.py::test_megatron_names_and_tracker",
        "tests/checkpoint/test_reshard.py::test_two_ranks_resume_a_four_rank_checkpoint"],
    "the engine uses torch FSDP2 and the math is unchanged": [EQUIVALENCE, HSDP],
    "DTensor TP": [EQUIVALENCE],
    "refuses such sizes at start": [f"{HERE}::test_tp_refuses_sizes_that_do_not_divide"],
    "needs only the vocabulary size and EOD id": [PRETRAIN],
    "training reads the already-preprocessed .bin/.idx data": [PRETRAIN],
    "Ulysses": CP,
    "recompute / recompute_modules config": ["tests/test_translate.py::test_recompute_variants", EQUIVALENCE],
    "the engine has no pipeline stages and recompute only trades memory": [EQUIVALENCE],
    "the engine builds its own device mesh": MESH,
    "torchrun environment": [PRETRAIN],
    "FSDP2 is ZeRO-3 already": MESH,
    "always fully shards (ZeRO-3)": MESH,
    "FSDP2 shards every weight across the data-parallel group": MESH,
    "FSDP2 shards optimizer state inherently": MESH,
    "FSDP2 keeps one sharded copy": MESH,
    "sharding group via fsdp_size": MESH + [HSDP],
    "FSDP2 sharding is set by the engine (fsdp_size)": MESH + [HSDP],
    "the engine is FSDP2 already": [EQUIVALENCE],
    "the engine wraps with FSDP2 from its canonical config": [EQUIVALENCE, FP32_REDUCE],
    "FSDP2 prefetches and all-gathers parameters ahead of use": [EQUIVALENCE],
    "FSDP2 schedules its own all-gathers": [EQUIVALENCE],
    "FSDP2 overlaps the gradient reduce-scatter with backward": [EQUIVALENCE],
    "same result, the engine picks one": [EQUIVALENCE],
    "reduce_dtype fp32": [FP32_REDUCE],
    "the engine reduces gradients in fp32 already": [FP32_REDUCE],
    "FSDP2 accumulates sharded gradients in fp32": [FP32_REDUCE],
    "reshard_after_forward config field": [FP32_REDUCE],
    "FSDP2 keeps fp32 master weights and the HF RMSNorm computes in fp32": [
        FP32_REDUCE, f"{HERE}::test_hf_norms_compute_in_fp32"],
    "the engine computes the cross-entropy in fp32": [f"{HERE}::test_the_loss_is_computed_in_fp32"],
    "the HF RMSNorm/LayerNorm of the supported families already computes in fp32": [
        f"{HERE}::test_hf_norms_compute_in_fp32"],
    "the engine's checkpoints hold the fp32 parameters and it always loads them": [RESUME_EXACT],
    "restores the LR/WD scheduler state": [RESUME_SAME_LOSSES],
    "restores the scheduler state": [RESUME_SAME_LOSSES],
    "refuses to resume from a --load directory without one": [
        "tests/checkpoint/test_resume.py::test_latest_with_only_incomplete_checkpoints_is_an_error"],
    "refuses a Hugging Face checkpoint that lacks a parameter": [f"{HERE}::test_hf_weights_load_strictly"],
    "handles the signal in the training process": [
        "tests/checkpoint/test_kill_and_signal.py::test_sigterm_saves_and_exits_zero"],
    "picks the backend for its device itself": ["tests/kernels/test_npu_path.py::test_device_and_backend_selection"],
    "builds on the meta device": META,
    "always builds the model on the meta device": META,
    "loads HF weights": [HF_LOAD],
    "reads HF weights natively": [HF_LOAD],
    "takes the architecture from the HF model config": [HF_LOAD],
    "builds the HF model for the family": ["tests/test_translate.py::test_architecture_families_build_real_models"],
    "routes dropless": ["tests/cp_ep/test_cp_ep_units.py::test_our_forward_equals_transformers"],
    "routing softmax in fp32": [f"{HERE}::test_hf_routers_take_the_softmax_in_fp32",
                                "tests/cp_ep/test_cp_ep_units.py::test_our_forward_equals_transformers"],
    "the engine runs peft's LoRA layers": [
        "tests/posttrain/test_posttrain_train.py::test_apply_lora_freezes_all_but_adapters"],
    "peft and the engine need no such hooks": [
        "tests/posttrain/test_posttrain_train.py::test_lora_example_trains_only_adapters_under_fsdp"],
    "its Hugging Face export the adapter alone": [
        "tests/posttrain/test_posttrain_train.py::test_lora_example_trains_only_adapters_under_fsdp"],
    "the engine uses torch AdamW": [f"{HERE}::test_optimizer_is_torch_adamw"],
    "the engine keeps the PyTorch default": [f"{HERE}::test_no_reduced_precision_reduction_switch"],
    "evaluates with the training batch sizes": [
        "tests/data/test_data_gpt_order.py::test_sample_counts_as_megatron_training_loop"],
    "evaluates every --eval-interval from the start": [
        "tests/engine/test_loop.py::test_evaluation_lines_and_metrics_file"],
    "chunk_loss_size config field": ["tests/engine/test_equivalence.py::test_chunked_loss_equals_plain"],
    "records shapes when --profile-record-shapes is given": [f"{HERE}::test_profiler_follows_the_profiling_flags"],
    "records stacks when --profile-with-stack is given": [f"{HERE}::test_profiler_follows_the_profiling_flags"],
    "--profile already uses the PyTorch profiler": [f"{HERE}::test_profiler_follows_the_profiling_flags",
                                                    "tests/engine/test_loop.py::test_profiler_trace_written"],
    "--wandb-project (mapped) already does": [f"{HERE}::test_wandb_project_turns_wandb_on_with_the_default_entity"],
    "only its position from the checkpoint": [
        "tests/engine/test_schedule_on_resume.py::test_resumed_schedule_keeps_the_position_and_takes_the_new_settings"],
    "pads each micro-batch to a multiple of 8": [PADDING],
    "the engine always does so, and padding never enters the loss": [PADDING],
    "padded only to its longest sample": [PADDING],
    "which the new launch script exports from this value": [
        "tests/test_shell_reader.py::test_a_per_rank_script_started_outside_stays_per_rank_and_meets_at_its_dist_url"],
    "the entry point reads the rank from the launcher's environment itself": [
        "tests/test_rank_env.py::test_each_scheme"],
    "the entry point reads it from the launcher's environment itself": ["tests/test_rank_env.py::test_each_scheme"],
    "the engine writes the HF model to <save>/hf_model/": [
        "tests/checkpoint/test_hf_export.py::test_from_pretrained_gives_the_trained_logits"],
    "the engine exports only the final model anyway": [
        "tests/checkpoint/test_hf_export.py::test_from_pretrained_gives_the_trained_logits"],
    "derives the mask from the data itself": [
        "tests/lf/test_processing.py::test_neat_collator_boundaries_without_a_mask_and_no_cross_sample_labels",
        "tests/engine/test_packed_attention.py::test_additive_mask_from_positions_equals_the_old_mask",
        "tests/lf/test_processing.py::test_neat_packed_loss_equals_samples_one_by_one"],
}
# Statements of what the engine lacks or never does: nothing it does to keep.
ABSENT = ("has no Muon implementation", "has no Lion implementation", "keeps no replica", "keeps no EMA copy",
          "the engine converts nothing", "writes no such dumps", "never reads it from there", "scales no loss",
          "which is how the engine always runs", "which is how the engine always reads data")


def _absorbed_reasons():
    with open(os.path.join(DATA_DIR, "flag_status.tsv"), encoding="utf-8", newline="") as fh:
        return [(row["flag"], row["reason"]) for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                if row["status"] == "absorbed"]


def test_every_promise_names_its_test():
    unchecked = [f"{flag}: {reason}" for flag, reason in _absorbed_reasons()
                 if PROMISE.search(reason) and not any(p in reason for p in (*CLAIMS, *ABSENT))]
    assert not unchecked, ("absorbed reasons that promise engine behaviour with no test in CLAIMS:\n"
                           + "\n".join(unchecked))


def test_every_named_test_exists():
    missing = []
    for node in {node for nodes in CLAIMS.values() for node in nodes}:
        path, name = node.split("::")
        with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
            if f"def {name}(" not in fh.read():
                missing.append(node)
    assert not missing, missing
    reasons = " ".join(reason for _, reason in _absorbed_reasons())
    unused = [phrase for phrase in CLAIMS if phrase not in reasons]
    assert not unused, f"claims no reason makes any more; remove them: {unused}"


# --- checks no other test makes ---

def _megatron_config(tmp_path, *extra):
    argv = (f"--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
            f"--micro-batch-size 2 --train-iters 10 --lr 1e-3 --save {tmp_path} --mock-data --vocab-size 100 "
            "--tokenizer-type NullTokenizer --bf16").split() + list(extra)
    result = translate(argv, world_size=2)
    assert result.ok, result.problems()
    return result.config


def test_fsdp_reduces_in_fp32_and_follows_reshard_after_forward(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(fsdp, "fully_shard", lambda module, **kw: calls.append(kw))
    monkeypatch.setattr(fsdp, "_set_prefetch", lambda *a: None)  # plain Linears have no FSDP prefetch to set
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    cfg = _megatron_config(tmp_path)
    cfg.parallel.fsdp_modules = ["0", "1"]
    mesh = types.SimpleNamespace(shape=(2,))
    fsdp.apply_fsdp(model, mesh, cfg.parallel)
    assert len(calls) == 3 and all(c["reshard_after_forward"] is True for c in calls)
    policy = calls[0]["mp_policy"]
    # --bf16, and Megatron's fp32 gradient reduction
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # what FSDP2 shards: fp32 master weights
    calls.clear()
    cfg.parallel.reshard_after_forward = False
    fsdp.apply_fsdp(model, mesh, cfg.parallel)
    assert all(c["reshard_after_forward"] is False for c in calls)


def test_tp_refuses_sizes_that_do_not_divide():
    model = types.SimpleNamespace(config=types.SimpleNamespace(num_attention_heads=6, num_key_value_heads=2,
                                                               intermediate_size=64))
    with pytest.raises(ConfigError, match="num_attention_heads"):
        check_tp_divides(model, 4)


def test_the_loss_is_computed_in_fp32():
    """bf16 logits give the cross-entropy of their fp32 values, not of a bf16 log-softmax."""
    from fsdp2_core.train.loss import _token_losses
    torch.manual_seed(0)
    head = nn.Linear(16, 512, bias=False).to(torch.bfloat16)
    hidden = torch.randn(2, 8, 16).to(torch.bfloat16) * 4
    labels = torch.randint(0, 512, (2, 8))
    losses = _token_losses(head, hidden, labels)
    want = torch.nn.functional.cross_entropy(head(hidden).float().reshape(-1, 512), labels.reshape(-1),
                                             reduction="none").view_as(labels)
    assert losses.dtype == torch.float32 and torch.equal(losses, want)


def test_hf_norms_compute_in_fp32():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    norm = LlamaRMSNorm(64, eps=1e-6).to(torch.bfloat16)
    x = (torch.randn(8, 64) * 30).to(torch.bfloat16)
    x32 = x.float()
    want = norm.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).to(torch.bfloat16)
    assert torch.equal(norm(x), want)


@pytest.mark.parametrize("model_type", ["qwen3_moe", "mixtral"])
def test_hf_routers_take_the_softmax_in_fp32(model_type, monkeypatch):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.for_model(model_type=model_type, hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
                               num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, vocab_size=64,
                               num_experts=4, num_local_experts=4, num_experts_per_tok=2)
    gate = AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16).model.layers[0].mlp.gate
    seen, softmax = [], torch.nn.functional.softmax

    def recording(x, *args, **kwargs):
        out = softmax(x, *args, **kwargs)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.functional, "softmax", recording)
    gate(torch.randn(5, 32, dtype=torch.bfloat16))
    assert seen == [torch.float32]


def test_hf_weights_load_strictly(tmp_path):
    from safetensors.torch import save_file

    from fsdp2_core.models.build import load_weights
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    full = {name: p.detach().clone() for name, p in model.named_parameters()}
    save_file({k: v for k, v in full.items() if k != "1.bias"}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match="lacks 1 parameters"):
        load_weights(model, str(tmp_path), seed=0)
    save_file({**full, "1.weight": torch.zeros(3, 4)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ConfigError, match=r"tensor 1.weight has shape \(3, 4\)"):
        load_weights(model, str(tmp_path), seed=0)


def test_optimizer_is_torch_adamw(tmp_path):
    optimizer = build_optimizer(nn.Linear(4, 4), tiny_config(str(tmp_path)).training)
    assert type(optimizer) is torch.optim.AdamW


def test_no_reduced_precision_reduction_switch():
    """The engine leaves cuBLAS's reduced-precision reduction at PyTorch's default: nothing sets it."""
    for folder, _, files in os.walk(os.path.join(ROOT, "fsdp2_core")):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    assert "reduced_precision_reduction" not in fh.read(), os.path.join(folder, name)


class _FakeProfilerModule:
    ProfilerActivity = types.SimpleNamespace(CPU="cpu", CUDA="cuda")

    def __init__(self):
        self.kwargs = None

    def profile(self, **kwargs):
        self.kwargs = kwargs
        return kwargs


def test_profiler_follows_the_profiling_flags(tmp_path):
    assert Device("cpu", 0, "gloo").profiler_module() is torch.profiler
    fake = _FakeProfilerModule()
    device = types.SimpleNamespace(type="cpu", profiler_module=lambda: fake)
    cfg = _megatron_config(tmp_path, "--profile", "--profile-record-shapes", "--profile-with-stack")
    StepProfiler(cfg.profiling, 0, device)._make()
    assert fake.kwargs["record_shapes"] is True and fake.kwargs["with_stack"] is True
    StepProfiler(_megatron_config(tmp_path, "--profile").profiling, 0, device)._make()
    assert fake.kwargs["record_shapes"] is False and fake.kwargs["with_stack"] is False


def test_wandb_project_turns_wandb_on_with_the_default_entity(tmp_path, monkeypatch):
    calls = []
    run = types.SimpleNamespace(log=lambda *a, **k: None, finish=lambda: None)
    fake = types.SimpleNamespace(init=lambda **kw: calls.append(kw) or run)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = _megatron_config(tmp_path, "--wandb-project", "proj", "--wandb-exp-name", "run1")
    MetricsSink(cfg.training, rank=0).close()
    assert len(calls) == 1 and calls[0]["project"] == "proj" and calls[0]["name"] == "run1"
    assert "entity" not in calls[0]  # wandb then takes WANDB_ENTITY, or the API key's default entity
