"""Megatron's FP8 flags: mapped to float8 (torchao) fields or the MXFP8 recipe; --print-config shows the
mapping on any machine; a run on hardware without FP8 refuses at start naming the flag."""
import contextlib
import io

import pytest
import torch
import yaml

from fsdp2_core.config import ConfigError
from fsdp2_core.quant import float8
from megatron_compat.cli import main as pretrain_main
from megatron_compat.translate import translate

BASE = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --save /ckpt/run "
        "--data-path /data/corpus_text_document --tokenizer-type NullTokenizer --vocab-size 100 --bf16").split()


def _cfg(extra):
    result = translate(BASE + extra, world_size=1)
    assert result.ok, result.problems()
    return result


def test_hybrid_delayed_maps_to_float8_fields():
    result = _cfg("--fp8-format hybrid --fp8-amax-history-len 1024 --fp8-amax-compute-algo max "
                  "--fp8-param-gather".split())
    m = result.config.model
    assert (m.fp8_format, m.fp8_recipe, m.fp8_amax_history_len, m.fp8_amax_compute_algo, m.fp8_param_gather) == (
        "hybrid", "delayed", 1024, "max", True)
    assert m.quant_recipe is None
    report = result.report()
    for flag in ("--fp8-format", "--fp8-amax-history-len", "--fp8-param-gather"):
        assert flag in report


def test_e4m3_tensorwise_and_blockwise():
    m = _cfg("--fp8-format e4m3 --fp8-recipe tensorwise".split()).config.model
    assert (m.fp8_format, m.fp8_recipe) == ("e4m3", "tensorwise")
    assert _cfg("--fp8-format hybrid --fp8-recipe blockwise".split()).config.model.fp8_recipe == "blockwise"


def test_mxfp8_recipe_becomes_quant_recipe():
    m = _cfg("--fp8-format e4m3 --fp8-recipe mxfp8".split()).config.model
    assert (m.quant_recipe, m.quant_format, m.quant_block_size, m.fp8_format) == ("mxfp8", "E4M3", 32, None)


def test_recipe_without_format_is_absorbed_and_custom_refused():
    m = _cfg("--fp8-recipe tensorwise".split()).config.model
    assert m.fp8_format is None and m.quant_recipe is None
    result = translate(BASE + "--fp8-format hybrid --fp8-recipe custom".split(), world_size=1)
    assert not result.ok and "--fp8-recipe" in " ".join(result.problems())


def test_print_config_shows_mapping_on_cpu():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert pretrain_main(BASE + "--fp8-format hybrid --fp8-recipe tensorwise --print-config".split()) == 0
    cfg = yaml.safe_load(out.getvalue())
    assert cfg["model"]["fp8_format"] == "hybrid" and cfg["model"]["fp8_recipe"] == "tensorwise"


def test_refused_at_start_without_fp8_hardware(monkeypatch):
    cfg = _cfg(["--fp8-format", "hybrid"]).config
    with pytest.raises(ConfigError, match=r"--fp8-format hybrid.*compute capability 8\.9.*cpu.*Remove --fp8-format"):
        float8.check_fp8_hardware(cfg, "cpu")
    with pytest.raises(ConfigError, match="--fp8-format"):
        float8.check_fp8_hardware(cfg, "npu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))  # A100: no FP8
    with pytest.raises(ConfigError, match="--fp8-format"):
        float8.check_fp8_hardware(cfg, "cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))  # H100 / H200
    float8.check_fp8_hardware(cfg, "cuda")


def test_run_training_refuses_before_building(tmp_path):
    """The whole entry: build_parallel_model stops at the FP8 check on this CPU machine."""
    from fsdp2_core.train.entry import build_parallel_model
    cfg = _cfg(["--fp8-format", "e4m3"]).config

    class Dev:
        type = "cpu"
    with pytest.raises(ConfigError, match="--fp8-format e4m3"):
        build_parallel_model(cfg, Dev(), mesh=None)


def test_torchao_float8_config_per_format():
    cfg = _cfg("--fp8-format e4m3 --fp8-recipe tensorwise --fp8-param-gather".split()).config
    c = float8.float8_config(cfg.model)
    assert c.cast_config_grad_output.target_dtype == torch.float8_e4m3fn and c.enable_fsdp_float8_all_gather
    c = float8.float8_config(_cfg(["--fp8-format", "hybrid"]).config.model)
    assert c.cast_config_grad_output.target_dtype == torch.float8_e5m2  # hybrid: E5M2 gradients
    with pytest.raises(ConfigError, match="--fp8-param-gather"):
        float8.float8_config(_cfg("--fp8-format hybrid --fp8-recipe blockwise --fp8-param-gather".split()).config.model)


def test_float8_swaps_selected_linears(monkeypatch):
    """The conversion itself (no FP8 GEMM runs here): torchao Float8Linear on the quant_apply_modules linears."""
    from torchao.float8.float8_linear import Float8Linear
    from transformers import AutoConfig, AutoModelForCausalLM

    from fsdp2_core.quant import apply_quantization
    monkeypatch.setattr(float8, "fp8_supported", lambda device_type: True)
    cfg = _cfg(["--fp8-format", "hybrid"]).config
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=128))
    assert apply_quantization(model, cfg, "cuda") == {"float8": 14}
    assert isinstance(model.model.layers[0].self_attn.q_proj, Float8Linear)
    assert not isinstance(model.lm_head, Float8Linear)


