"""Fused-kernel switches: each selects a real kernel where one exists (recorded in select.RAN) and never
changes the result. CPU runs the reference; a stand-in torch_npu and a faked CUDA test the selection."""
import sys

import pytest
import torch
from transformers import (  # imported before any stand-in torch_npu
    AutoConfig,
    AutoModelForCausalLM,
)

from fsdp2_core.config import build_config
from fsdp2_core.kernels import apply_kernels, restore_rotary, select
from fsdp2_core.kernels.attention import attention_reference, causal_attention
from fsdp2_core.kernels.grouped_gemm import grouped_gemm, grouped_gemm_reference
from fsdp2_core.kernels.rmsnorm import rmsnorm, rmsnorm_reference
from fsdp2_core.kernels.rotary import rotary, rotary_reference
from tests.kernels.fake_npu import make_fake_torch_npu

LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64,
         "tie_word_embeddings": False}
QWEN3_MOE = {"model_type": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
             "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": True, "vocab_size": 64,
             "max_position_embeddings": 64, "tie_word_embeddings": False}
SWITCHES = ("use_fused_rmsnorm", "use_fused_rotary_pos_emb", "use_flash_attn", "moe_grouped_gemm")


@pytest.fixture(autouse=True)
def clean():
    select.reset()
    yield
    restore_rotary()
    select.reset()


@pytest.fixture
def fake_npu(monkeypatch):
    mod = make_fake_torch_npu()
    monkeypatch.setitem(sys.modules, "torch_npu", mod)
    return mod


def _cfg(arch, **over):
    return build_config({"architecture": dict(arch), "output_dir": "/tmp/unused", "stage": "pt",
                         "cutoff_len": arch["max_position_embeddings"],  # the 2048 default exceeds the tiny table
                         "train_from_scratch": True, **over})


def _model(arch, seed=0, attn="sdpa"):
    config = AutoConfig.for_model(**arch)
    config._attn_implementation = attn
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def _loss(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (2, 16), generator=g)
    return model(input_ids=ids, labels=ids).loss


# ---------------------------------------------------------------- selection (pure)

def test_selection_per_device(fake_npu, monkeypatch):
    assert {k: select.choose(k, "cpu") for k in select.KERNELS} == dict.fromkeys(select.KERNELS, "reference")
    assert [select.choose(k, "npu") for k in select.KERNELS] == [
        "npu_rms_norm", "npu_rotary_mul", "npu_fusion_attention", "npu_grouped_matmul"]
    monkeypatch.setattr(select, "cuda_capability", lambda: (9, 0))
    monkeypatch.setattr(select, "flash_attn_available", lambda: False)
    bf16 = torch.bfloat16
    assert [select.choose(k, "cuda", bf16) for k in select.KERNELS] == [
        "torch_rms_norm", "reference", "sdpa_flash", "torch_grouped_mm"]
    assert select.choose("attention", "cuda", torch.float32) == "reference"  # flash needs fp16 / bf16
    monkeypatch.setattr(select, "flash_attn_available", lambda: True)
    assert select.choose("attention", "cuda", bf16) == "flash_attn"
    monkeypatch.setattr(select, "cuda_capability", lambda: (8, 0))
    assert select.choose("grouped_gemm", "cuda", bf16) == "reference"  # torch._grouped_mm needs sm90+
    monkeypatch.delitem(sys.modules, "torch_npu")
    monkeypatch.setattr(select.importlib.util, "find_spec", lambda name: None)
    assert select.choose("rmsnorm", "npu") == "reference"  # no torch_npu installed


# ---------------------------------------------------------------- each kernel against its reference

def _inputs():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 10, 8, generator=g)
    cos, sin = torch.randn(1, 1, 10, 8, generator=g), torch.randn(1, 1, 10, 8, generator=g)
    return g, x, cos, sin


