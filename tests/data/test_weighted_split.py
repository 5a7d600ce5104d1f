"""bigscience's / bigcode's weighted dataset groups (`--train-weighted-split-paths`) against megatron-core.

The forks (bigscience-workshop/Megatron-DeepSpeed, bigcode-project/Megatron-LM) build each group entry as their
old GPTDataset over the documents [round(S·N), round(E·N)) and blend the entries with their BlendableDataset:
weights normalised, entry k asked for ceil(n · w_k · 1.005) samples, the blend `n` samples long (bigcode; bigscience
makes it the sum of the entries' lengths, whose first `n` draws are the same, the greedy blending being
prefix-stable). A lone entry is asked for all `n` samples and not blended. The oracle here is megatron-core
0.16.1: its GPTDataset takes the document indices, and its BlendedDataset runs the same greedy blending helper as
the forks' BlendableDataset. Where the forks and megatron-core might differ: the forks' GPTDataset is the older
one (always an extra label token, no `drop_last_partial_validation_sequence` switch: it always drops the partial
last sample, megatron-core's default, used here) and names its cache files by the group name instead of a hash;
neither changes the document, sample or shuffle index. Verified here: the three index arrays of every entry, the
blend's two index arrays, and the samples' tokens, labels, loss masks and positions.
"""
import numpy as np
import pytest

from fsdp2_core.config import ConfigError, build_config
from fsdp2_core.data.megatron import build_pretraining_datasets
from fsdp2_core.data.megatron.weighted_split import (
    GroupEntry,
    NamedDataset,
    document_range,
    entry_sample_counts,
    parse_group,
    parse_groups,
    read_groups_file,
)
from megatron_compat.translate import translate

from .test_data_gpt_order import KEYS, assert_same_indices

gpt = pytest.importorskip("megatron.core.datasets.gpt_dataset")
from megatron.core.datasets.blended_dataset import BlendedDataset as CoreBlended  # noqa: E402
from megatron.core.datasets.indexed_dataset import IndexedDataset as CoreIndexed  # noqa: E402
from megatron.core.datasets.utils import Split  # noqa: E402

SEQ, SEED = 64, 1234


def core_config(stub):
    return gpt.GPTDatasetConfig(random_seed=SEED, sequence_length=SEQ, blend=None, blend_per_split=[None] * 3,
                                split=None, tokenizer=stub, path_to_cache=None, reset_position_ids=False,
                                reset_attention_mask=False, eod_mask_loss=False, create_attention_mask=False)


def core_group(text, flag, n, split, stub):
    """The fork's build_dataset_group, with megatron-core's GPTDataset and BlendedDataset as parts."""
    group = parse_group(text, flag)
    config = core_config(stub)

    def entry(e, count):
        low = CoreIndexed(e.path)
        beg, end = document_range(e, len(low))
        return gpt.GPTDataset(low, e.path, np.arange(beg, end, dtype=np.int32), count, split, config)
    if len(group.entries) == 1:
        return entry(group.entries[0], n)
    weights, counts = entry_sample_counts([e.weight for e in group.entries], n)
    return CoreBlended([entry(e, c) for e, c in zip(group.entries, counts)], weights, n, config)


def assert_same_samples(ref, got, limit=80):
    assert len(ref) == len(got)
    for i in range(min(limit, len(ref))):
        a, b = ref[i], got[i]
        for k in KEYS:
            assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), (i, k)


# ------------------------------------------------------------------ parsing
def test_parse_group_and_entries():
    g = parse_group("CODE: 0.6 0:0.6 /d/a, 0.3 0:1 /d/b, 0.1 0.25:1 /d/c", "--train-weighted-split-paths")
    assert g.name == "CODE"
    assert g.entries == (GroupEntry(0.6, 0.0, 0.6, "/d/a"), GroupEntry(0.3, 0.0, 1.0, "/d/b"),
                         GroupEntry(0.1, 0.25, 1.0, "/d/c"))