def test_reverse_round_trip():
    from megatron_compat.reverse import to_megatron
    extra = "--fp8-format e4m3 --fp8-recipe tensorwise --fp8-amax-history-len 16 --fp8-amax-compute-algo max " \
            "--fp8-param-gather".split()
    first = _cfg(extra).config
    flags, _ = to_megatron(first)
    assert " ".join(extra) in " ".join(flags)
    second = translate(flags, world_size=1).config
    assert second.model == first.model
    assert to_megatron(_cfg([]).config)[0] == to_megatron(_cfg(["--fp8-recipe", "blockwise"]).config)[0]


def _quantised_layers(m, layers=2):
    from fsdp2_core.quant import module_filter
    keep = module_filter(m)
    return [i for i in range(layers) if keep(f"model.layers.{i}.mlp.up_proj")]


def test_first_and_last_layers_stay_bf16():
    six = [a if a != "2" else "6" for a in BASE[:2]] + BASE[2:]  # --num-layers 6
    result = translate(six + "--fp8-format hybrid --first-last-layers-bf16 --num-layers-at-start-in-bf16 2".split(),
                       world_size=1)
    assert result.ok, result.problems()
    m = result.config.model
    assert m.quant_ignored_modules == ["lm_head", "model.layers.0", "model.layers.1", "model.layers.5"]
    assert _quantised_layers(m, 6) == [2, 3, 4]
    assert "model.quant_ignored_modules += model.layers.0, model.layers.1, model.layers.5" in result.report()
    mx = _cfg("--fp8-format e4m3 --fp8-recipe mxfp8 --first-last-layers-bf16".split()).config.model
    assert _quantised_layers(mx) == [] and mx.quant_ignored_modules[1:] == ["model.layers.0", "model.layers.1"]


def test_bf16_layer_flags_without_fp8_are_absorbed_and_bad_counts_refused():
    result = _cfg("--first-last-layers-bf16 --num-layers-at-end-in-bf16 2".split())
    assert result.config.model.quant_ignored_modules == ["lm_head"]
    assert "no effect without --fp8-format" in result.report()
    bad = translate(BASE + "--fp8-format hybrid --first-last-layers-bf16 --num-layers-at-start-in-bf16 2".split(),
                    world_size=1)
    assert not bad.ok
    assert "--num-layers-at-start-in-bf16 2 and --num-layers-at-end-in-bf16 1" in "\n".join(bad.problems())


def test_the_old_format_switches_name_the_format():
    for flag, fmt in (("--fp8-e4m3", "e4m3"), ("--fp8-hybrid", "hybrid")):
        result = _cfg([flag, "--fp8-recipe", "tensorwise"])
        assert (result.config.model.fp8_format, result.config.model.fp8_recipe) == (fmt, "tensorwise")
        assert f"model.fp8_format {fmt} (Megatron's spelling before --fp8-format)" in result.report()
    assert _cfg("--fp8-hybrid --fp8-recipe mxfp8".split()).config.model.quant_recipe == "mxfp8"
    bad = translate(BASE + "--fp8-e4m3 --fp8-format hybrid".split(), world_size=1)
    assert not bad.ok and "FP8 formats e4m3, hybrid both given" in "\n".join(bad.problems())


def test_fp8_recipes_leave_the_routed_experts_in_the_training_dtype(monkeypatch):
    """What --no-use-gmm-fp8 asks MindSpeed for is how both recipes mapped from --fp8-* run the experts here."""
    import transformers

    from fsdp2_core.quant import apply_quantization
    config = transformers.Qwen3MoeConfig(vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=32,
                                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                                         head_dim=16, num_experts=4, num_experts_per_tok=2)
    monkeypatch.setattr(float8, "fp8_supported", lambda device_type: True)  # conversion only; nothing runs in FP8
    for flags in ("--fp8-format hybrid --fp8-recipe tensorwise", "--fp8-format e4m3 --fp8-recipe mxfp8"):
        model = transformers.AutoModelForCausalLM.from_config(config)
        experts = {n: p.clone() for n, p in model.named_parameters() if ".experts." in n}
        done = apply_quantization(model, _cfg(flags.split()).config, "cuda")
        assert sum(done.values()) > 0, flags  # the attention projections were converted
        # torchao swaps in Float8Linear modules; MXFP8 marks the nn.Linear modules it converts
        converted = [n for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear) and
                     (type(mod) is not torch.nn.Linear or hasattr(mod, "_fsdp2_quant_format"))]
        assert converted and not [n for n in converted if ".experts" in n], (flags, converted)
        for n, p in model.named_parameters():
            if n in experts:
                assert type(p) is torch.nn.Parameter and p.dim() == 3 and torch.equal(p, experts[n])
