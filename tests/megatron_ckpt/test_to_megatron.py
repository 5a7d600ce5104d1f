"""tools/convert_ckpt.py --to-megatron: megatron-core 0.16.1 loads what it writes (TP 2) and gives the same logits;
what it writes reads back to the same tensors (TP 2 x PP 2, both formats, both layer specs)."""
import os

import pytest
import torch

from fsdp2_core.testing.spawn import spawn
from tests.megatron_ckpt.conftest import save_dir
from tests.megatron_ckpt.mcore import SHAPES
from tests.megatron_ckpt.ours import write_our_checkpoint
from tools import convert_ckpt

pytestmark = [pytest.mark.dist, pytest.mark.slow]
LOADED = ("llama", "gpt2", "moe", "qwen2_moe", "dsv3", "dsv2", "gpt_oss", "llama31", "mistral", "qwen3_next",
          "stablelm", "opt")


def spec_of(name: str) -> str:
    """The layer spec megatron-core builds the shape with: Gated DeltaNet layers exist only in Transformer Engine's."""
    return "te" if SHAPES[name].gdn else "local"


def run(*argv):
    assert convert_ckpt.main([str(a) for a in argv]) == 0


def megatron_core_logits(names, root):
    """On 2 gloo ranks (tp 2): each written checkpoint loaded by megatron-core itself; torch_dist through
    dist_checkpointing.load, torch (legacy) as megatron.training loads it: this rank's file, load_state_dict strict."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.tensor_parallel.mappings import gather_from_tensor_model_parallel_region

    from tests.megatron_ckpt.mcore import build_chunks, patch_for_cpu, reference_logits, tokens
    patch_for_cpu()
    dist.init_process_group("gloo")
    out = {}
    for name in names:
        s = SHAPES[name]
        # a legacy file holds this rank's slice of the experts as the writer's expert tensor parallel size cut them
        ps.initialize_model_parallel(2, 1, expert_tensor_parallel_size=s.config.get("expert_tensor_parallel_size"))
        out[(name, "torch_dist")] = reference_logits(s, os.path.join(root, name, "torch_dist", "iter_0000000"), tp=2)
        (model,) = build_chunks(s, 2, 1, 1, None)
        rank_file = os.path.join(root, name, "torch", "iter_0000000", f"mp_rank_{dist.get_rank():02d}",
                                 "model_optim_rng.pt")
        model.load_state_dict(torch.load(rank_file, weights_only=False)["model"], strict=True)
        model.eval()
        ids = tokens()
        pos = torch.arange(ids.shape[1]).unsqueeze(0).expand_as(ids)
        mask = torch.triu(torch.ones(1, 1, ids.shape[1], ids.shape[1], dtype=torch.bool), 1)
        with torch.no_grad():
            out[(name, "torch")] = gather_from_tensor_model_parallel_region(model(ids, pos, mask)).float()
        ps.destroy_model_parallel()
    dist.destroy_process_group()
    return {k: v.numpy() for k, v in out.items()}  # numpy travels by value; tensors would need this rank alive


def test_megatron_core_loads_what_to_megatron_wrote(megatron_root, tmp_path):
    for name in LOADED:
        hf = tmp_path / "hf" / name
        run("--load", save_dir(megatron_root, name, "torch_dist"), "--output", hf)
        for fmt in ("torch_dist", "torch"):
            run("--load", hf, "--to-megatron", tmp_path / "mg" / name / fmt, "--target-tp", 2, "--format", fmt,
                "--megatron-spec", spec_of(name), "--make-vocab-size-divisible-by", 64)
    logits = spawn(2, megatron_core_logits, list(LOADED), str(tmp_path / "mg"), timeout=600)[0]
    for (name, fmt), got in logits.items():
        reference = torch.load(os.path.join(str(megatron_root), name, "logits.pt"))
        torch.testing.assert_close(torch.from_numpy(got), reference, rtol=0, atol=1e-4, msg=f"{name} {fmt}")


def _tensors(path):
    from safetensors.torch import load_file
    return load_file(os.path.join(path, "model.safetensors"))


@pytest.mark.parametrize("fmt", ["torch", "torch_dist"])
@pytest.mark.parametrize("spec", ["te", "local"])
def test_written_checkpoints_read_back_to_the_same_tensors(megatron_root, tmp_path, fmt, spec):
    from fsdp2_core.checkpoint.megatron.checkpoint import open_checkpoint
    # dsv3: MLA's Transformer Engine names, dense and MoE layers' own keys; gpt_oss: sinks, experts' biases, whole
    # experts on each tensor-parallel rank; qwen3_next: Gated DeltaNet's in_proj / conv1d parts fused per rank (its
    # layers exist only in Transformer Engine's spec)
    for name in ("moe", "gpt2", "dsv3", "gpt_oss", "stablelm", "opt") + (("qwen3_next",) if spec == "te" else ()):
        hf = tmp_path / "hf" / name
        run("--load", save_dir(megatron_root, name, "torch"), "--output", hf)
        mg = tmp_path / "mg" / name
        run("--load", hf, "--to-megatron", mg, "--target-tp", 2, "--target-pp", 2, "--format", fmt,
            "--megatron-spec", spec, "--make-vocab-size-divisible-by", 64)
        args = open_checkpoint(str(mg)).args
        assert (args.tensor_model_parallel_size, args.pipeline_model_parallel_size, args.ckpt_format) == (2, 2, fmt)
        assert (args.num_layers, args.hidden_size, args.padded_vocab_size) == (SHAPES[name].layers, 32, 128)
        back = tmp_path / "back" / name
        run("--load", mg, "--output", back)
        original, again = _tensors(hf), _tensors(back)
        assert original.keys() == again.keys()
        for key in original:
            assert torch.equal(original[key], again[key]), key


def test_gated_delta_net_needs_the_transformer_engine_spec(megatron_root, tmp_path, capsys):
    hf = tmp_path / "hf"
    run("--load", save_dir(megatron_root, "qwen3_next", "torch_dist"), "--output", hf)
    capsys.readouterr()
    assert convert_ckpt.main([str(a) for a in ("--load", hf, "--to-megatron", tmp_path / "mg", "--format", "torch",
                                               "--megatron-spec", "local")]) == 2
    assert "use --megatron-spec te" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "mg" / "iter_0000000")


def test_our_checkpoint_carries_its_counters(tmp_path):
    from fsdp2_core.checkpoint.megatron.checkpoint import open_checkpoint
    save = tmp_path / "run"
    write_our_checkpoint(str(save), iteration=3, consumed=12)
    run("--load", save, "--to-megatron", tmp_path / "mg", "--target-tp", 2)
    ckpt = open_checkpoint(str(tmp_path / "mg"))
    assert (ckpt.iteration, ckpt.consumed_train_samples, ckpt.format) == (3, 12, "torch_dist")
    assert (tmp_path / "mg" / "latest_checkpointed_iteration.txt").read_text() == "3"
    assert ckpt.args.padded_vocab_size == 256  # 120 padded to a multiple of 128 x tp 2
