"""Sample order of build_pretraining_datasets against megatron-core's GPTDataset builder."""
import os

import numpy as np
import pytest

from fsdp2_core.data.megatron import (
    build_pretraining_datasets,
    gpt_indices,
    megatron_sample_counts,
    native,
    parse_split,
)
from fsdp2_core.data.megatron.gpt_dataset import GPTDataset

gpt = pytest.importorskip("megatron.core.datasets.gpt_dataset")
from megatron.core.datasets import helpers_cpp  # noqa: E402  (after the importorskip that guards them)
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder  # noqa: E402
from megatron.core.datasets.utils import get_blend_from_list  # noqa: E402

KEYS = ("tokens", "labels", "loss_mask", "position_ids")


def megatron(tmp_path, stub, data_path=None, split=None, seq=64, seed=1234, sizes=(None,) * 3,
             per_split=None, mock=False, **flags):
    flags.setdefault("reset_position_ids", False)
    flags.setdefault("reset_attention_mask", False)
    flags.setdefault("eod_mask_loss", False)
    config = gpt.GPTDatasetConfig(
        random_seed=seed, sequence_length=seq,
        blend=get_blend_from_list(data_path) if data_path else None,
        blend_per_split=[get_blend_from_list(p) if p else None for p in per_split] if per_split else None,
        split=split if data_path else None, tokenizer=stub,
        # no path_to_cache: megatron's BlendedDataset would need torch.distributed for it
        path_to_cache=None, create_attention_mask=flags.pop("create_attention_mask", False), **flags,
    )
    cls = gpt.MockGPTDataset if mock else gpt.GPTDataset
    return BlendedMegatronDatasetBuilder(cls, list(sizes), lambda: True, config).build()


def assert_same(ref, got, keys=KEYS, limit=None):
    for s in range(3):
        if ref[s] is None:
            assert got[s] is None, f"split {s}: megatron has None"
            continue
        assert got[s] is not None and len(got[s]) == len(ref[s]), (s, len(ref[s]), len(got[s]))
        n = len(ref[s]) if limit is None else min(limit, len(ref[s]))
        for i in range(n):
            a, b = ref[s][i], got[s][i]
            for k in keys:
                assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), (s, i, k)
            if "dataset_id" in a:
                assert int(a["dataset_id"]) == int(b["dataset_id"])


def assert_same_indices(ref_ds, our_ds):
    if hasattr(ref_ds, "datasets"):
        assert np.array_equal(ref_ds.dataset_index, our_ds.dataset_index)
        assert np.array_equal(ref_ds.dataset_sample_index, our_ds.dataset_sample_index)
        assert our_ds.dataset_index.dtype == ref_ds.dataset_index.dtype
        for r, o in zip(ref_ds.datasets, our_ds.datasets):
            assert_same_indices(r, o)
        return
    for name in ("document_index", "sample_index", "shuffle_index"):
        r, o = getattr(ref_ds, name), getattr(our_ds, name)
        assert o.dtype == r.dtype and np.array_equal(r, o), name