def test_groups_file_form(tmp_path):
    path = tmp_path / "valid.txt"
    path.write_text('"VALID_A: 1 0.9:1 /d/a" "VALID_B: 1 0.95:1 /d/b, 2 0.95:1 /d/c"\n')
    texts = read_groups_file(str(path), "--valid-weighted-split-paths-path")
    assert texts == ["VALID_A: 1 0.9:1 /d/a", "VALID_B: 1 0.95:1 /d/b, 2 0.95:1 /d/c"]
    names = [g.name for g in parse_groups(texts, "--valid-weighted-split-paths")]
    assert names == ["VALID_A", "VALID_B"]


@pytest.mark.parametrize("text, message", [
    ("TRAIN: 0.3 0:0.6 /d/a 1 0:0.6 /d/b", "has 6 words, not the three WEIGHT START:END PATH (separate the "
                                           "entries with commas)"),
    ("0.3 0-0.6 /d/a", "no 'NAME:'"),
    ("T: 1 0.6:0.6 /d/a", "range 0.6:0.6 needs 0 <= START < END <= 1"),
    ("T: 1 0.8:0.2 /d/a", "range 0.8:0.2 needs 0 <= START < END <= 1"),
    ("T: 1 0:1.5 /d/a", "needs 0 <= START < END <= 1"),
    ("T: x 0:1 /d/a", "weight 'x' is not a number"),
    ("T: 1 0-1 /d/a", "range '0-1' is not START:END"),
])
def test_malformed_groups_name_flag_and_fault(text, message):
    with pytest.raises(ValueError) as err:
        parse_group(text, "--train-weighted-split-paths")
    assert str(err.value).startswith("--train-weighted-split-paths ")
    assert message in str(err.value)


def test_training_takes_one_group():
    with pytest.raises(ValueError, match="training takes exactly one group"):
        parse_groups(["A: 1 0:1 /d/a", "B: 1 0:1 /d/b"], "--train-weighted-split-paths", single=True)


def test_groups_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"--train-weighted-split-paths-path .*nope.txt: no such file"):
        read_groups_file(str(tmp_path / "nope.txt"), "--train-weighted-split-paths-path")
    two = tmp_path / "two.txt"
    two.write_text('"A: 1 0:1 /d/a"\n"B: 1 0:1 /d/b"\n')
    with pytest.raises(ValueError, match="2 lines, the forks read exactly one"):
        read_groups_file(str(two), "--valid-weighted-split-paths-path")


def test_document_range_rounds_half_to_even():
    # Python's round, as the forks' get_split_by_range_: 0.25 * 10 = 2.5 -> 2, 0.35 * 10 = 3.5 -> 4
    assert document_range(GroupEntry(1, 0.25, 0.35, "p"), 10) == (2, 4)
    assert document_range(GroupEntry(1, 0.0, 1.0, "p"), 7) == (0, 7)
    assert document_range(GroupEntry(1, 0.15, 0.85, "p"), 300) == (45, 255)


def test_entry_sample_counts_as_the_forks():
    weights, counts = entry_sample_counts([0.6, 0.3, 0.1], 1000)
    assert counts == [603, 302, 101]  # ceil(1000 · w · 1.005)
    total = 0.6 + 0.3 + 0.1  # summed in order as the forks' analyze_data_prefix: 0.9999999999999999
    assert weights == [0.6 / total, 0.3 / total, 0.1 / total]


