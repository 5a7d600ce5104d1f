"""Megatron's hybrid Mamba flags (pretrain_hybrid.py) -> a nemotron_h config: the layer pattern as megatron-core
allocates it, the Mamba2 dims, the refusals that name what to change, and the comparison with a --load checkpoint's
config.json (megatron_compat/arch/hybrid.py)."""
import json
import warnings

import pytest
import torch

from fsdp2_core.models.build import build_model
from megatron_compat.arch import ArchitectureError
from megatron_compat.arch.hybrid import allocate_auto, parse_pattern
from megatron_compat.translate import translate
from tests.arch.test_hybrid_training import HYBRID


def _translate(*extra, base=None, world=1):
    argv = list(base if base is not None else HYBRID) + list(extra)
    return translate(argv, world_size=world)


def _without(*flags):
    """HYBRID without these flags (and their values)."""
    out, skip = [], False
    for word in HYBRID:
        if word.startswith("--"):
            skip = word in flags
        if not skip:
            out.append(word)
    return out


def _megatron_allocate(layers, attention, mlp, pattern=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.ssm.mamba_hybrid_layer_allocation import allocate_layers
    return allocate_layers(layers, attention, mlp, pattern)


def test_flags_build_a_nemotron_h_config_that_transformers_builds():
    result = _translate()
    assert result.ok, result.problems()
    cfg = result.config
    arch = cfg.model.architecture
    assert arch["model_type"] == "nemotron_h"
    assert arch["layers_block_type"] == ["linear_attention", "full_attention", "mlp", "linear_attention"]
    assert {k: arch[k] for k in ("ssm_state_size", "mamba_head_dim", "mamba_num_heads", "n_groups", "conv_kernel",
                                 "chunk_size", "mlp_hidden_act", "num_key_value_heads", "head_dim",
                                 "intermediate_size", "tie_word_embeddings")} == {
        "ssm_state_size": 8, "mamba_head_dim": 8, "mamba_num_heads": 8, "n_groups": 2, "conv_kernel": 4,
        "chunk_size": 8, "mlp_hidden_act": "relu2", "num_key_value_heads": 2, "head_dim": 8,
        "intermediate_size": 128, "tie_word_embeddings": False}
    model = build_model(cfg, torch.device("cpu"), meta=False, seed=3)
    kinds = [type(layer.mixer).__name__ for layer in model.model.layers]
    assert kinds == ["NemotronHMamba2Mixer", "NemotronHAttention", "NemotronHMLP", "NemotronHMamba2Mixer"]
    mixer = model.model.layers[0].mixer
    assert mixer.in_proj.bias is None and mixer.conv1d.bias is not None and mixer.out_proj.bias is None
    # in_proj packs z, x, B, C, dt as megatron-core's: 2 × d_inner + 2 × groups × state + heads
    assert mixer.in_proj.out_features == 2 * 64 + 2 * 2 * 8 + 8


def test_num_heads_expand_conv_and_the_older_pattern_flag():
    argv = _without("--hybrid-layer-pattern", "--mamba-chunk-size") + [
        "--hybrid-override-pattern", "M-M", "--num-layers", "3", "--mamba-expand", "1", "--mamba-d-conv", "3"]
    arch = _translate(base=argv).config.model.architecture
    assert arch["layers_block_type"] == ["linear_attention", "mlp", "linear_attention"]
    assert (arch["mamba_num_heads"], arch["conv_kernel"], arch["chunk_size"]) == (4, 3, 128)  # 1 × 32 / 8
    assert _translate("--mamba-num-heads", "4").config.model.architecture["mamba_num_heads"] == 4


@pytest.mark.parametrize("layers,attention,mlp", [(10, 0.3, 0.2), (48, 0.1, 0.0), (52, 0.08, 0.5), (9, 0.0, 0.34),
                                                  (24, 0.5, 0.5), (7, 0.0, 0.0), (56, 0.15, 0.45)])
def test_ratio_placement_is_megatron_cores(layers, attention, mlp):
    assert allocate_auto(layers, attention, mlp) == _megatron_allocate(layers, attention, mlp)


def test_ratios_over_num_layers_and_a_pattern_that_disagrees_with_them():
    argv = _without("--hybrid-layer-pattern") + ["--num-layers", "10", "--hybrid-attention-ratio", "0.3",
                                                 "--hybrid-mlp-ratio", "0.2"]
    arch = _translate(base=argv).config.model.architecture
    symbols = {"linear_attention": "M", "full_attention": "*", "mlp": "-"}
    assert "".join(symbols[k] for k in arch["layers_block_type"]) == "".join(_megatron_allocate(10, 0.3, 0.2))
    with pytest.raises(ValueError, match="must match the number"):  # megatron-core refuses it too
        _megatron_allocate(4, 0.5, 0.0, "M*-M")
    result = _translate("--hybrid-attention-ratio", "0.5")
    assert not result.ok and any("does not hold the number of attention and MLP layers" in p
                                 for p in result.problems())


def test_pattern_grammar():
    assert parse_pattern("M-M*|M-M-|E") == list("M-M*M-M-E")  # pipeline-stage boundaries change no layer
    for text, message in [("M*M*/MM/MM", "multi-token-prediction layers"),
                          ("M-MDM-", "'D' (DeepSeek Sparse Attention"),
                          ("M-MCM-MHM-", "'C' (DeepSeek-V4 compressed-sparse attention); 'H' (DeepSeek-V4"),
                          ("MXM", "'X' is no layer of the nemotron_h family"), ("||", "has no layers")]:
        with pytest.raises(ArchitectureError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_pattern(text)


@pytest.mark.parametrize("extra,message", [
    (("--position-embedding-type", "rope"), "give --position-embedding-type none"),
    (("--swiglu",), "nemotron_h's MLP is ungated"),
    (("--qk-layernorm",), "--qk-layernorm with a hybrid Mamba model"),
    (("--num-layers", "6"), "has 4 layers but --num-layers is 6"),
    (("--hybrid-layer-pattern", "MEM*"), "E (MoE layers) in the hybrid pattern"),
    (("--hybrid-layer-pattern", "M-MD"), "'D' (DeepSeek Sparse Attention"),
    (("--mamba-num-heads", "5"), "--mamba-num-heads 5 must be a multiple of --mamba-num-groups 2"),
    (("--hidden-dropout", "0.1"), "nemotron_h has no hidden dropout"),
])
def test_refusals_name_what_to_change(extra, message):
    result = _translate(*extra, world=2)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


@pytest.mark.parametrize("parallel", [("--tensor-model-parallel-size", "2"), ("--context-parallel-size", "2")])
def test_tensor_and_context_parallel_ranks_fold_into_data_parallelism(parallel):
    """Megatron-LM's Mamba scripts use tensor parallelism; the Mamba2 mixers split neither way here, so those ranks
    become data-parallel ranks (the model and the global batch stay the script's), as for BLOOM."""
    result = _translate(*parallel, world=2)
    assert result.ok, result.problems()
    assert (result.config.parallel.tp_size, result.config.parallel.cp_size) == (1, 1)
    assert any("folded into FSDP sharding: a hybrid model's Mamba2 mixers" in n for n in result.notes), result.notes


def test_biases_and_layernorm_are_refused():
    for flag, message in [("--disable-bias-linear", "add --disable-bias-linear"),
                          ("--normalization", "add --normalization RMSNorm")]:
        result = _translate(base=_without(flag))
        assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_other_families_refuse_what_only_nemotron_h_has():
    from tests.arch.arch_helpers import BASE
    for extra, message in [(["--squared-relu"], "--squared-relu: only the nemotron_h family"),
                           (["--position-embedding-type", "none"], "--position-embedding-type none: only hybrid")]:
        result = translate(BASE + extra, world_size=1)
        assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_load_compares_flags_with_a_nemotron_h_config_json(tmp_path):
    """A Nemotron-H checkpoint's config.json gives its layers as hybrid_override_pattern; the flags are compared with
    it and with its Mamba dims, differences named."""
    from transformers import NemotronHConfig
    arch = dict(_translate().config.model.architecture)
    arch.pop("model_type")
    NemotronHConfig(**{**arch, "ssm_state_size": 16}).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved.pop("layers_block_type")
    saved["hybrid_override_pattern"] = "M*--"
    (tmp_path / "config.json").write_text(json.dumps(saved))
    result = _translate("--load", str(tmp_path))
    assert result.ok, result.problems()
    note = next(n for n in result.notes if "disagree with" in n)
    assert "ssm_state_size: flags say 8, config.json says 16" in note
    assert ("layers_block_type: flags say ['linear_attention', 'full_attention', 'mlp', 'linear_attention'], "
            "config.json says ['linear_attention', 'full_attention', 'mlp', 'mlp']") in note
    assert "mamba_num_heads" not in note and "n_groups" not in note