def test_kernels_cpu_reference_and_npu_standin(fake_npu):
    g, x, cos, sin = _inputs()
    w = torch.randn(8, generator=g)
    q, k, v = x, torch.randn(2, 2, 10, 8, generator=g), torch.randn(2, 2, 10, 8, generator=g)
    xs, ws, counts = torch.randn(9, 8, generator=g), torch.randn(3, 8, 5, generator=g), torch.tensor([4, 0, 5])
    loop = torch.cat([xs[:4] @ ws[0], xs[4:] @ ws[2]])
    results = {}
    for device in ("cpu", "npu"):
        with select.simulate_device(device):
            results[device] = (rmsnorm(x, w, 1e-6), rotary(x, cos, sin), causal_attention(q, k, v, 0.3),
                               grouped_gemm(xs, ws, counts))
    expected = (rmsnorm_reference(x, w, 1e-6), rotary_reference(x, cos, sin), attention_reference(q, k, v, 0.3), loop)
    for device, got in results.items():
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert set(fake_npu.calls) == {"npu_rms_norm", "npu_rotary_mul", "npu_fusion_attention", "npu_grouped_matmul"}
    for kernel in select.KERNELS:
        assert select.ran(kernel) == {"reference": 1, select.choose(kernel, "npu"): 1}, kernel
    # bf16 within the dtype's tolerance
    xb = x.bfloat16()
    with select.simulate_device("npu"):
        torch.testing.assert_close(rmsnorm(xb, w.bfloat16(), 1e-6).float(), rmsnorm_reference(x, w, 1e-6),
                                   rtol=2e-2, atol=2e-2)


def test_npu_grouped_matmul_backward(fake_npu):
    g = torch.Generator().manual_seed(5)
    counts = torch.tensor([2, 0, 5, 3])
    x = torch.randn(10, 6, generator=g, requires_grad=True)
    w = torch.randn(4, 6, 3, generator=g, requires_grad=True)
    with select.simulate_device("npu"):
        grouped_gemm(x, w, counts).square().sum().backward()
    gx, gw = x.grad, w.grad
    x.grad, w.grad = None, None
    grouped_gemm_reference(x, w, counts).square().sum().backward()
    torch.testing.assert_close(gx, x.grad)
    torch.testing.assert_close(gw, w.grad)
    assert fake_npu.calls["npu_grouped_matmul"] == 2  # forward and grad_x


def test_grouped_gemm_reference_equals_per_expert_loop():
    g = torch.Generator().manual_seed(3)
    counts = torch.tensor([3, 0, 7, 1])
    x, w = torch.randn(11, 6, generator=g), torch.randn(4, 6, 5, generator=g)
    loop, start = [], 0
    for e, c in enumerate(counts.tolist()):
        loop.append(x[start:start + c] @ w[e])
        start += c
    torch.testing.assert_close(grouped_gemm_reference(x, w, counts), torch.cat(loop))


# ---------------------------------------------------------------- switches on whole models

@pytest.mark.parametrize("device", ["cpu", "npu"])
def test_plain_forward_switches_change_kernel_not_loss(fake_npu, device):
    """No model_id: the plain transformers Llama forward with every switch gives the same loss and gradients."""
    ref = _model(LLAMA)
    ref_loss = _loss(ref)
    ref_loss.backward()
    fused = _model(LLAMA)
    applied = apply_kernels(fused, _cfg(LLAMA, **dict.fromkeys(SWITCHES, True)))
    assert applied == ["use_fused_rmsnorm", "use_fused_rotary_pos_emb", "use_flash_attn"]  # dense: no experts
    with select.simulate_device(device):
        loss = _loss(fused)
        loss.backward()
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for (name, p), p_ref in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6, msg=name)
    layers = LLAMA["num_hidden_layers"]
    impl = {k: select.choose(k, device) for k in select.KERNELS}
    assert select.ran("rmsnorm") == {impl["rmsnorm"]: 2 * layers + 1}
    assert select.ran("rotary") == {impl["rotary"]: 2 * layers}  # q and k per layer
    assert select.ran("attention") == {impl["attention"]: layers}
    if device == "npu":
        assert fake_npu.calls["npu_fusion_attention"] == layers


