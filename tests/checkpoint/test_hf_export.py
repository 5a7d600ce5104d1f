"""The Hugging Face export gives the trained model: `from_pretrained` logits equal the logits of the
sharded model at the end of training, after TP=2 with meta-device init (sharded safetensors with an
index) and after FSDP with tied embeddings; tools/convert_ckpt.py writes the same from the checkpoint."""
import functools
import json
import os

import pytest
import torch
from safetensors import safe_open

from fsdp2_core.testing.tiny import LLAMA
from tests.checkpoint.ckpt_helpers import PROBE, spawn_sequence

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ATOL = 2e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tests.checkpoint.ckpt_helpers import record_logits
    tmp = tmp_path_factory.mktemp("hf")
    seq = [
        ("tp", {"max_steps": 3, "save_steps": 0, "tp_size": 2, "init_model_with_meta_device": True}, {},
         functools.partial(record_logits, 60_000)),
        ("tied", {"max_steps": 3, "save_steps": 0, "architecture": dict(LLAMA, tie_word_embeddings=True)}, {},
         functools.partial(record_logits, 10 ** 9)),
    ]
    results = spawn_sequence(2, tmp, seq, timeout=400)[0]
    for name, res in results.items():
        assert not isinstance(res, str), f"{name}: {res}"
    return tmp


def logits_of(path):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(PROBE)).logits


def tensors_of(path):
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for f in files:
        with safe_open(os.path.join(path, f), framework="pt") as fh:
            out.update({k: fh.get_tensor(k) for k in fh.keys()})
    return out


@pytest.mark.parametrize("run", ["tp", "tied"])
def test_from_pretrained_gives_the_trained_logits(exported, run):
    out = exported / run
    trained = torch.load(out / "trained_logits.pt")
    hf = out / "hf_model"
    torch.testing.assert_close(logits_of(hf), trained, atol=ATOL, rtol=0)
    config = json.load(open(hf / "config.json"))
    assert config["architectures"] == ["LlamaForCausalLM"] and config["use_cache"] is True
    assert (hf / "generation_config.json").exists()
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(hf))
    assert tok("w5 w7 zzz")["input_ids"] == [5, 7, LLAMA["vocab_size"] - 2]


def test_tp_export_is_sharded_with_an_index(exported):
    hf = exported / "tp" / "hf_model"
    index = json.load(open(hf / "model.safetensors.index.json"))
    files = sorted(f for f in os.listdir(hf) if f.endswith(".safetensors"))
    assert len(files) > 1 and set(index["weight_map"].values()) == set(files)
    tensors = tensors_of(str(hf))
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    assert tensors["model.layers.0.self_attn.q_proj.weight"].shape == (64, 64)  # gathered, not a TP shard


def test_tied_embeddings_written_once(exported):
    tensors = tensors_of(str(exported / "tied" / "hf_model"))
    assert "lm_head.weight" not in tensors and "model.embed_tokens.weight" in tensors


@pytest.mark.parametrize("run", ["tp", "tied"])
def test_convert_ckpt_from_the_saved_checkpoint(exported, run, tmp_path):
    from tools import convert_ckpt
    out = tmp_path / "converted"
    assert convert_ckpt.main(["--load", str(exported / run), "--output", str(out), "--max-shard-size", "50KB"]) == 0
    reference = tensors_of(str(exported / run / "hf_model"))
    converted = tensors_of(str(out))
    assert converted.keys() == reference.keys()
    assert all(torch.equal(converted[k], reference[k]) for k in reference)
    assert len([f for f in os.listdir(out) if f.endswith(".safetensors")]) > 1
    torch.testing.assert_close(logits_of(out), torch.load(exported / run / "trained_logits.pt"), atol=ATOL, rtol=0)
    assert (out / "tokenizer.json").exists()
    # bf16 on request; integer tensors (none here) would keep their type
    out16 = tmp_path / "bf16"
    assert convert_ckpt.main(["--load", str(exported / run / "iter_0000003"), "--output", str(out16),
                              "--dtype", "bf16"]) == 0
    assert all(t.dtype == torch.bfloat16 for t in tensors_of(str(out16)).values())


def test_convert_ckpt_refuses_an_incomplete_checkpoint(exported, tmp_path, capsys):
    from tools import convert_ckpt
    broken = tmp_path / "iter_0000003"
    os.makedirs(broken)
    assert convert_ckpt.main(["--load", str(broken), "--output", str(tmp_path / "x")]) == 2
    assert "not a complete checkpoint: no .metadata" in capsys.readouterr().err
