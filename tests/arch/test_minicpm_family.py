"""MindSpeed-LLM's MiniCPM flags (--scale-emb, --scale-depth, --dim-model-base on a Llama layout) are transformers'
granite: its logits equal MindSpeed's formulas computed on a Llama model with the same weights, the engine's loss
scales the logits as Granite does, the flags come back from the config, and other layouts are refused."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsdp2_core.models.build import build_model
from megatron_compat.reverse import architecture_flags
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE, MINICPM, flag_config

PROBE = torch.as_tensor(np.random.default_rng(5).integers(0, 128, size=(2, 16)))
LAYERS, HIDDEN, HEADS = 3, 32, 4  # BASE's


def test_minicpm_flags_give_granite_with_mindspeeds_scales():
    arch = flag_config(MINICPM).model.architecture
    assert arch["model_type"] == "granite"
    assert arch["embedding_multiplier"] == 12.0
    assert math.isclose(arch["residual_multiplier"], 1.4 / math.sqrt(LAYERS))
    assert arch["logits_scaling"] == HIDDEN / 8 and arch["attention_multiplier"] == (HIDDEN // HEADS) ** -0.5
    again = translate(list(BASE) + architecture_flags(arch), world_size=1)
    assert again.ok and again.config.model.architecture == arch, again.problems()


def _mindspeed_logits(granite, tokens):
    """MindSpeed's MiniCPM on transformers' Llama with the same weights: embeddings × scale_emb, each attention and
    MLP output × scale_depth / sqrt(num_layers) before its residual add, the final norm's output ÷ (hidden /
    dim_model_base) before the output layer (mindspeed_llm gpt_model.py and transformer_layer.py)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    fields = {k: v for k, v in granite.config.to_dict().items() if k in LlamaConfig().to_dict()}
    llama = LlamaForCausalLM(LlamaConfig(**{**fields, "model_type": "llama"})).eval()
    llama.load_state_dict(granite.state_dict())
    depth = 1.4 / math.sqrt(LAYERS)
    llama.model.embed_tokens.register_forward_hook(lambda m, i, out: out * 12)
    for layer in llama.model.layers:
        layer.self_attn.register_forward_hook(lambda m, i, out: (out[0] * depth,) + tuple(out[1:]))
        layer.mlp.register_forward_hook(lambda m, i, out: out * depth)
    llama.model.norm.register_forward_hook(lambda m, i, out: out / (HIDDEN / 8))
    with torch.no_grad():
        return llama(input_ids=tokens, use_cache=False).logits


def test_granite_computes_mindspeeds_minicpm():
    granite = build_model(flag_config(MINICPM), torch.device("cpu"), meta=False, seed=3).eval()
    with torch.no_grad():
        ours = granite(input_ids=PROBE, use_cache=False).logits
    torch.testing.assert_close(ours, _mindspeed_logits(granite, PROBE), rtol=1e-5, atol=1e-5)


def test_the_loss_scales_the_logits_as_granite_does():
    from fsdp2_core.train.loss import lm_loss_sums
    model = build_model(flag_config(MINICPM), torch.device("cpu"), meta=False, seed=3)
    labels = torch.roll(PROBE, -1, 1)
    with torch.no_grad():
        total, count = lm_loss_sums(model, PROBE, labels, torch.ones_like(PROBE, dtype=torch.float))
        logits = model(input_ids=PROBE, use_cache=False).logits  # transformers divides by logits_scaling
        unscaled = model.lm_head(model.model(input_ids=PROBE).last_hidden_state)
    assert not torch.allclose(logits, unscaled)
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum")
    torch.testing.assert_close(total, want, rtol=1e-5, atol=1e-4)
    assert int(count) == PROBE.numel()


@pytest.mark.parametrize("extra, message", [
    ("--scale-emb 12 --scale-depth 1.4 --dim-model-base 8 --multi-latent-attention --qk-layernorm --kv-lora-rank 16 "
     "--qk-head-dim 8 --qk-pos-emb-head-dim 8 --v-head-dim 8", "describe the deepseek_v3 family"),  # MiniCPM3
    (MINICPM + " --qk-layernorm", "describe the qwen3 family"),
    (MINICPM.replace("--scale-emb 12", "--scale-emb 0"), "--scale-emb 0: MiniCPM's scales are positive"),
])
def test_minicpm_scales_on_another_layout_are_refused(extra, message):
    result = translate(list(BASE) + extra.split(), world_size=1)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()
