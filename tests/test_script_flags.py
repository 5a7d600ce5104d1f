"""Flags of real launch scripts: aliases and old spellings, fork flags, noop layers, missing data and save
directories, MoE scripts with expert parallelism, and the escape hatch for flags the user vouches for."""
import torch

from fsdp2_core.models.build import build_model
from megatron_compat.translate import translate

BASE = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
        "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --save /ckpt/run "
        "--data-path /data/corpus_text_document --tokenizer-type NullTokenizer --vocab-size 100").split()
LLAMA = ["--position-embedding-type", "rope", "--normalization", "RMSNorm", "--swiglu", "--hidden-dropout", "0",
         "--disable-bias-linear"]


def with_flags(argv, **values):
    """BASE with some flags' values replaced (or added)."""
    out, i = [], 0
    while i < len(argv):
        name = argv[i][2:].replace("-", "_")
        if name in values:
            out += [argv[i], str(values.pop(name))]
            i += 2
        else:
            out.append(argv[i])
            i += 1
    for name, value in values.items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out


def ok(argv, world_size=4, **kw):
    result = translate(list(argv), world_size=world_size, **kw)
    assert result.ok, result.problems()
    return result, result.config


def refused(argv, world_size=4):
    result = translate(list(argv), world_size=world_size)
    assert not result.ok
    return " | ".join(result.problems())


# --- noop layers ---
def test_noop_layers_leave_only_the_real_layers():
    _, cfg = ok(with_flags(BASE, num_layers=96, hidden_size=16, num_attention_heads=2) + LLAMA
                + ["--noop-layers", "94,95"])
    assert cfg.model.architecture["num_hidden_layers"] == 94
    model = build_model(cfg, torch.device("cpu"), meta=True)
    assert len(model.model.layers) == 94


def test_noop_layers_renumber_the_dense_layers_and_refuse_bad_indices():
    moe = LLAMA + ["--qk-layernorm", "--num-experts", "4", "--moe-router-topk", "2", "--moe-layer-freq", "2"]
    _, cfg = ok(with_flags(BASE, num_layers=6) + moe + ["--noop-layers", "1"])
    # layers 1, 3, 5 are dense (freq 2); layer 1 is an identity: the real layers 0,2,3,4,5 have dense 3 and 5 at 2, 4
    assert cfg.model.architecture["num_hidden_layers"] == 5 and cfg.model.architecture["mlp_only_layers"] == [2, 4]
    assert "within 0..5" in refused(with_flags(BASE, num_layers=6) + LLAMA + ["--noop-layers", "6"])
    assert "comma-separated" in refused(with_flags(BASE, num_layers=6) + LLAMA + ["--noop-layers", "a,b"])


# --- missing data, no --save ---
def test_no_training_data_is_refused_naming_what_to_add():
    argv = [a for a in BASE]
    k = argv.index("--data-path")
    del argv[k:k + 2]
    text = refused(argv)
    assert "no training data" in text and "--data-path" in text and "--mock-data" in text
    assert "--data-path has no value" in refused(argv + ["--data-path"])
    ok(argv + ["--mock-data"])


# --- unknown flags the user vouches for ---
def test_unknown_flags_refused_unless_vouched_for_and_then_listed():
    from megatron_compat.unknown_flags import parse_vouch
    argv = BASE + ["--my-fork-switch", "--my-fork-level", "3"]
    text = refused(argv)
    assert "unknown flag --my-fork-switch" in text and "unknown flag --my-fork-level" in text
    result, _ = ok(argv, vouch=parse_vouch("all", "--allow-unknown-flags"))
    assert result.ignored == ["--my-fork-switch", "--my-fork-level"]
    report = result.report()
    assert "--my-fork-level 3" in report and "IGNORED" in report
    assert "WARNING: 2 unknown flag(s) ignored on the user's word (--allow-unknown-flags): --my-fork-switch, " \
           "--my-fork-level" in report
    partly = translate(argv, world_size=4, vouch=parse_vouch("--my-fork-level", "FSDP2_ALLOW_UNKNOWN_FLAGS"))
    assert [f for f, _ in partly.unknown] == ["--my-fork-switch"] and partly.ignored == ["--my-fork-level"]


def test_vouching_does_not_admit_rejected_flags():
    from megatron_compat.unknown_flags import parse_vouch
    result = translate(BASE + ["--use-cpu-initialization-unknown", "--fp8-hybrid"], world_size=4,
                       vouch=parse_vouch("", "--allow-unknown-flags"))
    assert result.ignored == ["--use-cpu-initialization-unknown"] and not result.ok


def test_entry_point_and_convert_args_take_the_vouch(tmp_path, monkeypatch, capsys):
    from megatron_compat.cli import main
    argv = BASE + ["--mock-data", "--my-fork-switch", "--print-config"]
    assert main(list(argv)) == 2 and "unknown flag --my-fork-switch" in capsys.readouterr().err
    assert main(list(argv) + ["--allow-unknown-flags"]) == 0
    assert "WARNING: 1 unknown flag(s) ignored" in capsys.readouterr().err
    monkeypatch.setenv("FSDP2_ALLOW_UNKNOWN_FLAGS", "--my-fork-switch")
    assert main(list(argv)) == 0 and "(FSDP2_ALLOW_UNKNOWN_FLAGS): --my-fork-switch" in capsys.readouterr().err
    monkeypatch.delenv("FSDP2_ALLOW_UNKNOWN_FLAGS")
    script = tmp_path / "run.sh"
    script.write_text("torchrun --nproc_per_node 4 pretrain_gpt.py " + " ".join(BASE) + " --my-fork-level 2\n")
    from tools.convert_args import main as convert
    out = tmp_path / "run.yaml"
    assert convert([str(script), "-o", str(out), "--script-out", str(tmp_path / "new.sh")]) == 1
    assert convert([str(script), "-o", str(out), "--script-out", str(tmp_path / "new.sh"),
                    "--allow-unknown-flags=--my-fork-level"]) == 0
    assert "# WARNING: --my-fork-level 2 was ignored (unknown here; --allow-unknown-flags)" in out.read_text()
