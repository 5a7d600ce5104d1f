"""Our IndexedDataset / IndexedDatasetBuilder against megatron-core 0.16.1: bytes and reads."""
import os
import pickle

import numpy as np
import pytest
import torch

from fsdp2_core.data.megatron import indexed_dataset as ours

mg = pytest.importorskip("megatron.core.datasets.indexed_dataset")

ALL_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.int64, np.float64, np.float32, np.uint16]


def _documents(dtype, seed=0):
    rng = np.random.default_rng(seed)
    high = min(100, np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 100
    docs = []
    for _ in range(25):
        n_seq = int(rng.integers(1, 4))
        docs.append([rng.integers(0, high, int(rng.integers(0, 30))).astype(dtype) for _ in range(n_seq)])
    return docs


def _write(module, prefix, docs, dtype, style, multimodal=False):
    builder = module.IndexedDatasetBuilder(prefix + ".bin", dtype=dtype, multimodal=multimodal)
    for d, doc in enumerate(docs):
        modes = [(d + k) % 3 for k in range(len(doc))]
        if style == "item":
            for k, seq in enumerate(doc):
                builder.add_item(torch.from_numpy(seq.copy()), mode=modes[k]) if multimodal else \
                    builder.add_item(torch.from_numpy(seq.copy()))
            builder.end_document()
        else:
            lengths = [len(s) for s in doc]
            flat = np.concatenate(doc)
            if multimodal:
                builder.add_document(torch.from_numpy(flat), lengths, modes)
            else:
                builder.add_document(torch.from_numpy(flat), lengths)
    builder.finalize(prefix + ".idx")


def _bytes(prefix):
    with open(prefix + ".bin", "rb") as b, open(prefix + ".idx", "rb") as i:
        return b.read(), i.read()


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("style", ["item", "document"])
def test_builder_byte_identical_every_dtype(tmp_path, dtype, style):
    docs = _documents(dtype)
    _write(mg, str(tmp_path / "mg"), docs, dtype, style)
    _write(ours, str(tmp_path / "ours"), docs, dtype, style)
    assert _bytes(str(tmp_path / "ours")) == _bytes(str(tmp_path / "mg"))
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_builder_byte_identical_multimodal(tmp_path):
    docs = _documents(np.int32, seed=3)
    for style in ("item", "document"):
        _write(mg, str(tmp_path / f"mg_{style}"), docs, np.int32, style, multimodal=True)
        _write(ours, str(tmp_path / f"ours_{style}"), docs, np.int32, style, multimodal=True)
        assert _bytes(str(tmp_path / f"ours_{style}")) == _bytes(str(tmp_path / f"mg_{style}"))
    ds = ours.IndexedDataset(str(tmp_path / "mg_item"), multimodal=True)
    ref = mg.IndexedDataset(str(tmp_path / "mg_item"), multimodal=True)
    assert np.array_equal(ds.sequence_modes, ref.index.sequence_modes)
    tokens, mode = ds[4]
    ref_tokens, ref_mode = ref[4]
    assert np.array_equal(tokens, ref_tokens) and mode == ref_mode


def test_merge_add_index_byte_identical(tmp_path):
    parts = []
    for k in range(3):
        prefix = str(tmp_path / f"part{k}")
        _write(mg, prefix, _documents(np.uint16, seed=k), np.uint16, "document")
        parts.append(prefix)
    for module, name in ((mg, "mg_merged"), (ours, "ours_merged")):
        builder = module.IndexedDatasetBuilder(str(tmp_path / name) + ".bin", dtype=np.uint16)
        for prefix in parts:
            builder.add_index(prefix)
        builder.finalize(str(tmp_path / name) + ".idx")
    assert _bytes(str(tmp_path / "ours_merged")) == _bytes(str(tmp_path / "mg_merged"))


@pytest.mark.parametrize("writer", ["mg", "ours"])
def test_reads_identical_to_megatron(tmp_path, writer):
    prefix = str(tmp_path / "corpus")
    _write(mg if writer == "mg" else ours, prefix, _documents(np.int32, seed=7), np.int32, "document")
    a, b = ours.IndexedDataset(prefix), mg.IndexedDataset(prefix)
    assert len(a) == len(b)
    assert np.array_equal(a.sequence_lengths, b.sequence_lengths)
    assert np.array_equal(a.sequence_pointers, b.index.sequence_pointers)
    assert np.array_equal(a.document_indices, b.document_indices)
    for i in range(len(a)):
        assert np.array_equal(a[i], b[i])
        n = int(a.sequence_lengths[i])
        for off, length in ((0, None), (n // 2, None), (n // 3, max(0, n - n // 3 - 1))):
            assert np.array_equal(a.get(i, off, length), b.get(i, offset=off, length=length))
    for sl in (slice(0, len(a)), slice(3, 9), slice(5, 5)):
        assert all(np.array_equal(x, y) for x, y in zip(a[sl], b[sl]))
        assert len(a[sl]) == len(b[sl])
    with pytest.raises(ValueError, match="contiguous"):
        a[0:10:2]
    # the file pointer reader gives the same tokens as the memory map
    c = ours.IndexedDataset(prefix, mmap=False)
    assert all(np.array_equal(c[i], a[i]) for i in range(len(a)))
    d = pickle.loads(pickle.dumps(a))
    assert np.array_equal(d[3], a[3])


def test_empty_dataset_round_trip(tmp_path):
    prefix = str(tmp_path / "empty")
    builder = ours.IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    builder.finalize(prefix + ".idx")
    ds = ours.IndexedDataset(prefix)
    assert len(ds) == 0 and list(ds.document_indices) == [0]
    builder = mg.IndexedDatasetBuilder(str(tmp_path / "mg_empty.bin"), dtype=np.uint16)
    builder.finalize(str(tmp_path / "mg_empty.idx"))  # megatron-core cannot open it (mmap of 0 bytes)
    assert _bytes(prefix) == _bytes(str(tmp_path / "mg_empty"))


def _valid_pair(tmp_path):
    prefix = str(tmp_path / "good")
    _write(ours, prefix, _documents(np.int32, seed=1), np.int32, "document")
    return prefix


def test_bad_magic_version_truncation_and_size(tmp_path):
    prefix = _valid_pair(tmp_path)
    idx = open(prefix + ".idx", "rb").read()
    cases = {
        "magic": (b"XXIDIDX\x00\x00" + idx[9:], "not a Megatron MMIDIDX"),
        "version": (idx[:9] + (2).to_bytes(8, "little") + idx[17:], "version 2"),
        "truncated": (idx[: len(idx) - 5], "truncated"),
        "header": (idx[:20], "truncated"),
        "dtype": (idx[:17] + bytes([42]) + idx[18:], "dtype code 42"),
    }
    for name, (data, message) in cases.items():
        bad = str(tmp_path / name)
        open(bad + ".idx", "wb").write(data)
        open(bad + ".bin", "wb").write(open(prefix + ".bin", "rb").read())
        with pytest.raises(ours.IndexedDatasetError, match=message) as info:
            ours.IndexedDataset(bad)
        if name not in ("dtype",):
            assert bad in str(info.value)
    short = str(tmp_path / "shortbin")
    open(short + ".idx", "wb").write(idx)
    open(short + ".bin", "wb").write(open(prefix + ".bin", "rb").read()[:-4])
    with pytest.raises(ours.IndexedDatasetError, match="shortbin.bin has .* bytes but"):
        ours.IndexedDataset(short)
    with pytest.raises(ours.IndexedDatasetError, match="missing .*nothing.bin"):
        ours.IndexedDataset(str(tmp_path / "nothing"))


def test_dtype_too_narrow_is_refused(tmp_path):
    builder = ours.IndexedDatasetBuilder(str(tmp_path / "narrow.bin"), dtype=np.uint16)
    with pytest.raises(ours.IndexedDatasetError, match="70000 does not fit the uint16 .*narrow.bin"):
        builder.add_document(np.array([1, 70000]), [2])
    with pytest.raises(ours.IndexedDatasetError, match="-1 does not fit"):
        builder.add_item(torch.tensor([-1, 2]))
    builder.abort()
    assert os.listdir(tmp_path) == []


def test_interrupted_build_leaves_no_final_files(tmp_path):
    builder = ours.IndexedDatasetBuilder(str(tmp_path / "x.bin"), dtype=np.int32)
    builder.add_document(np.arange(10), [10])
    assert not os.path.exists(tmp_path / "x.bin")  # written under a temporary name until finalize
    builder.finalize(str(tmp_path / "x.idx"))
    assert sorted(os.listdir(tmp_path)) == ["x.bin", "x.idx"]


def test_optimal_dtype_rule():
    assert ours.DType.optimal_dtype(65499) is np.uint16
    assert ours.DType.optimal_dtype(65500) is np.int32
    for code in range(1, 9):
        assert ours.DType.dtype_from_code(code) is mg.DType.dtype_from_code(code)