CASES = {
    "single_prefix": dict(data_path=["a"], split="90,8,2", sizes=(500, 50, 10)),
    "weighted_blend": dict(data_path=["0.3", "a", "0.7", "b"], split="90,8,2", sizes=(700, 60, 10)),
    "unweighted_multi": dict(data_path=["a", "b", "c"], split="80,15,5", sizes=(400, 50, 20)),
    "many_epochs": dict(data_path=["tiny"], split="100,0,0", sizes=(230, 0, 0), seq=16),
    "short_last_doc": dict(data_path=["short_last"], split="70,20,10", sizes=(120, 40, 20), seq=32),
    "multi_sequence_docs": dict(data_path=["multi"], split="90,8,2", sizes=(150, 20, 5), seq=48),
    "valid_and_test_large": dict(data_path=["a"], split="50,30,20", sizes=(100, 900, 700), seed=9),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sample_order_matches_megatron(tmp_path, corpora, stub_tokenizer, case):
    spec = dict(CASES[case])
    spec["data_path"] = [corpora.get(x, x) for x in spec["data_path"]]
    seq = spec.pop("seq", 64)
    seed = spec.pop("seed", 1234)
    ref = megatron(tmp_path, stub_tokenizer, seq=seq, seed=seed, **spec)
    got = build_pretraining_datasets(
        spec["data_path"], spec["split"], seq, seed, spec["sizes"],
        cache_dir=str(tmp_path / "cache"), tokenizer=stub_tokenizer,
    )
    assert_same(ref, got)
    for r, o in zip(ref, got):
        if r is not None:
            assert_same_indices(r, o)


def test_many_epochs_case_uses_separate_final_epoch(corpora):
    from fsdp2_core.data.megatron.indexed_dataset import IndexedDataset

    tokens = int(IndexedDataset(corpora["tiny"]).sequence_lengths.sum())
    epochs = gpt_indices.num_epochs_needed(tokens, 230, 16, 1)
    separate, _ = gpt_indices.separate_final_epoch(epochs, tokens, 230, 16, 1)
    assert epochs > 3 and separate


def test_per_split_paths_match_megatron(tmp_path, corpora, stub_tokenizer):
    a, b, c = corpora["a"], corpora["b"], corpora["c"]
    per_split = [[a, b], ["1", c, "2", b], [c]]
    ref = megatron(tmp_path, stub_tokenizer, seed=7, sizes=(300, 40, 20), per_split=per_split)
    got = build_pretraining_datasets(
        None, None, 64, 7, (300, 40, 20), cache_dir=str(tmp_path / "cache"),
        tokenizer=stub_tokenizer, train_data_path=per_split[0], valid_data_path=per_split[1],
        test_data_path=per_split[2],
    )
    assert_same(ref, got)


def test_exhaustive_unweighted_blend_without_sizes(tmp_path, corpora, stub_tokenizer):
    path = [corpora["a"], corpora["c"]]
    ref = megatron(tmp_path, stub_tokenizer, data_path=path, split="90,10,0")
    got = build_pretraining_datasets(path, "90,10,0", 64, 1234, (None, None, None),
                                     cache_dir=str(tmp_path / "cache"), tokenizer=stub_tokenizer)
    assert got[2] is None
    assert_same(ref, got)


def test_flags_match_megatron(tmp_path, corpora, stub_tokenizer):
    flags = dict(reset_position_ids=True, reset_attention_mask=True, eod_mask_loss=True)
    ref = megatron(tmp_path, stub_tokenizer, data_path=[corpora["c"]], split="90,8,2",
                   sizes=(200, 30, 10), create_attention_mask=True, **flags)
    got = build_pretraining_datasets([corpora["c"]], "90,8,2", 64, 1234, (200, 30, 10),
                                     cache_dir=str(tmp_path / "cache"), tokenizer=stub_tokenizer,
                                     create_attention_mask=True, **flags)
    assert_same(ref, got, keys=KEYS + ("attention_mask",))
    # varlen form: segment lengths end after every eod and sum to the sequence length
    sample = got[0][0]
    lengths = sample["seq_lengths"].numpy()
    lengths = lengths[lengths > 0]
    assert lengths.sum() == 64
    ends = np.cumsum(lengths)[:-1] - 1
    assert (sample["tokens"].numpy()[ends] == stub_tokenizer.eod).all()
    assert (sample["position_ids"].numpy()[ends + 1] == 0).all()


def test_partial_validation_sequence_and_pad_match_megatron(tmp_path, corpora, stub_tokenizer):
    stub = type(stub_tokenizer)(pad=5)
    ref = megatron(tmp_path, stub, data_path=[corpora["short_last"]], split="50,50,0", seq=32,
                   sizes=(10, 30, 0), drop_last_partial_validation_sequence=False)
    got = build_pretraining_datasets([corpora["short_last"]], "50,50,0", 32, 1234, (10, 30, 0),
                                     cache_dir=str(tmp_path / "cache"), tokenizer=stub,
                                     drop_last_partial_validation_sequence=False)
    assert_same(ref, got)


def test_mock_data_matches_megatron(tmp_path, stub_tokenizer):
    ref = megatron(tmp_path, stub_tokenizer, sizes=(64, 16, 8), seq=128, mock=True)
    got = build_pretraining_datasets(None, None, 128, 1234, (64, 16, 8), tokenizer=stub_tokenizer,
                                     mock=True)
    assert_same(ref, got, limit=64)


def test_blending_indices_match_megatron_native_and_python(monkeypatch):
    rng = np.random.default_rng(0)
    for n, size in ((2, 5000), (3, 4000), (7, 3000), (1, 100)):
        weights = rng.random(n)
        weights = (weights / weights.sum()).tolist()
        ref_i = np.zeros(size, np.int16)
        ref_s = np.zeros(size, np.int64)
        helpers_cpp.build_blending_indices(ref_i, ref_s, np.array(weights), n, size, False)
        got_i, got_s = native.build_blending_indices(weights, size)
        assert np.array_equal(ref_i, got_i) and np.array_equal(ref_s, got_s)
        sizes = rng.integers(1, 300, n)
        ref_i = np.zeros(int(sizes.sum()), np.int16)
        ref_s = np.zeros(int(sizes.sum()), np.int64)
        helpers_cpp.build_exhaustive_blending_indices(ref_i, ref_s, sizes.astype(np.int64), n)
        got_i, got_s = native.build_exhaustive_blending_indices(sizes)
        assert np.array_equal(ref_i, got_i) and np.array_equal(ref_s, got_s)
        # the pure-Python fallback gives the same arrays
        monkeypatch.setattr(native, "_LIB", None)
        monkeypatch.setattr(native, "_LIB_TRIED", True)
        py_i, py_s = native.build_blending_indices(weights, min(size, 1500))
        ref_i2 = np.zeros(min(size, 1500), np.int16)
        ref_s2 = np.zeros(min(size, 1500), np.int64)
        helpers_cpp.build_blending_indices(ref_i2, ref_s2, np.array(weights), n, len(ref_i2), False)
        assert np.array_equal(py_i, ref_i2) and np.array_equal(py_s, ref_s2)
        py_i, py_s = native.build_exhaustive_blending_indices(sizes)
        assert np.array_equal(py_i, got_i) and np.array_equal(py_s, got_s)
        monkeypatch.undo()


@pytest.mark.parametrize("use_native", [True, False])
@pytest.mark.parametrize("extra", [0, 1])
@pytest.mark.parametrize("drop_last", [True, False])
def test_sample_index_matches_megatron_helper(extra, drop_last, use_native, monkeypatch):
    if not use_native:
        monkeypatch.setattr(native, "_LIB", None)
        monkeypatch.setattr(native, "_LIB_TRIED", True)
    else:
        assert native.native_available()
    rng = np.random.default_rng(extra * 2 + drop_last)
    lengths = rng.integers(0, 50, 400).astype(np.int32)  # zero-length documents included
    lengths[0] = 7
    doc_index = np.tile(np.arange(400, dtype=np.int32), 3)
    rng.shuffle(doc_index)
    tokens = int(lengths.sum())
    for seq in (2, 7, 33, 128):
        ref = helpers_cpp.build_sample_idx_int32(lengths, doc_index, seq, 3, tokens, drop_last, extra)
        got = gpt_indices.build_sample_index(lengths, doc_index, seq, 3, tokens, drop_last, extra)
        assert got.dtype == ref.dtype and np.array_equal(ref, got), seq


def test_cache_is_reused_and_keyed_by_config(tmp_path, corpora, stub_tokenizer, monkeypatch):
    cache = tmp_path / "cache"
    args = ([corpora["a"]], "90,8,2", 64, 1234, (100, 10, 5))
    first = build_pretraining_datasets(*args, cache_dir=str(cache), tokenizer=stub_tokenizer)
    files = sorted(os.listdir(cache))
    # 3 splits × (3 index arrays + description), and the corpus's token id range (scanned once per file)
    assert len(files) == 3 * 4 + 1 and not [f for f in files if ".tmp" in f]
    assert [f for f in files if f.endswith("-token_id_range.json")]
    calls = []
    original = GPTDataset._build_indices
    monkeypatch.setattr(GPTDataset, "_build_indices", lambda self: calls.append(1) or original(self))
    second = build_pretraining_datasets(*args, cache_dir=str(cache), tokenizer=stub_tokenizer)
    assert calls == [] and isinstance(second[0].sample_index, np.memmap)
    assert np.array_equal(first[0][7]["tokens"], second[0][7]["tokens"])
    build_pretraining_datasets([corpora["a"]], "90,8,2", 64, 99, (100, 10, 5),
                               cache_dir=str(cache), tokenizer=stub_tokenizer)
    assert len(calls) == 3 and len(os.listdir(cache)) == 2 * 3 * 4 + 1


def test_no_shuffle_keeps_corpus_order(tmp_path, corpora, stub_tokenizer):
    from fsdp2_core.data.megatron.indexed_dataset import IndexedDataset

    train, _, _ = build_pretraining_datasets([corpora["a"]], "100,0,0", 64, 1, (50, 0, 0),
                                             cache_dir=str(tmp_path), tokenizer=stub_tokenizer,
                                             shuffle=False)
    flat = np.concatenate([IndexedDataset(corpora["a"])[i] for i in range(10)])
    assert np.array_equal(train[0]["tokens"].numpy(), flat[:64])
    assert np.array_equal(train[1]["tokens"].numpy(), flat[64:128])


def test_sample_counts_as_megatron_training_loop():
    assert megatron_sample_counts(1000, 32, 100, 10) == (32000, 11 * 10 * 32, 320)
    assert megatron_sample_counts(None, 16, 50, 2, train_samples=1600) == (1600, 3 * 2 * 16, 32)


def test_bad_inputs_have_clear_errors(tmp_path, corpora, stub_tokenizer):
    with pytest.raises(ValueError, match="split 'abc' does not parse"):
        parse_split("abc")
    with pytest.raises(ValueError, match="split '1,2,3,4' does not parse"):
        parse_split("1,2,3,4")
    assert parse_split("99,1") == [0.99, 0.01, 0.0]
    with pytest.raises(ValueError, match="'0.7' is a number where a dataset prefix belongs"):
        build_pretraining_datasets(["0.3", "0.7"], "1,0,0", 64, 1, (10, 0, 0))
    with pytest.raises(FileNotFoundError, match="missing .*nope.bin"):
        build_pretraining_datasets([str(tmp_path / "nope")], "1,0,0", 64, 1, (10, 0, 0))
    with pytest.raises(ValueError, match=r"valid split\) is empty"):
        build_pretraining_datasets([corpora["tiny"]], "999,1,0", 16, 1, (10, 10, 0),
                                   cache_dir=str(tmp_path), tokenizer=stub_tokenizer)
