"""Megatron-LM checkpoints (both formats, TP 2 x PP 2, virtual stages, expert parallelism, grouped-GEMM expert
layouts; Qwen2-MoE's gated shared expert, GLM-4.5's sigmoid router with expert bias, groups and a dense first layer,
DeepSeek-V2/V3's Multi-Latent Attention, gpt-oss, StableLM's LayerNorm with SwiGLU, OPT's learned positions without
biases, Llama-3.1's RoPE scaling, Mistral's sliding window) -> Hugging Face: the converted model gives
megatron-core's own logits."""
import os
import shutil

import pytest
import torch

from tests.megatron_ckpt.conftest import save_dir
from tests.megatron_ckpt.mcore import ITERATION, PADDED, SHAPES, VOCAB, tokens

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def hf_logits(path):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(tokens()).logits


def convert(load, out, *extra):
    from tools import convert_ckpt
    assert convert_ckpt.main(["--load", str(load), "--output", str(out), *extra]) == 0


@pytest.mark.parametrize("fmt", ["torch", "torch_dist"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_converted_model_gives_megatron_cores_logits(megatron_root, tmp_path, shape, fmt):
    out = tmp_path / "hf"
    convert(save_dir(megatron_root, shape, fmt), out)
    from transformers import AutoConfig
    assert AutoConfig.from_pretrained(out).model_type == SHAPES[shape].family
    reference = torch.load(os.path.join(str(megatron_root), shape, "logits.pt"))
    torch.testing.assert_close(hf_logits(out), reference, rtol=0, atol=1e-4)


def test_rope_scaling_and_the_sliding_window_come_from_the_saved_args(megatron_root, tmp_path):
    """At these short lengths dropping Llama-3.1's scaling moves the logits by only ~2e-4, so say it directly."""
    from transformers import AutoConfig
    convert(save_dir(megatron_root, "llama31", "torch"), tmp_path / "llama31")
    rope = AutoConfig.from_pretrained(tmp_path / "llama31").rope_parameters
    assert {k: rope.get(k) for k in ("rope_type", "factor", "low_freq_factor", "high_freq_factor",
                                     "original_max_position_embeddings")} == dict(
        rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8192)
    convert(save_dir(megatron_root, "mistral", "torch"), tmp_path / "mistral")
    assert AutoConfig.from_pretrained(tmp_path / "mistral").sliding_window == 4  # Megatron's (3, 0): 3 before + itself


def test_iteration_samples_and_schedule_are_read(megatron_root):
    from fsdp2_core.checkpoint.megatron.checkpoint import open_checkpoint
    for fmt in ("torch", "torch_dist"):
        ckpt = open_checkpoint(save_dir(megatron_root, "llama", fmt))
        assert (ckpt.format, ckpt.iteration, ckpt.consumed_train_samples) == (fmt, ITERATION, ITERATION * 4 + 3)
        assert ckpt.scheduler["num_steps"] == ITERATION * 4 + 3


def test_trim_vocab_keeps_the_tokenizers_rows_and_reports_the_padding(megatron_root, tmp_path, capsys):
    out = tmp_path / "hf"
    convert(save_dir(megatron_root, "qwen3", "torch_dist"), out, "--trim-vocab", str(VOCAB))
    assert f"{PADDED - VOCAB} padding rows of Megatron's {PADDED} dropped" in capsys.readouterr().out
    logits = hf_logits(out)
    assert logits.shape[-1] == VOCAB
    reference = torch.load(os.path.join(str(megatron_root), "qwen3", "logits.pt"))
    torch.testing.assert_close(logits, reference[..., :VOCAB], rtol=0, atol=1e-4)


def _regroup_experts(src, dst, layout):
    """A copy of the legacy MoE checkpoint with its SequentialMLP experts stored as TEGroupedMLP
    (`experts.linear_fc1.weightN`) or GroupedMLP (`experts.weight1` [hidden, experts x fc1 out], each expert's
    transposed weight side by side in memory, as megatron-core's GroupedMLP views it) would store them."""
    import re
    shutil.copytree(src, dst)
    for dirpath, _, files in os.walk(dst):
        for f in files:
            if f != "model_optim_rng.pt":
                continue
            path = os.path.join(dirpath, f)
            sd = torch.load(path, weights_only=False)
            for chunk in [k for k in sd if k.startswith("model")]:
                model, experts = {}, {}
                for k, v in sd[chunk].items():
                    m = re.match(r"(.*\.mlp\.experts\.)local_experts\.(\d+)\.(linear_fc[12])\."
                                 r"(weight|_extra_state)$", k)
                    if not m:
                        model[k] = v
                    elif m.group(4) == "weight":
                        experts.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = v
                for (prefix, linear), per in experts.items():
                    ordered = [per[e] for e in sorted(per)]
                    if layout == "te_grouped":
                        for e, w in enumerate(ordered):
                            model[f"{prefix}{linear}.weight{e}"] = w
                    else:
                        which = linear[-1]
                        stacked = torch.stack([w.t() for w in ordered]).contiguous()
                        hidden = stacked.shape[1] if which == "1" else stacked.shape[2]
                        model[f"{prefix}weight{which}"] = stacked.reshape(hidden, -1) if which == "1" \
                            else stacked.reshape(-1, hidden)
                sd[chunk] = model
            torch.save(sd, path)


@pytest.mark.parametrize("layout", ["te_grouped", "grouped"])
def test_grouped_gemm_expert_layouts(megatron_root, tmp_path, layout):
    dst = tmp_path / "mg"
    _regroup_experts(save_dir(megatron_root, "moe", "torch"), dst, layout)
    convert(dst, tmp_path / "hf")
    reference = torch.load(os.path.join(str(megatron_root), "moe", "logits.pt"))
    torch.testing.assert_close(hf_logits(tmp_path / "hf"), reference, rtol=0, atol=1e-4)
