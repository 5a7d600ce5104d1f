"""Multi-token prediction in Megatron checkpoints (issue #16): megatron-core's `mtp.layers.K` (enorm, hnorm, eh_proj
column-parallel over tp 2, a Qwen3-MoE transformer_layer with its experts, final_layernorm) become the engine's MTP
layers `model.layers.<L+K>` and back. The converted model gives megatron-core's own main and MTP logits and MTP
losses; what --to-megatron writes, megatron-core loads (tp 2, both formats) with the same outputs, and it reads back
to the same tensors (tp 2 x pp 2, both formats, both layer specs)."""
import os

import pytest
import torch

from fsdp2_core.testing.spawn import spawn
from tests.megatron_ckpt.conftest import save_dir
from tests.megatron_ckpt.mcore import SHAPES, tokens
from tools import convert_ckpt

pytestmark = [pytest.mark.dist, pytest.mark.slow]
SHAPE = SHAPES["mtp"]


def run(*argv):
    assert convert_ckpt.main([str(a) for a in argv]) == 0


def reference(root):
    ref = torch.load(os.path.join(str(root), "mtp", "mtp.pt"))
    return torch.load(os.path.join(str(root), "mtp", "logits.pt")), ref["mtp_logits"], ref["mtp_token_losses"]


def engine_model(hf_dir):
    """The export loaded as the engine builds it: transformers' model, then the MTP layers filled from the export."""
    from transformers import AutoModelForCausalLM

    from fsdp2_core.models.build import load_weights
    from fsdp2_core.models.mtp import add_mtp_layers
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    added = add_mtp_layers(model, SHAPE.mtp)
    assert load_weights(model, str(hf_dir), 0, only=added)  # every MTP tensor is in the export
    return model


def engine_outputs(model):
    """(logits, each depth's logits, each depth's (loss sum, token count)) from the engine's own MTP path."""
    from fsdp2_core.models.mtp import depth_inputs, mtp_hidden_states
    from fsdp2_core.train.loss import lm_loss_sums
    ids = tokens()
    pos = torch.arange(ids.shape[1]).expand_as(ids)
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state
        depths = depth_inputs(ids, ids, torch.ones_like(ids), SHAPE.mtp)
        mtp = mtp_hidden_states(model, hidden, [d[0] for d in depths], pos)
        lm_loss_sums(model, ids, ids, torch.ones_like(ids))  # labels = the tokens, as megatron-core was given
        return model.lm_head(hidden), [model.lm_head(h) for h in mtp], model.last_mtp_sums


def assert_megatron_cores_outputs(got, root):
    logits, mtp_logits, sums = got
    ref_logits, ref_mtp, ref_losses = reference(root)
    torch.testing.assert_close(logits, ref_logits, rtol=0, atol=1e-4)
    assert len(mtp_logits) == len(ref_mtp) == SHAPE.mtp
    for k, (ours, theirs) in enumerate(zip(mtp_logits, ref_mtp)):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4, msg=f"depth {k + 1}")
    from fsdp2_core.models.mtp import roll_left
    for k, ((total, count), token_losses) in enumerate(zip(sums, ref_losses)):
        mask = roll_left(torch.ones_like(token_losses), k + 1)   # megatron-core rolls its loss mask per depth
        torch.testing.assert_close(total, (token_losses * mask).sum(), rtol=1e-5, atol=1e-5)
        assert float(count) == float(mask.sum())


@pytest.mark.parametrize("fmt", ["torch", "torch_dist"])
def test_mtp_layers_convert_to_megatron_cores_mtp_outputs(megatron_root, tmp_path, fmt):
    out = tmp_path / "hf"
    run("--load", save_dir(megatron_root, "mtp", fmt), "--output", out)
    import json
    with open(out / "config.json") as fh:
        assert json.load(fh)["num_nextn_predict_layers"] == SHAPE.mtp
    assert_megatron_cores_outputs(engine_outputs(engine_model(out)), megatron_root)