def test_one_notice_per_kernel_on_cpu(caplog):
    x, w = torch.randn(3, 8), torch.ones(8)
    with caplog.at_level("WARNING", logger="fsdp2_core.kernels.select"):
        select._noticed.clear()
        for _ in range(3):
            rmsnorm(x, w, 1e-6)
    notices = [r for r in caplog.records if "fused rmsnorm requested" in r.getMessage()]
    assert len(notices) == 1 and select.ran("rmsnorm") == {"reference": 3}


def test_switches_off_leave_model_alone():
    m = _model(LLAMA)
    assert apply_kernels(m, _cfg(LLAMA)) == []
    _loss(m)
    assert not select.RAN


@pytest.mark.parametrize("model_id", [None, "qwen3_moe"])
def test_moe_grouped_gemm_with_and_without_model_id(fake_npu, model_id):
    from fsdp2_core.models.registry import install_family
    ref = _model(QWEN3_MOE)
    ref_loss = _loss(ref)
    over = dict.fromkeys(SWITCHES, True)
    if model_id:
        over["model_id"] = model_id
    cfg = _cfg(QWEN3_MOE, **over)
    fused = _model(QWEN3_MOE)
    install_family(fused, cfg)  # what build_model does (no-op without model_id)
    applied = apply_kernels(fused, cfg)
    assert applied == list(SWITCHES)
    with select.simulate_device("npu"):
        loss = _loss(fused)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    layers = QWEN3_MOE["num_hidden_layers"]
    assert select.ran("grouped_gemm") == {"npu_grouped_matmul": 2 * layers}
    assert select.ran("attention") == {"npu_fusion_attention": layers}
    assert select.ran("rmsnorm")["npu_rms_norm"] >= 2 * layers + 1


# ---------------------------------------------------------------- through run_training (build_parallel_model)

@pytest.mark.slow
@pytest.mark.dist
def test_switches_through_training_entry(tmp_path):
    """2 gloo ranks under FSDP: every switch on gives the losses of every switch off, plain forward and model_id."""
    from tests.kernels.train_helpers import train_runs
    on = dict.fromkeys(SWITCHES, True)
    moe = {"architecture": dict(QWEN3_MOE, vocab_size=128)}
    runs = [{}, on, {**moe, "model_id": "qwen3_moe"}, {**moe, **on, "model_id": "qwen3_moe"}, {**moe, **on}]
    base = {"max_steps": 3, "global_batch_size": 2}
    results = train_runs(2, tmp_path, [{**base, **r} for r in runs], timeout=500)
    losses = [r["losses"] for r in results]
    ran = [set(r["kernels_ran"]) for r in results]
    assert ran[0] == ran[2] == set()
    assert ran[1] == {"rmsnorm:reference", "rotary:reference", "attention:reference"}
    assert ran[3] == ran[4] == ran[1] | {"grouped_gemm:reference"}
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses[3], losses[2], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses[4], losses[2], rtol=1e-4, atol=1e-5)  # plain MoE forward, our grouped experts


def test_flash_attn_sliding_window_and_sinks():
    """A sliding-window family keeps its window (the layer's mask carries it); a family with sinks keeps its
    attention."""
    mistral = {"model_type": "mistral", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64,
               "sliding_window": 5, "tie_word_embeddings": False}
    ref, fused = _model(mistral), _model(mistral)
    assert apply_kernels(fused, _cfg(mistral, use_flash_attn=True)) == ["use_flash_attn"]
    torch.testing.assert_close(_loss(fused), _loss(ref), rtol=1e-5, atol=1e-6)
    assert select.ran("attention") == {"reference": 2}
    gpt_oss = {"model_type": "gpt_oss", "hidden_size": 32, "intermediate_size": 16, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "num_local_experts": 4,
               "num_experts_per_tok": 2, "sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"],
               "vocab_size": 64, "max_position_embeddings": 64, "tie_word_embeddings": False}
    m = _model(gpt_oss, attn="eager")
    assert apply_kernels(m, _cfg(gpt_oss, use_flash_attn=True)) == []
    assert m.config._attn_implementation != "fsdp2_fused"
