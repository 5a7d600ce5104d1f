"""Megatron's hidden dropout on a Llama-style model (fsdp2_core/models/hidden_dropout.py), against megatron-core.

Dropout draws random masks, so the oracle replaces torch's dropout, in both models, by a deterministic element-wise
stand-in (positive values scaled by 1/(1-p), the rest zeroed). Element-wise, it gives the same numbers whatever the
layout ([s, b, h] in megatron-core, [b, s, h] here): the two training-mode forwards agree only if dropout acts on the
same tensors, at the same places, as megatron-core's embedding dropout and bias-dropout-add do."""
import numpy as np
import pytest
import torch

from fsdp2_core.testing.spawn import spawn
from megatron_compat.translate import translate
from tests.arch.arch_helpers import BASE

P = 0.25
_AT = BASE.index("--hidden-dropout")
NO_FLAG = BASE[:_AT] + BASE[_AT + 2:] + ["--num-layers", "2"]  # BASE's --hidden-dropout 0 removed; 2 layers
FLAGS = NO_FLAG + ["--hidden-dropout", str(P)]


def _standin(input, p=0.5, training=True, inplace=False):
    if not training or p == 0:
        return input
    return torch.where(input > 0, input / (1 - p), torch.zeros_like(input))


def _config():
    result = translate(FLAGS, world_size=1)
    assert result.ok, result.problems()
    return result.config


def test_the_flag_reaches_the_config_and_the_default_is_megatrons():
    assert _config().model.architecture["hidden_dropout"] == P
    result = translate(NO_FLAG, world_size=1)  # Megatron's default 0.1
    assert result.config.model.architecture["hidden_dropout"] == 0.1
    assert any("hidden dropout 0.1: Megatron's default" in n for n in result.notes)
    off = translate(NO_FLAG + ["--hidden-dropout", "0"], world_size=1)
    assert "hidden_dropout" not in off.config.model.architecture


def test_dropout_acts_in_training_only_at_one_place_per_embedding_attention_and_mlp():
    from fsdp2_core.models.build import build_model
    model = build_model(_config(), torch.device("cpu"), meta=False, vocab_size=128, seed=3)
    calls = []

    def counting(input, p=0.5, training=True, inplace=False):
        calls.append(p)
        return _standin(input, p, training, inplace)
    ids = torch.randint(0, 127, (2, 16), generator=torch.Generator().manual_seed(1))
    original = torch.nn.functional.dropout
    torch.nn.functional.dropout = counting
    try:
        model.train()
        trained = model(input_ids=ids).logits
        hits = [p for p in calls if p == P]
        calls.clear()
        model.eval()
        evaluated = model(input_ids=ids).logits
    finally:
        torch.nn.functional.dropout = original
    assert len(hits) == 1 + 2 * 2  # the embedding, then attention and MLP of each of the 2 layers
    assert not [p for p in calls if p == P]  # evaluation: none
    assert not torch.allclose(trained, evaluated)


def _megatron_and_ours():
    """Training-mode logits of megatron-core's GPTModel (local spec) and of our model built from the same flags, with
    megatron-core's weights converted by the checkpoint importer's own name groups."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.transformer import TransformerConfig

    from fsdp2_core.checkpoint.hf_export import export_tensors
    from fsdp2_core.checkpoint.megatron.names import groups_for
    from fsdp2_core.models.build import build_model
    from tests.megatron_ckpt.mcore import patch_for_cpu
    patch_for_cpu()
    dist.init_process_group("gloo")
    ps.initialize_model_parallel(1, 1)
    torch.manual_seed(0)
    config = TransformerConfig(
        num_layers=2, hidden_size=32, num_attention_heads=4, ffn_hidden_size=_config().model.architecture[
            "intermediate_size"], normalization="RMSNorm", gated_linear_unit=True,
        activation_func=torch.nn.functional.silu, add_bias_linear=False, hidden_dropout=P, attention_dropout=0.0,
        use_cpu_initialization=True, pipeline_dtype=torch.float32, masked_softmax_fusion=False,
        persist_layer_norm=False, bias_dropout_fusion=False, bias_activation_fusion=False)
    theirs = GPTModel(config, get_gpt_layer_local_spec(normalization="RMSNorm"), vocab_size=128,
                      max_sequence_length=64, position_embedding_type="rope",
                      share_embeddings_and_output_weights=False)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    ours = build_model(_config(), torch.device("cpu"), meta=False, vocab_size=128, seed=3)
    mg = {k: v for k, v in theirs.state_dict().items() if not k.endswith("_extra_state")}
    hf = {}
    for group in groups_for(ours.config, [name for name, _ in export_tensors(ours)]):
        hf.update(group.to_hf({n: mg[n] for n in group.mg}))
    missing, unexpected = ours.load_state_dict(hf, strict=False)
    assert not unexpected and not [m for m in missing if "rotary" not in m], (missing, unexpected)
    ids = torch.randint(0, 127, (2, 16), generator=torch.Generator().manual_seed(5))
    pos = torch.arange(16).unsqueeze(0).expand_as(ids)
    mask = torch.triu(torch.ones(1, 1, 16, 16, dtype=torch.bool), 1)
    original = torch.nn.functional.dropout
    torch.nn.functional.dropout = _standin
    try:
        theirs.train()
        ours.train()
        with torch.no_grad():
            out = (theirs(ids, pos, mask).float().numpy(), ours(input_ids=ids).logits.float().numpy())
            theirs.eval()
            out += (theirs(ids, pos, mask).float().numpy(),)
    finally:
        torch.nn.functional.dropout = original
    ps.destroy_model_parallel()
    dist.destroy_process_group()
    return out


@pytest.mark.dist
def test_hidden_dropout_falls_where_megatron_core_puts_it():
    theirs, ours, theirs_eval = spawn(1, _megatron_and_ours, timeout=300)[0]
    assert np.abs(theirs - theirs_eval).max() > 1e-2  # the stand-in changed megatron-core's output: it ran
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=2e-5)


def _dropout_on_tensor_parallel_placements():
    """On 2 gloo ranks seeded alike: what the hook's dropout makes of a partial sum (a vocab-parallel embedding's
    output), a replicated and a sequence-sharded activation."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

    from fsdp2_core.models.hidden_dropout import _dropout
    mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("tp",))
    rank = dist.get_rank()
    part = torch.arange(24, dtype=torch.float32).reshape(1, 4, 6) * (rank + 1)  # the whole: the sum, 3 × arange
    out = {}
    for name, local, placement in (("partial", part, Partial()), ("replicate", torch.ones(1, 4, 6), Replicate()),
                                   ("shard", torch.ones(1, 2, 6), Shard(1))):
        torch.manual_seed(7)
        dropped = _dropout(DTensor.from_local(local, mesh, [placement], run_check=False), 0.5)
        out[name] = (dropped.placements[0].is_partial(), dropped.to_local().numpy())
    return out


@pytest.mark.dist
def test_dropout_under_tensor_parallelism_reduces_first_and_drops_alike_on_every_rank():
    first, second = spawn(2, _dropout_on_tensor_parallel_placements, timeout=120)
    whole = 3 * np.arange(24, dtype=np.float32).reshape(1, 4, 6)
    for out in (first, second):
        partial, values = out["partial"]
        assert not partial  # reduced before the dropout, as Megatron drops out after the embedding's all-reduce
        kept = values != 0
        np.testing.assert_allclose(values[kept], 2 * whole[kept])  # kept elements scaled by 1 / (1 - p)
    for name in ("partial", "replicate"):  # one mask for the copies of a replicated activation
        np.testing.assert_array_equal(first[name][1], second[name][1])
