"""Mesh sizes against the world, TP pattern errors, module patterns, and new-token initialisation."""
import pytest
import torch

from fsdp2_core.config import ConfigError, TrainConfig
from fsdp2_core.models.tokens import extend_tokenizer, new_rows
from fsdp2_core.parallel.mesh import parallel_dims
from fsdp2_core.parallel.patterns import matches


def _p(**kw):
    p = TrainConfig().parallel
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_unset_fsdp_size_shards_over_every_dp_rank():
    d = parallel_dims(_p(), 8)
    assert (d.dp_replicate, d.dp_shard, d.tp) == (1, 8, 1)
    d = parallel_dims(_p(tp_size=2), 8)
    assert (d.dp_replicate, d.dp_shard, d.tp, d.dp) == (1, 4, 2, 4)


def test_explicit_fsdp_size_is_honoured_with_replicas():
    assert (parallel_dims(_p(fsdp_size=2), 8).dp_replicate, parallel_dims(_p(fsdp_size=2), 8).dp_shard) == (4, 2)
    d = parallel_dims(_p(fsdp_size=1), 4)  # explicit 1: plain data parallelism, no sharding
    assert (d.dp_replicate, d.dp_shard) == (4, 1)


@pytest.mark.parametrize("kw,world,needle", [
    ({"tp_size": 3}, 8, "not divisible by tp_size 3"),
    ({"fsdp_size": 3}, 8, "fsdp_size 3 must divide the data-parallel size 8"),
    ({"ep_size": 3}, 8, "ep_size 3"),
])
def test_sizes_checked_with_clear_errors(kw, world, needle):
    with pytest.raises(ConfigError, match=needle):
        parallel_dims(_p(**kw), world)


def test_patterns():
    assert matches("model.layers.3", ["model.layers.{*}"])
    assert not matches("model.layers.3.mlp", ["model.layers.{*}"])
    assert matches("model.layers.3.self_attn.q_proj", ["*.q_proj"])
    assert not matches("model.layers.3.self_attn.q_proj_extra", ["*.q_proj"])


def test_new_rows_modes():
    g = torch.Generator().manual_seed(0)
    w = torch.arange(12, dtype=torch.float32).view(4, 3)
    noise = new_rows(w, 2, "noise_init", generator=g)
    assert noise.shape == (2, 3) and torch.allclose(noise.mean(0), w.mean(0), atol=1.5)
    desc = new_rows(w, 2, "desc_init", [[0, 2], None])
    assert torch.equal(desc[0], w[[0, 2]].mean(0)) and torch.equal(desc[1], w.mean(0))
    with_noise = new_rows(w, 2, "desc_init_w_noise", [[1], [3]], torch.Generator().manual_seed(0))
    assert not torch.equal(with_noise[0], w[1]) and torch.allclose(with_noise[0], w[1], atol=3.0)


def test_extend_tokenizer_with_descriptions(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {w: i for i, w in enumerate(["[UNK]", "hello", "world", "tool", "call"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    spec = tmp_path / "new.yaml"
    spec.write_text("'<tool>': tool call\n")
    cfg = TrainConfig().model
    cfg.add_tokens, cfg.new_special_tokens_config = "foo", str(spec)
    added = extend_tokenizer(hf, cfg)
    assert added == {"foo": None, "<tool>": "tool call"} and len(hf) == 7
