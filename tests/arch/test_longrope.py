"""MindSpeed-LLM's LongRoPE flags (Phi-3.5, MiniCPM3: --rope-scaling-type longrope, --long-factor, --short-factor,
--rope-scaling-original-max-position-embeddings, --long-mscale / --short-mscale) are transformers' longrope
rope_parameters: the cos/sin the model applies equal MindSpeed's (rotary_pos_embedding.py) for sequences within and
beyond the original context; the flags come back from the config; what cannot match is refused."""
import math

import pytest
import torch

from fsdp2_core.models.build import build_model
from megatron_compat.reverse import architecture_flags
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE

HEAD_DIM, BASE_THETA = 8, 10000.0  # BASE: hidden 32, 4 heads
LONG = [1.0, 1.7, 2.9, 4.3]
SHORT = [1.0, 1.05, 1.2, 1.5]


def _flags(seq, original, *extra):
    argv = [w for w in BASE]
    argv[argv.index("--seq-length") + 1] = str(seq)
    argv[argv.index("--max-position-embeddings") + 1] = "64"
    return argv + ["--rope-scaling-type", "longrope", "--rope-scaling-original-max-position-embeddings", str(original),
                   "--longrope-freqs-type", "outer", "--long-factor", ",".join(map(str, LONG)),
                   "--short-factor", ",".join(map(str, SHORT)), *extra]


def _mindspeed_cos_sin(seq, original, factors, mscale=None, max_positions=64):
    """MindSpeed: inv_freq = 1 / (ext · base^(2i/d)) with ext chosen by --seq-length, cos/sin times the mscale."""
    ext = torch.tensor(factors)
    inv_freq = 1.0 / (ext * BASE_THETA ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
    freqs = torch.outer(torch.arange(seq).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    if mscale is None:
        scale = max_positions / original
        mscale = 1.0 if scale <= 1 else math.sqrt(1 + math.log(scale) / math.log(original))
    return torch.cos(emb) * mscale, torch.sin(emb) * mscale


@pytest.mark.parametrize("seq, original, extra, factors, mscale", [
    (32, 32, (), SHORT, None),                                           # within the original context (Phi-3.5)
    (32, 16, (), LONG, None),                                            # beyond it: the long factors
    (32, 16, ("--long-mscale", "1.25", "--short-mscale", "1.1"), LONG, 1.25),
    (16, 16, ("--long-mscale", "1.25", "--short-mscale", "1.1"), SHORT, 1.1),
])
def test_longrope_cos_sin_are_mindspeeds(seq, original, extra, factors, mscale):
    result = translate(_flags(seq, original, *extra), world_size=1)
    assert result.ok, result.problems()
    rope = result.config.model.architecture["rope_parameters"]
    assert rope["rope_type"] == "longrope" and rope["long_factor"] == LONG and rope["short_factor"] == SHORT
    model = build_model(result.config, torch.device("cpu"), meta=False, seed=3)
    positions = torch.arange(seq)[None]
    with torch.no_grad():
        cos, sin = model.model.rotary_emb(torch.zeros(1, seq, 32), positions)
    want_cos, want_sin = _mindspeed_cos_sin(seq, original, factors, mscale)
    torch.testing.assert_close(cos[0], want_cos, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sin[0], want_sin, rtol=1e-5, atol=1e-5)
    again = translate(list(BASE) + architecture_flags(result.config.model.architecture), world_size=1)
    assert again.ok and again.config.model.architecture["rope_parameters"] == rope, again.problems()


@pytest.mark.parametrize("extra, message", [
    (("--long-mscale", "1.2"), "--long-mscale and --short-mscale go together"),
    (("--reset-position-ids",), "drop --reset-position-ids"),
    (("--context-parallel-size", "2"), "drop --context-parallel-size"),
])
def test_longrope_refusals_name_the_flag(extra, message):
    result = translate(_flags(32, 16, *extra), world_size=2)
    assert not result.ok and any(message in p for p in result.problems()), result.problems()


def test_longrope_factor_lists_are_checked():
    argv = _flags(32, 32)
    argv[argv.index("--long-factor") + 1] = "1,2,3"
    result = translate(argv, world_size=1)
    assert not result.ok and any("--long-factor has 3 factors" in p and "4 frequencies" in p
                                 for p in result.problems()), result.problems()
    argv = [w for w in _flags(32, 32)]
    del argv[argv.index("--short-factor"):argv.index("--short-factor") + 2]
    result = translate(argv, world_size=1)
    assert not result.ok and any("needs --short-factor" in p for p in result.problems()), result.problems()