# ------------------------------------------------------------------ datasets vs megatron-core
def test_groups_match_megatron_core(tmp_path, corpora, stub_tokenizer):
    a, b, c = corpora["a"], corpora["b"], corpora["c"]
    train = f"TRAIN: 0.6 0:0.9 {a}, 0.3 0.15:0.85 {b}, 0.1 0:0.95 {c}"
    valid = [f"VALID_A: 1 0.9:1 {a}", f"VALID_BC: 2 0.85:1 {b}, 1 0.95:1 {c}"]
    test = [f"TEST_C: 1 0.95:1 {c}"]
    sizes = (700, 90, 30)
    got = build_pretraining_datasets(seq_length=SEQ, seed=SEED, num_samples=sizes, tokenizer=stub_tokenizer,
                                     cache_dir=str(tmp_path / "cache"), weighted_groups=(train, valid, test))
    ref_train = core_group(train, "--train-weighted-split-paths", sizes[0], Split.train, stub_tokenizer)
    assert_same_indices(ref_train, got[0])
    assert_same_samples(ref_train, got[0])
    assert [d.document_range for d in got[0].datasets] == [(0, 270), (22, 128), (0, 190)]
    assert [len(d) >= n for d, n in zip(got[0].datasets, (422, 212, 71))] == [True] * 3
    for texts, ours, split, n in ((valid, got[1], Split.valid, sizes[1]), (test, got[2], Split.test, sizes[2])):
        assert [g.name for g in ours] == [parse_group(t, "f").name for t in texts]
        for text, named in zip(texts, ours):
            assert isinstance(named, NamedDataset)
            ref = core_group(text, "--valid-weighted-split-paths", n, split, stub_tokenizer)
            assert_same_indices(ref, named.dataset)
            assert_same_samples(ref, named.dataset)


def test_lone_entry_ignores_its_weight(tmp_path, corpora, stub_tokenizer):
    a = corpora["a"]
    got = build_pretraining_datasets(seq_length=SEQ, seed=SEED, num_samples=(300, 20, 0), tokenizer=stub_tokenizer,
                                     cache_dir=str(tmp_path / "cache"),
                                     weighted_groups=(f"T: 0.2 0.1:0.7 {a}", None, None))
    ref = core_group(f"T: 0.2 0.1:0.7 {a}", "--train-weighted-split-paths", 300, Split.train, stub_tokenizer)
    assert got[0].document_range == (30, 210) and got[1] is None and got[2] is None
    assert_same_indices(ref, got[0])


# ------------------------------------------------------------------ bad input at build time
def test_missing_path_names_flag_and_group(tmp_path, corpora, stub_tokenizer):
    with pytest.raises(FileNotFoundError, match=r"--valid-weighted-split-paths: group 'V': dataset prefix .*nope"):
        build_pretraining_datasets(seq_length=SEQ, num_samples=(10, 10, 0), tokenizer=stub_tokenizer,
                                   cache_dir=str(tmp_path / "cache"),
                                   weighted_groups=(f"T: 1 0:1 {corpora['a']}", [f"V: 1 0:1 {tmp_path}/nope"], None))


def test_empty_range_after_rounding(tmp_path, corpora, stub_tokenizer):
    tiny = corpora["tiny"]  # 12 documents: 0.5:0.52 rounds to [6, 6)
    with pytest.raises(ValueError, match=r"group 'T': range 0.5:0.52 of .*holds no document \(documents \[6, 6\)"):
        build_pretraining_datasets(seq_length=16, num_samples=(10, 0, 0), tokenizer=stub_tokenizer,
                                   cache_dir=str(tmp_path / "cache"), weighted_groups=(f"T: 1 0.5:0.52 {tiny}",))


def test_zero_weight_entry_refused(tmp_path, corpora, stub_tokenizer):
    a, c = corpora["a"], corpora["c"]
    with pytest.raises(ValueError, match=r"--train-weighted-split-paths: group 'T': .*c with weight 0"):
        build_pretraining_datasets(seq_length=SEQ, num_samples=(10, 0, 0), tokenizer=stub_tokenizer,
                                   cache_dir=str(tmp_path / "cache"), weighted_groups=(f"T: 1 0:1 {a}, 0 0:1 {c}",))


def test_exclusive_with_data_path(tmp_path, corpora, stub_tokenizer):
    with pytest.raises(ValueError, match="exclusive"):
        build_pretraining_datasets([corpora["a"]], "99,1,0", SEQ, num_samples=(10, 10, 0), tokenizer=stub_tokenizer,
                                   weighted_groups=(f"T: 1 0:1 {corpora['a']}",))


