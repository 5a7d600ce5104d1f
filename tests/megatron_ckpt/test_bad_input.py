"""Bad Megatron checkpoints get a clear error naming the file or field, and nothing is written."""
import fractions
import os
import shutil

import pytest
import torch

from tests.megatron_ckpt.conftest import save_dir
from tools import convert_ckpt

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def refused(load, tmp_path, capsys, *extra):
    out = tmp_path / "hf"
    code = convert_ckpt.main(["--load", str(load), "--output", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if ".partial-" in n]
    return err


def copy(megatron_root, tmp_path, shape, fmt):
    dst = tmp_path / f"{shape}-{fmt}"
    shutil.copytree(save_dir(megatron_root, shape, fmt), dst)
    return dst


def rewrite_args(ckpt_dir, **changes):
    """Change the saved args in every file that holds them (each rank file, or common.pt)."""
    for d, _, files in os.walk(ckpt_dir):
        for f in files:
            if f in ("model_optim_rng.pt", "common.pt"):
                sd = torch.load(os.path.join(d, f), weights_only=False)
                for k, v in changes.items():
                    setattr(sd["args"], k, v)
                torch.save(sd, os.path.join(d, f))


def test_neither_format(tmp_path, capsys):
    ckpt = tmp_path / "mg"
    (ckpt / "iter_0000006").mkdir(parents=True)
    (ckpt / "iter_0000006" / "weights.bin").write_bytes(b"x")
    (ckpt / "latest_checkpointed_iteration.txt").write_text("6")
    assert "is neither a Megatron torch checkpoint" in refused(ckpt, tmp_path, capsys)


def test_missing_shard(megatron_root, tmp_path, capsys):
    ckpt = copy(megatron_root, tmp_path, "llama", "torch")
    shutil.rmtree(ckpt / "iter_0000006" / "mp_rank_01_000")
    err = refused(ckpt, tmp_path, capsys)
    assert "missing shard mp_rank_01_000/model_optim_rng.pt" in err and "tensor parallel 2, pipeline 2" in err


@pytest.mark.parametrize("fmt,victim", [("torch", "mp_rank_00_001/model_optim_rng.pt"), ("torch_dist", "__1_0.distcp")])
def test_truncated_file(megatron_root, tmp_path, capsys, fmt, victim):
    ckpt = copy(megatron_root, tmp_path, "qwen3", fmt)
    path = ckpt / "iter_0000006" / victim
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = refused(ckpt, tmp_path, capsys)
    assert os.path.basename(victim) in err and "truncated" in err


def test_unknown_pickled_type_is_refused_unless_trusted(megatron_root, tmp_path, capsys):
    ckpt = copy(megatron_root, tmp_path, "qwen3", "torch")
    rewrite_args(ckpt, custom_ratio=fractions.Fraction(1, 3))
    err = refused(ckpt, tmp_path, capsys)
    assert "fractions.Fraction" in err and "--trust-megatron-pickle" in err
    assert convert_ckpt.main(["--load", str(ckpt), "--output", str(tmp_path / "ok"), "--trust-megatron-pickle"]) == 0


@pytest.mark.parametrize("field,value,what", [("rotary_interleaved", True, "interleaved rotary"),
                                              ("moe_router_score_function", "sqrtsoftplus", "a router score function")])
def test_architecture_the_engine_does_not_build(megatron_root, tmp_path, capsys, field, value, what):
    ckpt = copy(megatron_root, tmp_path, "moe", "torch_dist")
    rewrite_args(ckpt, **{field: value})
    err = refused(ckpt, tmp_path, capsys)
    assert f"{field} = {value!r} ({what}" in err and "Use Megatron-LM for this model" in err


@pytest.mark.parametrize("field,value,what", [
    ("hybrid_override_pattern", "M-M-", "a hybrid Mamba model"),
    ("experimental_attention_variant", "dsa", "DeepSeek Sparse Attention"),
    ("spec", ["miles_plugins.models.minimax_m2", "get_minimax_m2_spec"], "a MiniMax-M2 layer spec")])
def test_a_family_trained_here_whose_megatron_tensors_are_not_mapped(megatron_root, tmp_path, capsys, field, value,
                                                                    what):
    ckpt = copy(megatron_root, tmp_path, "moe", "torch_dist")
    rewrite_args(ckpt, **{field: value})
    err = refused(ckpt, tmp_path, capsys)
    assert f"{field} = {value!r} ({what}" in err
    assert "convert the checkpoint to Hugging Face with the converter of the project that trained it" in err


@pytest.mark.parametrize("shape,field,value,named", [
    # Qwen3-Next's norms are x·(1 + w): its weights copy as they are only from zero-centred (--apply-layernorm-1p) norms
    ("qwen3_next", "layernorm_zero_centered_gamma", False, "layernorm_zero_centered_gamma = False"),
    ("qwen3_next", "experimental_attention_variant", "gdn2", "experimental_attention_variant = 'gdn2'"),
    # zero-centred norms stay refused for every other family
    ("llama", "layernorm_zero_centered_gamma", True, "layernorm_zero_centered_gamma = True (zero-centred")])
def test_gated_delta_net_args_that_contradict_the_mapping(megatron_root, tmp_path, capsys, shape, field, value, named):
    ckpt = copy(megatron_root, tmp_path, shape, "torch")
    rewrite_args(ckpt, **{field: value})
    assert named in refused(ckpt, tmp_path, capsys)


def test_args_that_contradict_the_flags(megatron_root):
    from fsdp2_core.config import ConfigError
    from megatron_compat.cli import load_from_megatron_checkpoint
    from megatron_compat.translate import translate
    argv = ["--num-layers", "3", "--hidden-size", "32", "--num-attention-heads", "4", "--group-query-attention",
            "--num-query-groups", "2", "--ffn-hidden-size", "64", "--position-embedding-type", "rope",
            "--normalization", "RMSNorm", "--swiglu", "--disable-bias-linear", "--untie-embeddings-and-output-weights",
            "--hidden-dropout", "0", "--seq-length", "16", "--micro-batch-size", "1", "--global-batch-size", "4",
            "--train-iters", "20", "--lr", "1e-3", "--tokenizer-type", "NullTokenizer", "--vocab-size", "119",
            "--mock-data", "--load", save_dir(megatron_root, "llama", "torch"), "--save", "/tmp/unused"]
    result = translate(argv, world_size=1)
    assert result.ok, result.problems()
    cfg = result.config
    with pytest.raises(ConfigError, match=r"num_hidden_layers: flags 3, checkpoint 4"):
        load_from_megatron_checkpoint(cfg)


@pytest.mark.parametrize("model_type,extra,what", [
    ("minimax_m2", dict(num_local_experts=4, num_experts_per_tok=2, head_dim=8), "no MiniMax-M2 layer spec"),
    ("glm_moe_dsa", dict(n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=16),
     "DeepSeek Sparse Attention")])
def test_to_megatron_refuses_a_family_whose_megatron_tensors_are_not_mapped(tmp_path, capsys, model_type, extra,
                                                                            what):
    import transformers
    config = transformers.AutoConfig.for_model(model_type, vocab_size=128, hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=4, num_key_value_heads=2, intermediate_size=32,
                                               **extra)
    hf = tmp_path / "hf"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(hf)
    out = tmp_path / "mg"
    assert convert_ckpt.main(["--load", str(hf), "--to-megatron", str(out), "--target-tp", "1"]) == 2
    err = capsys.readouterr().err
    assert f"model_type {model_type}: " in err and what in err and "not written here" in err
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if ".partial-" in n]
