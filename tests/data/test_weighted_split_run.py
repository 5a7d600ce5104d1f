"""A bigcode-style launch (--train/valid-weighted-split-paths-path files) translated, built and trained on 2 gloo
ranks: each validation group is evaluated on its own and logged under its name, as the forks' training.py does."""
import pytest

from fsdp2_core.data.megatron import BlendedDataset, megatron_sample_counts
from fsdp2_core.data.megatron.weighted_split import NamedDataset
from fsdp2_core.testing.spawn import spawn
from megatron_compat.translate import translate

from .conftest import write_corpus

pytestmark = [pytest.mark.dist]

FLAGS = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --ffn-hidden-size 128 --seq-length 32 "
         "--max-position-embeddings 64 --micro-batch-size 2 --global-batch-size 8 --train-iters 4 --lr 3e-3 "
         "--tokenizer-type NullTokenizer --vocab-size 100 --log-interval 1 --eval-interval 2 --eval-iters 1 "
         "--position-embedding-type rope --normalization RMSNorm --swiglu --untie-embeddings-and-output-weights "
         "--disable-bias-linear --attention-dropout 0 --hidden-dropout 0 --bf16").split()


def _files(tmp_path, valid_groups):
    tmp_path.mkdir(parents=True, exist_ok=True)
    a = write_corpus(str(tmp_path / "code_text_document"), 120, 60, 11, vocab=100)
    b = write_corpus(str(tmp_path / "docs_text_document"), 80, 90, 12, vocab=100)
    train, valid = tmp_path / "train_data_paths.txt", tmp_path / f"valid_{len(valid_groups)}.txt"
    train.write_text(f'"TRAIN: 0.7 0:0.9 {a}, 0.3 0:0.9 {b}"\n')
    names = {"VALID_A": f"1 0.9:1 {a}", "VALID_B": f"1 0.9:1 {b}"}
    valid.write_text(" ".join(f'"{n}: {names[n]}"' for n in valid_groups) + "\n")
    return str(train), str(valid)


def _translated(tmp_path, valid_groups, out, extra=()):
    train, valid = _files(tmp_path, valid_groups)
    result = translate(FLAGS + ["--train-weighted-split-paths-path", train, "--valid-weighted-split-paths-path",
                                valid, "--save", str(tmp_path / out), *extra], world_size=2)
    assert result.ok, result.problems()
    cfg = result.config
    cfg.parallel.param_dtype = "fp32"  # fp32 on CPU, as the project's distributed tests run
    return cfg


def test_bigcode_style_flags_build_the_groups(tmp_path):
    cfg = _translated(tmp_path, ["VALID_A", "VALID_B"], "out")
    d = cfg.data
    assert d.data_manager_type == "mg" and d.dataset is None
    assert d.train_weighted_split_paths.startswith("TRAIN: 0.7 0:0.9 ")
    assert [g.split(":")[0] for g in d.valid_weighted_split_paths] == ["VALID_A", "VALID_B"]
    from fsdp2_core.train.data import build_datasets, build_tokenizer
    train, valid, test = build_datasets(cfg, 4, 8, build_tokenizer(cfg))
    counts = megatron_sample_counts(4, 8, 2, 1)
    assert isinstance(train, BlendedDataset) and len(train) == counts[0] == 32
    assert [len(ds) >= n for ds, n in zip(train.datasets, (23, 10))] == [True, True]  # ceil(32 · w · 1.005)
    assert [ds.document_range for ds in train.datasets] == [(0, 108), (0, 72)]
    assert test is None and [type(g) for g in valid] == [NamedDataset] * 2
    assert [(g.name, g.dataset.document_range, g.dataset.num_samples) for g in valid] == [
        ("VALID_A", (108, 120), counts[1]), ("VALID_B", (72, 80), counts[1])]


def _train(cfg):
    from fsdp2_core.train import CheckpointHooks, run_training
    lines = []
    summary = run_training(cfg, checkpoint=CheckpointHooks(), print_fn=lines.append)
    return summary, "\n".join(lines)


def test_each_validation_group_evaluated_on_its_own(tmp_path):
    test_group = f"TEST_B: 1 0.8:1 {tmp_path}/both/docs_text_document"  # inline beside the -path files
    both = _translated(tmp_path / "both", ["VALID_A", "VALID_B"], "out", ["--test-weighted-split-paths", test_group])
    alone = _translated(tmp_path / "alone", ["VALID_B"], "out")
    (summary, text), = [r for r in spawn(2, _train, both)[:1]]
    (summary_b, _), = [r for r in spawn(2, _train, alone)[:1]]
    for it in (2, 4):
        assert f"VALID_A loss at iteration {it} | lm loss value: " in text
        assert f"VALID_B loss at iteration {it} | lm loss value: " in text
    assert "validation loss at" not in text
    assert "TEST_B loss at iteration 4 on test set | lm loss value: " in text
    assert list(summary["test_loss"]) == ["TEST_B"] and summary_b["test_loss"] is None
    got = {(v["group"], v["iteration"]): v["loss"] for v in summary["valid"]}
    assert sorted(got) == [("VALID_A", 2), ("VALID_A", 4), ("VALID_B", 2), ("VALID_B", 4)]
    assert got[("VALID_A", 2)] != got[("VALID_B", 2)]
    # VALID_B beside VALID_A gives what VALID_B alone gives: each group reads its own samples
    assert [v["loss"] for v in summary_b["valid"]] == [got[("VALID_B", 2)], got[("VALID_B", 4)]]
    assert summary["losses"] == summary_b["losses"]
