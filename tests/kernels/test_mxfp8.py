"""MXFP8 (quant_recipe mxfp8): the block quantisation, a quantised linear close to bf16, the converters and
their module patterns, clear errors, and a tiny 2-rank FSDP training run within 5% of the bf16 run."""

import pytest
import torch
import torch.nn as nn
from transformers import AutoConfig, AutoModelForCausalLM

from fsdp2_core.config import ConfigError, build_config
from fsdp2_core.quant import apply_quantization, check_quantization, mxfp8
from tests.kernels.train_helpers import train_runs

LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 128, "max_position_embeddings": 64,
         "tie_word_embeddings": False}
QWEN3_MOE = {"model_type": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 32,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
             "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": True, "vocab_size": 64,
             "max_position_embeddings": 64, "tie_word_embeddings": False}


def _cfg(arch, **over):
    return build_config({"architecture": dict(arch), "output_dir": "/tmp/unused", "stage": "pt",
                         "cutoff_len": arch["max_position_embeddings"],  # the 2048 default exceeds the tiny table
                         "train_from_scratch": True, "quant_recipe": "mxfp8", **over})


def _model(arch):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(**arch))


@pytest.mark.parametrize("fmt", ["E4M3", "E5M2"])
def test_block_scales_are_powers_of_two_and_match_torchao(fmt):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 96, generator=g) * torch.logspace(-3, 3, 96)  # blocks of very different magnitude
    ours = mxfp8.quantize_dequantize(x, fmt, 32, use_torchao=False)
    torchao = mxfp8.quantize_dequantize(x, fmt, 32, use_torchao=True)
    torch.testing.assert_close(ours, torchao, rtol=0, atol=0)
    elem = mxfp8.ELEMENT_DTYPES[fmt]
    rel = ((ours - x).abs() / x.abs().clamp(min=1e-30)).max()
    assert 0 < rel <= 2.0 ** -(3 if fmt == "E4M3" else 2)  # half an ulp of the element format, at most
    blocks = x.reshape(8, 3, 32)
    scale = torch.exp2(torch.floor(torch.log2(blocks.abs().amax(-1))) - mxfp8.EMAX[elem])
    fmax = torch.finfo(elem).max  # FLOOR scales can put a block's largest value above the format's max: saturate
    q = (blocks / scale.unsqueeze(-1)).clamp(-fmax, fmax).to(elem).float()
    torch.testing.assert_close(ours, (q * scale.unsqueeze(-1)).reshape(8, 96))


def test_non_multiple_of_block_and_other_dims():
    x = torch.randn(5, 40)
    y = mxfp8.quantize_dequantize(x, "E4M3", 32, dim=0)
    assert y.shape == x.shape and (y - x).abs().max() < 0.1 * x.abs().max()


@pytest.mark.parametrize("fmt,tol", [("E4M3", 0.08), ("E5M2", 0.15)])  # SQNR above 22 dB / 16.5 dB
def test_quantized_linear_close_to_bf16(fmt, tol):
    torch.manual_seed(0)
    lin = nn.Linear(256, 128).bfloat16()
    x = torch.randn(64, 256, dtype=torch.bfloat16, requires_grad=True)
    ref = lin(x)
    ref.float().square().sum().backward()
    ref_gx, ref_gw = x.grad.clone(), lin.weight.grad.clone()
    x.grad, lin.weight.grad = None, None
    mxfp8.convert_linear(lin, fmt, 32)
    mxfp8.RAN.clear()
    out = lin(x)
    out.float().square().sum().backward()
    assert set(mxfp8.RAN) == {"torchao_emulated"}  # CPU: torchao's MX quantisation, emulated GEMM

    def rel(a, b):
        return ((a.float() - b.float()).norm() / b.float().norm()).item()
    assert 0 < rel(out, ref) < tol
    assert rel(x.grad, ref_gx) < 2 * tol and rel(lin.weight.grad, ref_gw) < 2 * tol