# ------------------------------------------------------------------ translation and config
MODEL = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
         "--micro-batch-size 2 --global-batch-size 16 --train-iters 100 --lr 1e-3 --save /ckpt/run "
         "--tokenizer-type NullTokenizer --vocab-size 100").split()


def test_inline_flags_translate():
    result = translate(MODEL + ["--train-weighted-split-paths", "TRAIN: 0.7 0:0.95 /d/a, 0.3 0:1 /d/b",
                                "--valid-weighted-split-paths", "V_A: 1 0.95:1 /d/a", "V_B: 1 0.9:1 /d/b"],
                       world_size=4)
    assert result.ok, result.problems()
    d = result.config.data
    assert (d.train_weighted_split_paths, d.valid_weighted_split_paths, d.test_weighted_split_paths) == (
        "TRAIN: 0.7 0:0.95 /d/a, 0.3 0:1 /d/b", ["V_A: 1 0.95:1 /d/a", "V_B: 1 0.9:1 /d/b"], None)
    assert d.data_manager_type == "mg" and d.dataset is None


@pytest.mark.parametrize("extra, message", [
    (["--train-weighted-split-paths", "T: 1 0:1 /d/a", "--data-path", "/d/a"],
     "--train-weighted-split-paths and --data-path are exclusive"),
    (["--train-weighted-split-paths", "T: 1 0:1 /d/a", "--split", "99,1,0"], "drop --split"),
    (["--train-weighted-split-paths", "T: 1 0.5:0.2 /d/a"], "needs 0 <= START < END <= 1"),
    (["--valid-weighted-split-paths", "V: 1 0:1 /d/a"], "needs the training group"),
])
def test_translation_refuses(extra, message):
    result = translate(MODEL + extra, world_size=4)
    assert not result.ok and len(result.problems()) == 1, result.problems()
    assert message in result.problems()[0]


def test_groups_file_content_is_checked_at_translation(tmp_path):
    bad = tmp_path / "train.txt"
    bad.write_text('"TRAIN: 1 0:1 /d/a 1 0:1 /d/b"\n')
    result = translate(MODEL + ["--train-weighted-split-paths-path", str(bad)], world_size=4)
    assert not result.ok
    assert result.problems()[0].startswith(f"--train-weighted-split-paths-path {bad}: 'TRAIN: 1 0:1 /d/a 1 0:1 /d/b'")


def test_config_refuses_groups_beside_data_path(tmp_path):
    with pytest.raises(ConfigError, match="weighted split groups and dataset are exclusive"):
        build_config({"output_dir": str(tmp_path), "data_manager_type": "mg", "dataset": "/d/a",
                      "train_weighted_split_paths": "T: 1 0:1 /d/a"})


def test_a_group_file_not_on_this_machine_is_kept_and_read_when_the_data_is_built(tmp_path):
    """bigcode's scripts name group files on their cluster (/fsx/...): converted elsewhere, the config keeps the path
    (a warning says so) and the data reads it at run time; a file still missing then is an error naming it."""
    from fsdp2_core.config import ConfigError
    from fsdp2_core.train.data import _weighted_groups

    missing = str(tmp_path / "later" / "train.txt")
    result = translate(MODEL + ["--train-weighted-split-paths-path", missing], world_size=4)
    assert result.ok, result.problems()
    d = result.config.data
    assert (d.train_weighted_split_paths, d.train_weighted_split_paths_path) == (None, missing)
    assert any("not on this machine" in n and missing in n for n in result.notes)
    with pytest.raises((ConfigError, ValueError), match="train_weighted_split_paths_path .*no such file"):
        _weighted_groups(d)
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "train.txt").write_text('"TRAIN: 0.7 0:0.95 /d/a, 0.3 0:1 /d/b"\n')
    assert _weighted_groups(d) == ("TRAIN: 0.7 0:0.95 /d/a, 0.3 0:1 /d/b", None, None)

