"""The tensor-parallel plan per family, the vocabulary-parallel cross entropy against the plain one,
and no rank ever creating the full [tokens, vocabulary] logits under TP 2."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleOutput,
    RowwiseParallel,
    SequenceParallel,
)

from fsdp2_core.config import ConfigError
from fsdp2_core.models.tp_layout import DECODER, tp_layout_for
from fsdp2_core.parallel.loss_parallel import VocabShard, vocab_parallel_cross_entropy
from fsdp2_core.parallel.tensor_parallel import PlanBuilder, tensor_parallel_plan
from fsdp2_core.parallel.tp_styles import (
    ColwiseConv1D,
    FusedQKVConv1D,
    GatherSequence,
    LocalWidths,
    RowwiseConv1D,
    ShardParams,
    VocabParallelEmbedding,
    WholeOnEveryRank,
    head_columns,
)
from fsdp2_core.testing.spawn import spawn, spawn_runs
from fsdp2_core.testing.tiny import LLAMA
from tests.cp_ep.cp_ep_helpers import GPT_OSS, QWEN3_MOE

COLWISE = ["*.q_proj", "*.k_proj", "*.v_proj", "*.gate_proj", "*.up_proj"]
ROWWISE = ["*.o_proj", "*.down_proj"]
GPT2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 128, "n_positions": 64}
QWEN2_MOE = {"model_type": "qwen2_moe", "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
             "shared_expert_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2, "vocab_size": 128}


def meta_model(arch: dict):
    from transformers import AutoConfig, AutoModelForCausalLM
    arch = dict(arch)
    config = AutoConfig.for_model(arch.pop("model_type"), **arch)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def plan_of(arch: dict, sp: bool = True, **model_attrs) -> dict:
    model = meta_model(arch)
    for key, value in model_attrs.items():
        setattr(model, key, value)
    steps = PlanBuilder(model, tp_layout_for(model), COLWISE, ROWWISE, sp).plan()
    plan = {}
    for name, style in steps:
        plan.setdefault(name, []).append(style)
    return plan


def only(plan, name, cls):
    styles = plan[name]
    assert len(styles) == 1 and isinstance(styles[0], cls), (name, styles)
    return styles[0]


# ---------------------------------------------------------------- the plan, per family

def test_llama_plan_shards_the_sequence_between_tensor_parallel_blocks():
    plan = plan_of(LLAMA)
    assert only(plan, "model.embed_tokens", VocabParallelEmbedding).output_layout == Shard(1)
    for layer in ("model.layers.0", "model.layers.1"):
        for norm in ("input_layernorm", "post_attention_layernorm"):
            assert only(plan, f"{layer}.{norm}", SequenceParallel).sequence_sharding == (Shard(1),)
        only(plan, f"{layer}.self_attn", GatherSequence)
        only(plan, f"{layer}.mlp", GatherSequence)
        for proj in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"):
            only(plan, f"{layer}.{proj}", ColwiseParallel)
        for proj in ("self_attn.o_proj", "mlp.down_proj"):  # reduce-scatter back to the sequence slice
            style = only(plan, f"{layer}.{proj}", RowwiseParallel)
            assert style.output_layouts == (Shard(1),) and not style.use_local_output
    only(plan, "model.norm", SequenceParallel)
    assert "lm_head" not in plan  # the output layer is split by apply_tensor_parallel itself, never by the patterns


def test_without_sequence_parallel_norms_and_residuals_stay_whole():
    plan = plan_of(LLAMA, sp=False)
    styles = [s for ss in plan.values() for s in ss]
    assert not any(isinstance(s, (SequenceParallel, GatherSequence, WholeOnEveryRank)) for s in styles)
    embed = only(plan, "model.embed_tokens", VocabParallelEmbedding)  # still split over the vocabulary
    assert embed.output_layout == Replicate() and embed.use_local_output
    assert only(plan, "model.layers.0.self_attn.o_proj", RowwiseParallel).output_layouts == (Replicate(),)


def test_moe_blocks_run_whole_dense_layers_and_shared_experts_split():
    plan = plan_of(dict(QWEN3_MOE, mlp_only_layers=[0]))
    only(plan, "model.layers.0.mlp", GatherSequence)            # dense MLP: tensor-parallel
    only(plan, "model.layers.1.mlp", WholeOnEveryRank)          # routed experts: whole on every rank
    assert not any(name.startswith("model.layers.1.mlp.") for name in plan)
    for norm in ("q_norm", "k_norm"):  # per-head norms see this rank's heads (dim 2 of [b, s, heads, d])
        style = only(plan, f"model.layers.1.self_attn.{norm}", SequenceParallel)
        assert style.sequence_sharding == (Shard(2),) and style.use_local_output
    shared = plan_of(QWEN2_MOE)
    only(shared, "model.layers.0.mlp", WholeOnEveryRank)
    only(shared, "model.layers.0.mlp.shared_expert.gate_proj", ColwiseParallel)
    down = only(shared, "model.layers.0.mlp.shared_expert.down_proj", RowwiseParallel)
    assert down.output_layouts == (Replicate(),) and down.use_local_output  # summed whole inside the MoE block


def test_gpt2_plan_splits_its_conv1d_layers_and_fused_qkv():
    plan = plan_of(GPT2)
    only(plan, "transformer.wte", VocabParallelEmbedding)
    pos = only(plan, "transformer.wpe", PrepareModuleOutput)
    assert pos.desired_output_layouts == (Shard(1),)
    only(plan, "transformer.h.0.ln_1", SequenceParallel)
    attn = plan["transformer.h.0.attn"]
    assert {type(s) for s in attn} == {GatherSequence, LocalWidths}
    only(plan, "transformer.h.0.attn.c_attn", FusedQKVConv1D)
    only(plan, "transformer.h.0.mlp.c_fc", ColwiseConv1D)
    for name in ("transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_proj"):
        style = only(plan, name, RowwiseConv1D)
        assert style.output_layout == Shard(1) and not style.use_local_output
    only(plan, "transformer.ln_f", SequenceParallel)


def test_gpt_oss_sinks_split_like_heads_only_with_our_attention():
    with pytest.raises(ConfigError, match="set model_id"):
        plan_of(GPT_OSS)
    plan = plan_of(GPT_OSS, _fsdp2_cp=object())
    sinks = [s for s in plan["model.layers.0.self_attn"] if isinstance(s, ShardParams)]
    assert len(sinks) == 1 and sinks[0].names == ("sinks",)


DEEPSEEK_V3 = {"model_type": "deepseek_v3", "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": 4,
               "num_experts_per_tok": 2, "first_k_dense_replace": 1, "q_lora_rank": 16, "kv_lora_rank": 16,
               "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8, "vocab_size": 128, "n_group": 1,
               "topk_group": 1}


class Marker(ParallelStyle):
    def _apply(self, module, mesh):
        return module


def test_a_family_extends_the_plan_through_its_layout_row():
    """MLA (DeepSeek-V3): low-rank projections the roles cannot place are refused until the family's row places them
    (the generic row refuses; a row of this test, and the deepseek_v3 row of models/tp_layout.py, place them)."""
    model = meta_model(DEEPSEEK_V3)
    with pytest.raises(ConfigError, match="self_attn.q_a_proj.weight inside the tensor-parallel block .*extra_plan"):
        tensor_parallel_plan(model, None, COLWISE, ROWWISE, True, layout=DECODER)
    own = dict(tensor_parallel_plan(model, None, COLWISE, ROWWISE, True))
    assert isinstance(own["model.layers.0.self_attn.kv_b_proj"], ColwiseParallel)
    assert type(own["model.layers.1.self_attn.q_a_layernorm"]).__name__ == "LocalInput"
    low_rank = ("q_a_proj", "q_a_layernorm", "kv_a_proj_with_mqa", "kv_a_layernorm")

    def extra(model, mesh, sp):
        return {f"model.layers.{i}.self_attn.{m}": Marker() for i in range(2) for m in low_rank}

    row = dataclasses.replace(DECODER, colwise=("*.q_b_proj", "*.kv_b_proj"), extra_plan=extra)
    steps = dict(tensor_parallel_plan(model, None, COLWISE, ROWWISE, True, layout=row))
    assert isinstance(steps["model.layers.0.self_attn.q_b_proj"], ColwiseParallel)
    assert isinstance(steps["model.layers.1.self_attn.kv_a_layernorm"], Marker)
    assert isinstance(steps["model.layers.1.mlp.shared_experts.down_proj"], RowwiseParallel)


def test_fused_qkv_columns_are_this_ranks_heads_of_q_k_and_v():
    assert head_columns(12, 3, 0, 2).tolist() == [0, 1, 4, 5, 8, 9]
    assert head_columns(12, 3, 1, 2).tolist() == [2, 3, 6, 7, 10, 11]


def test_plan_errors_name_the_module_and_the_fix():
    model = meta_model(LLAMA)
    with pytest.raises(ConfigError, match="model.layers.0.self_attn.o_proj matches both"):
        PlanBuilder(model, tp_layout_for(model), COLWISE + ["*.o_proj"], ROWWISE, True)
    model.model.extra = torch.nn.Linear(2, 2)  # weights outside the layers the plan does not place
    with pytest.raises(ConfigError, match="model.extra .*sequence_parallel false"):
        PlanBuilder(model, tp_layout_for(model), COLWISE, ROWWISE, True).plan()
    PlanBuilder(model, tp_layout_for(model), COLWISE, ROWWISE, False).plan()  # whole everywhere: fine


def test_saved_activations_count_each_storage_once_under_its_module():
    """What bench/bench_tp_memory.py counts: bytes saved for backward, by the innermost categorised module."""
    from fsdp2_core.testing.tensors import SavedActivations
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    x = torch.randn(5, 8, requires_grad=True)
    saved = SavedActivations(model, lambda name, m: {"1": "norm", "2": "out"}.get(name))
    with saved:
        h = model(x)
        with saved.section("loss"):
            loss = h.square().sum()  # saves h itself
    loss.backward()
    floats = 4
    assert saved.bytes["out"] == 5 * 16 * floats                 # the output layer's input (the norm's output)
    assert saved.bytes["norm"] >= 5 * 16 * floats                # the norm's input, plus its mean / rstd
    assert saved.bytes["loss"] == 5 * 4 * floats
    assert saved.bytes["other"] == 5 * 8 * floats                # the first Linear's input (uncategorised)


# ---------------------------------------------------------------- the vocabulary-parallel loss

CE_CASES = [(16, 0.0), (13, 0.1)]  # 13: uneven slices (7 + 6), as DTensor cuts them; 0.1: the z-loss


def _cross_entropy_on_rank(cases):
    dist.init_process_group("gloo")
    rank, tp = dist.get_rank(), dist.get_world_size()
    out = []
    for vocab, z_loss in cases:
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(3, 5, vocab, generator=g) * 4
        target = torch.randint(0, vocab, (3, 5), generator=g)
        target[0, :2] = -100  # F.cross_entropy's ignore_index
        weight = torch.rand(3, 5, generator=g)
        full = logits.clone().requires_grad_()
        ref = F.cross_entropy(full.view(-1, vocab), target.view(-1), reduction="none").view(3, 5)
        ref = ref + z_loss * torch.logsumexp(full, dim=-1).square()  # train/loss.py's z-loss, on every token
        (ref * weight).sum().backward()
        shard = VocabShard(None, vocab, rank, tp)
        width = min(-(-vocab // tp), vocab - shard.start)
        local = logits[..., shard.start:shard.start + width].clone().requires_grad_()
        got = vocab_parallel_cross_entropy(local, target, shard, z_loss)
        (got * weight).sum().backward()
        pieces = (ref.detach(), got.detach(), full.grad[..., shard.start:shard.start + width], local.grad)
        out.append(tuple(t.numpy() for t in pieces))  # numpy: tensors would travel through shared memory
    dist.destroy_process_group()
    return out


@pytest.mark.dist
def test_vocab_parallel_cross_entropy_equals_plain_loss_and_gradient():
    for per_case in spawn(2, _cross_entropy_on_rank, CE_CASES):
        for (vocab, z_loss), (ref, got, ref_grad, got_grad) in zip(CE_CASES, per_case):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(got_grad, ref_grad, rtol=1e-5, atol=1e-7)
            assert (float(got[0, 0]) == 0.0) == (z_loss == 0.0)  # ignored target: no cross entropy, z-loss stays


# ---------------------------------------------------------------- no rank holds the full logits

# 31 tokens: differs from every other width of the tiny model, and does not divide by tp (cut unevenly)
VOCAB, SEQ = 256, 31


def _logits_shapes(run):
    """One micro-batch forward and backward under TensorLog: the loss, and the logits-shaped tensors seen."""
    from fsdp2_core.device import init_distributed
    from fsdp2_core.parallel import build_mesh
    from fsdp2_core.testing.tensors import TensorLog
    from fsdp2_core.testing.tiny import tiny_config
    from fsdp2_core.train.entry import build_parallel_model
    tmp, over = run
    cfg = tiny_config(tmp, architecture=dict(LLAMA, vocab_size=VOCAB), **over)
    device = init_distributed()
    world = dist.get_world_size()
    model = build_parallel_model(cfg, device, build_mesh(cfg.parallel, world, device.type))
    g = torch.Generator().manual_seed(0)
    text = torch.randint(0, VOCAB, (1, SEQ + 1), generator=g)
    with TensorLog() as log:
        total, count = model.lm_loss(text[:, :-1], text[:, 1:], torch.ones(1, SEQ),
                                     position_ids=torch.arange(SEQ)[None], chunk_size=cfg.training.chunk_loss_size)
        (total / count).backward()
    out = {"loss": (total / count).item(), "full": log.with_last_dim(VOCAB, SEQ),
           "half": log.with_last_dim(VOCAB // 2, SEQ), "half_chunk": log.with_last_dim(VOCAB // 2, 8)}
    dist.destroy_process_group()
    return out


@pytest.mark.dist
def test_no_rank_creates_the_full_logits_under_tp2_uneven_sequence_included(tmp_path):
    runs = [(str(tmp_path / "fsdp"), {}), (str(tmp_path / "tp"), {"tp_size": 2}),
            (str(tmp_path / "tpc"), {"tp_size": 2, "chunk_loss_size": 8})]
    for one, tp, chunked in spawn_runs(2, _logits_shapes, runs):
        assert one["full"], "without TP the check sees the [tokens, vocabulary] logits, so it could fail"
        assert tp["full"] == [] and tp["half"], tp          # [tokens, V/2] on each rank, never [tokens, V]
        assert chunked["full"] == [] and chunked["half"] == [] and chunked["half_chunk"]
        assert abs(tp["loss"] - one["loss"]) < 1e-5 * one["loss"]
        assert abs(chunked["loss"] - one["loss"]) < 1e-5 * one["loss"]