def test_converters_follow_module_patterns():
    model = _model(LLAMA)
    done = apply_quantization(model, _cfg(LLAMA, quant_ignored_modules=["lm_head", "o_proj"]), "cpu")
    layers = LLAMA["num_hidden_layers"]
    assert done == {"quantize.linear.mx": 6 * layers}  # q k v gate up down; o_proj and lm_head ignored
    names = {n for n, m in model.named_modules() if hasattr(m, "_fsdp2_quant_format")}
    assert "lm_head" not in names and not any(n.endswith("o_proj") for n in names)
    assert "model.layers.1.mlp.down_proj" in names
    only_first = _model(LLAMA)
    assert apply_quantization(only_first, _cfg(LLAMA, quant_apply_modules=["model.layers.0"]), "cpu") == {
        "quantize.linear.mx": 7}


def test_moe_converter_trains_experts():
    ref, model = _model(QWEN3_MOE), _model(QWEN3_MOE)
    done = apply_quantization(model, _cfg(QWEN3_MOE, converters=["quantize.linear.mx", "quantize.moe.mx"]), "cpu")
    assert done["quantize.moe.mx"] == QWEN3_MOE["num_hidden_layers"]
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    mxfp8.RAN.clear()
    loss, ref_loss = model(input_ids=ids, labels=ids).loss, ref(input_ids=ids, labels=ids).loss
    assert mxfp8.RAN["moe_emulated"] == QWEN3_MOE["num_hidden_layers"]
    assert abs(loss.item() - ref_loss.item()) < 0.02 * ref_loss.item() and loss.item() != ref_loss.item()
    loss.backward()
    experts = model.model.layers[0].mlp.experts
    assert experts.gate_up_proj.grad is not None and experts.gate_up_proj.grad.abs().sum() > 0
    assert "gate_up_proj" not in experts.__dict__  # the quantised view is gone after the call
    assert sorted(n for n, _ in experts.named_parameters()) == ["down_proj", "gate_up_proj"]


def test_errors_name_the_field():
    with pytest.raises(ConfigError, match="HIF8.*only on Ascend.*cpu"):
        check_quantization(_cfg(LLAMA, quant_format="HIF8"), "cpu")
    with pytest.raises(ConfigError, match="converters.*quantize.linear.mx"):
        check_quantization(_cfg(LLAMA, converters=["quantize.conv.mx"]), "cpu")
    with pytest.raises(ConfigError, match="found no module"):
        apply_quantization(_model(LLAMA), _cfg(LLAMA, quant_apply_modules=["decoder.{*}"]), "cpu")
    assert apply_quantization(_model(LLAMA), _cfg(LLAMA, quant_recipe=None), "cpu") == {}


@pytest.mark.slow
@pytest.mark.dist
def test_mxfp8_trains_within_5_percent_of_bf16(tmp_path):
    """20 iterations on 2 gloo ranks under FSDP (weights all-gathered in bf16, quantised inside the forward)."""
    base = {"max_steps": 20, "global_batch_size": 2, "param_dtype": "bf16", "reduce_dtype": "fp32", "lr": 3e-3}
    bf16, mx = train_runs(2, tmp_path, [base, {**base, "quant_recipe": "mxfp8", "quant_format": "E4M3"}])
    a, b = bf16["losses"], mx["losses"]
    assert len(a) == len(b) == 20
    assert b[-1] < 0.5 * b[0]  # it learns
    assert max(abs(x - y) / x for x, y in zip(a, b)) < 0.05
    assert a != b  # quantisation did something


@pytest.mark.slow
@pytest.mark.dist
def test_mxfp8_fsdp_two_ranks_equal_one(tmp_path):
    """FSDP's all-gathers hand the quantised forward the same weights: 2 ranks train like 1 (fp32 master weights)."""
    base = {"max_steps": 6, "global_batch_size": 2, "quant_recipe": "mxfp8", "quant_format": "E5M2",
            "converters": ["quantize.linear.mx"]}
    two = train_runs(2, tmp_path / "two", [base])[0]["losses"]
    one = train_runs(1, tmp_path / "one", [base])[0]["losses"]
    assert max(abs(a - b) / a for a, b in zip(one, two)) < 1e-3, (one, two)