def megatron_core_outputs(root):
    """On 2 gloo ranks (tp 2): megatron-core loads each written checkpoint itself (torch_dist through
    dist_checkpointing.load, torch as megatron.training does: this rank's file, load_state_dict strict)."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from tests.megatron_ckpt.mcore import build_chunks, model_outputs, patch_for_cpu, reference_outputs
    patch_for_cpu()
    dist.init_process_group("gloo")
    ps.initialize_model_parallel(2, 1)
    out = {"torch_dist": reference_outputs(SHAPE, os.path.join(root, "torch_dist", "iter_0000000"), tp=2)}
    (model,) = build_chunks(SHAPE, 2, 1, 1, None)
    rank_file = os.path.join(root, "torch", "iter_0000000", f"mp_rank_{dist.get_rank():02d}", "model_optim_rng.pt")
    model.load_state_dict(torch.load(rank_file, weights_only=False)["model"], strict=True)
    out["torch"] = model_outputs(model, SHAPE)
    dist.destroy_process_group()
    # numpy travels by value; tensors would need this rank alive
    return {fmt: (logits.numpy(), [t.numpy() for t in extra["mtp_logits"]]) for fmt, (logits, extra) in out.items()}


def test_megatron_core_loads_the_mtp_layers_to_megatron_wrote(megatron_root, tmp_path):
    hf = tmp_path / "hf"
    run("--load", save_dir(megatron_root, "mtp", "torch_dist"), "--output", hf)
    for fmt in ("torch_dist", "torch"):
        run("--load", hf, "--to-megatron", tmp_path / "mg" / fmt, "--target-tp", 2, "--format", fmt,
            "--megatron-spec", "local", "--make-vocab-size-divisible-by", 64)
    ref_logits, ref_mtp, _ = reference(megatron_root)
    for fmt, (logits, mtp) in spawn(2, megatron_core_outputs, str(tmp_path / "mg"), timeout=600)[0].items():
        torch.testing.assert_close(torch.from_numpy(logits), ref_logits, rtol=0, atol=1e-4, msg=fmt)
        for k, (ours, theirs) in enumerate(zip(mtp, ref_mtp)):
            torch.testing.assert_close(torch.from_numpy(ours), theirs, rtol=0, atol=1e-4, msg=f"{fmt} depth {k + 1}")


def test_mtp_layers_read_back_to_the_same_tensors(megatron_root, tmp_path):
    from safetensors.torch import load_file

    from fsdp2_core.checkpoint.megatron.checkpoint import open_checkpoint
    hf = tmp_path / "hf"
    run("--load", save_dir(megatron_root, "mtp", "torch"), "--output", hf)
    original = load_file(os.path.join(hf, "model.safetensors"))
    assert {n for n in original if n.startswith("model.layers.3.")} >= {
        "model.layers.3.eh_proj.weight", "model.layers.3.shared_head.norm.weight", "model.layers.3.embed_tokens.weight",
        "model.layers.3.mlp.experts.gate_up_proj"}
    for fmt in ("torch", "torch_dist"):
        for spec in ("te", "local"):
            mg, back = tmp_path / "mg" / fmt / spec, tmp_path / "back" / fmt / spec
            run("--load", hf, "--to-megatron", mg, "--target-tp", 2, "--target-pp", 2, "--format", fmt,
                "--megatron-spec", spec, "--make-vocab-size-divisible-by", 64)
            assert open_checkpoint(str(mg)).args.mtp_num_layers == SHAPE.mtp
            run("--load", mg, "--output", back)
            again = load_file(os.path.join(back, "model.safetensors"))
            assert original.keys() == again.keys()
            for key in original:
                assert torch.equal(original[key], again[key]), f"{fmt} {spec}: {key}"


def test_args_with_mtp_layers_the_checkpoint_lacks(megatron_root, tmp_path, capsys):
    from tests.megatron_ckpt.test_bad_input import copy, refused, rewrite_args
    ckpt = copy(megatron_root, tmp_path, "moe", "torch")
    rewrite_args(ckpt, mtp_num_layers=1)
    err = refused(ckpt, tmp_path, capsys)
    assert "lacks mtp.layers.0." in err


@pytest.mark.parametrize("fmt", ["torch", "torch_dist"])
def test_load_fills_the_engines_mtp_layers(megatron_root, fmt):
    """--load of a Megatron checkpoint (a run continued): the model the saved args describe, MTP layers appended as
    the engine builds them, filled by resume.load_weights, computes megatron-core's outputs."""
    from transformers import AutoModelForCausalLM

    from fsdp2_core.checkpoint.megatron.checkpoint import open_checkpoint
    from fsdp2_core.checkpoint.megatron.resume import load_weights
    from fsdp2_core.models.mtp import add_mtp_layers
    from megatron_compat.checkpoint_args import hf_config_for
    ckpt = open_checkpoint(save_dir(megatron_root, "mtp", fmt))
    config, _ = hf_config_for(ckpt)
    model = AutoModelForCausalLM.from_config(config).eval()
    add_mtp_layers(model, ckpt.args.mtp_num_layers)
    load_weights(ckpt, model)
    assert_megatron_cores_outputs(engine_outputs(model), megatron_root)
