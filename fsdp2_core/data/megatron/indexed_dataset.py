"""Megatron `MMIDIDX` indexed datasets: a `.bin` of raw token ids and a `.idx` describing them.

File layout of the `.idx` (version 1, little endian), as Megatron-LM writes it:

    9 bytes   magic  b"MMIDIDX\\x00\\x00"
    8 bytes   version, uint64 == 1
    1 byte    dtype code of the tokens in the `.bin` (see `DType`)
    8 bytes   sequence count S, uint64
    8 bytes   document count D + 1, uint64 (the document index starts with a 0)
    S int32   sequence lengths (in tokens)
    S int64   sequence pointers (byte offsets into the `.bin`)
    D+1 int64 document indices: document d holds sequences [doc[d], doc[d+1])
    S int8    sequence modes (multimodal files only)

Everything is memory-mapped; opening a dataset reads only the 34-byte header.
"""
from __future__ import annotations

import array
import os
import shutil
import struct
from enum import Enum
from typing import Iterable, List, Optional, Sequence, Tuple, Type, Union

import numpy as np

from ..cache import cached_json

_INDEX_HEADER = b"MMIDIDX\x00\x00"
_HEADER_BYTES = 9 + 8 + 1 + 8 + 8  # magic, version, dtype code, sequence count, document count


class IndexedDatasetError(ValueError):
    """A `.bin`/`.idx` pair that cannot be read or written as asked."""


class DType(Enum):
    """Numeric codes of the token dtype stored in the `.idx` header (Megatron's table)."""

    uint8 = 1
    int8 = 2
    int16 = 3
    int32 = 4
    int64 = 5
    float64 = 6
    float32 = 7
    uint16 = 8

    @classmethod
    def code_from_dtype(cls, value) -> int:
        name = np.dtype(value).name
        if name not in cls.__members__:
            raise IndexedDatasetError(
                f"dtype {name} cannot be stored in a Megatron .idx file; "
                f"use one of {sorted(cls.__members__)}"
            )
        return cls[name].value

    @classmethod
    def dtype_from_code(cls, value: int) -> Type[np.number]:
        try:
            return getattr(np, cls(value).name)
        except ValueError:
            raise IndexedDatasetError(
                f"unknown dtype code {value}; Megatron .idx files use codes 1-8"
            ) from None

    @staticmethod
    def size(key: Union[int, Type[np.number]]) -> int:
        if isinstance(key, (int, np.integer)):
            return np.dtype(DType.dtype_from_code(int(key))).itemsize
        return np.dtype(key).itemsize

    @staticmethod
    def optimal_dtype(cardinality: Optional[int]) -> Type[np.number]:
        """uint16 when the vocabulary is below 65500 tokens, int32 otherwise (Megatron's rule)."""
        if cardinality is not None and cardinality < 65500:
            return np.uint16
        return np.int32


def get_idx_path(path_prefix: str) -> str:
    return path_prefix + ".idx"


def get_bin_path(path_prefix: str) -> str:
    return path_prefix + ".bin"


def _as_buffer(path: str) -> Union[np.memmap, np.ndarray]:
    """Memory-map a file read-only (an empty file gives an empty array: mmap refuses size 0)."""
    if os.path.getsize(path) == 0:
        return np.empty(0, dtype=np.uint8)
    return np.memmap(path, dtype=np.uint8, mode="r")


class _Index:
    """The parsed `.idx`: arrays are views into a read-only memory map."""

    def __init__(self, idx_path: str, multimodal: bool) -> None:
        if not os.path.isfile(idx_path):
            raise IndexedDatasetError(f"index file {idx_path} does not exist")
        file_size = os.path.getsize(idx_path)
        with open(idx_path, "rb") as stream:
            header = stream.read(_HEADER_BYTES)
        if len(header) < 9 or header[:9] != _INDEX_HEADER:
            raise IndexedDatasetError(
                f"{idx_path} is not a Megatron MMIDIDX index (magic {header[:9]!r}, expected "
                f"{_INDEX_HEADER!r}); rebuild it with tools/preprocess_data.py"
            )
        if len(header) < _HEADER_BYTES:
            raise IndexedDatasetError(
                f"{idx_path} is truncated: {file_size} bytes, shorter than the {_HEADER_BYTES}-byte "
                "header; rebuild it with tools/preprocess_data.py"
            )
        (version,) = struct.unpack("<Q", header[9:17])
        if version != 1:
            raise IndexedDatasetError(
                f"{idx_path} has index version {version}; only version 1 (Megatron-LM MMIDIDX) "
                "is supported"
            )
        self.dtype = DType.dtype_from_code(header[17])
        self.dtype_size = np.dtype(self.dtype).itemsize
        self.sequence_count, self.document_count = struct.unpack("<QQ", header[18:34])
        s, d = self.sequence_count, self.document_count
        expected = _HEADER_BYTES + s * 4 + s * 8 + d * 8 + (s if multimodal else 0)
        if file_size < expected:
            raise IndexedDatasetError(
                f"{idx_path} is truncated: {file_size} bytes but its header announces {s} "
                f"sequences and {d} document entries ({expected} bytes"
                f"{', multimodal' if multimodal else ''}); rebuild it"
            )
        buffer = np.memmap(idx_path, dtype=np.uint8, mode="r")
        offset = _HEADER_BYTES
        self.sequence_lengths = np.frombuffer(buffer, np.int32, s, offset)
        offset += s * 4
        self.sequence_pointers = np.frombuffer(buffer, np.int64, s, offset)
        offset += s * 8
        self.document_indices = np.frombuffer(buffer, np.int64, d, offset)
        offset += d * 8
        self.sequence_modes = np.frombuffer(buffer, np.int8, s, offset) if multimodal else None
        self._buffer = buffer
        if d == 0 or int(self.document_indices[-1]) != s:
            last = int(self.document_indices[-1]) if d else None
            raise IndexedDatasetError(
                f"{idx_path} is inconsistent: the document index ends at {last} but there are "
                f"{s} sequences; rebuild it"
            )


class IndexedDataset:
    """Read a Megatron `.bin/.idx` pair (`path_prefix` without the extension).

    `ds[i]` is the i-th sequence as a numpy array (with its mode for multimodal files),
    `ds[a:b]` a list of sequences read in one go, `ds.get(i, offset, length)` part of one.
    """

    def __init__(self, path_prefix: str, multimodal: bool = False, mmap: bool = True) -> None:
        self._initialize(path_prefix, multimodal, mmap)

    def _initialize(self, path_prefix: str, multimodal: bool, mmap: bool) -> None:
        self.path_prefix = path_prefix
        self.multimodal = multimodal
        self.mmap = mmap
        idx_path, bin_path = get_idx_path(path_prefix), get_bin_path(path_prefix)
        missing = [p for p in (idx_path, bin_path) if not os.path.isfile(p)]
        if missing:
            raise IndexedDatasetError(
                f"dataset prefix {path_prefix!r}: missing {' and '.join(missing)}; pass the prefix "
                "without .bin/.idx, as written by tools/preprocess_data.py"
            )
        self.index = _Index(idx_path, multimodal)
        bin_size = os.path.getsize(bin_path)
        expected = 0
        if self.index.sequence_count:
            expected = int(self.index.sequence_pointers[-1]) + int(
                self.index.sequence_lengths[-1]
            ) * self.index.dtype_size
        if bin_size != expected:
            raise IndexedDatasetError(
                f"{bin_path} has {bin_size} bytes but {idx_path} describes {expected} bytes "
                f"({self.index.sequence_count} sequences of {np.dtype(self.index.dtype).name}); "
                "the pair does not belong together or one of them is truncated"
            )
        self._bin_path = bin_path
        self._bin = _as_buffer(bin_path) if mmap else None

    # pickling for DataLoader workers: reopen the maps instead of copying them
    def __getstate__(self):
        return (self.path_prefix, self.multimodal, self.mmap)

    def __setstate__(self, state) -> None:
        self._initialize(*state)

    def __len__(self) -> int:
        return self.index.sequence_count

    def _read(self, count: int, byte_offset: int) -> np.ndarray:
        if self._bin is not None:
            return np.frombuffer(self._bin, self.index.dtype, count, byte_offset)
        out = np.empty(count, dtype=self.index.dtype)
        with open(self._bin_path, "rb", buffering=0) as stream:
            stream.seek(byte_offset)
            stream.readinto(out)
        return out

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            if idx < 0:
                idx += len(self)
            if not 0 <= idx < len(self):
                raise IndexError(f"sequence {idx} out of range for {self.path_prefix} ({len(self)})")
            sequence = self._read(
                int(self.index.sequence_lengths[idx]), int(self.index.sequence_pointers[idx])
            )
            if self.index.sequence_modes is not None:
                return sequence, self.index.sequence_modes[idx]
            return sequence
        if isinstance(idx, slice):
            start, stop, step = idx.indices(len(self))
            if step != 1:
                raise ValueError("Slices into indexed_dataset must be contiguous")
            lengths = self.index.sequence_lengths[start:stop]
            if len(lengths) == 0:  # Megatron's split of nothing: one empty sequence
                sequences = [np.empty(0, dtype=self.index.dtype)]
            else:
                flat = self._read(int(lengths.sum()), int(self.index.sequence_pointers[start]))
                sequences = np.split(flat, np.cumsum(lengths)[:-1])
            if self.index.sequence_modes is not None:
                return sequences, self.index.sequence_modes[start:stop]
            return sequences
        raise TypeError(f"Unexpected type received for idx: {type(idx)}")

    def get(self, idx: int, offset: int = 0, length: Optional[int] = None):
        """Tokens [offset, offset + length) of sequence `idx` (to its end when length is None)."""
        pointer = int(self.index.sequence_pointers[idx])
        if length is None:
            length = int(self.index.sequence_lengths[idx]) - offset
        sequence = self._read(int(length), pointer + int(offset) * self.index.dtype_size)
        if self.index.sequence_modes is not None:
            return sequence, self.index.sequence_modes[idx]
        return sequence

    @property
    def dtype(self):
        return self.index.dtype

    @property
    def sequence_lengths(self) -> np.ndarray:
        return self.index.sequence_lengths

    @property
    def sequence_pointers(self) -> np.ndarray:
        return self.index.sequence_pointers

    @property
    def document_indices(self) -> np.ndarray:
        return self.index.document_indices

    def get_document_indices(self) -> np.ndarray:
        return self.index.document_indices

    def set_document_indices(self, document_indices: np.ndarray) -> None:
        self.index.document_indices = document_indices

    @property
    def sequence_modes(self) -> np.ndarray:
        if self.index.sequence_modes is None:
            raise IndexedDatasetError(
                f"{self.path_prefix} was opened without multimodal=True; it has no sequence modes"
            )
        return self.index.sequence_modes

    def check_sequences(self) -> None:
        """Every sequence has a length >= 0 and lies inside the `.bin` (O(sequences), once per run).

        Opening reads only the header; a damaged or hand-made `.idx` (a negative length, a pointer
        past the end) would otherwise train on wrong tokens without a word."""
        lengths, pointers = self.index.sequence_lengths, self.index.sequence_pointers
        if not len(lengths):
            return
        idx_path = get_idx_path(self.path_prefix)
        negative = np.flatnonzero(lengths < 0)
        if len(negative):
            i = int(negative[0])
            raise IndexedDatasetError(
                f"{idx_path} is damaged: sequence {i} has length {int(lengths[i])} ({len(negative)} negative lengths "
                "in all); rebuild the dataset with tools/preprocess_data.py")
        ends = pointers + lengths.astype(np.int64) * self.index.dtype_size
        bad = np.flatnonzero((pointers < 0) | (ends > os.path.getsize(self._bin_path)))
        if len(bad):
            i = int(bad[0])
            raise IndexedDatasetError(
                f"{idx_path} is damaged: sequence {i} (bytes {int(pointers[i])}..{int(ends[i])}) lies outside "
                f"{self._bin_path} ({os.path.getsize(self._bin_path)} bytes); rebuild the dataset with "
                "tools/preprocess_data.py")

    def token_id_range(self, cache_dir: Optional[str] = None) -> Tuple[int, int]:
        """(smallest, largest) token id in the `.bin`; (0, -1) when it is empty.

        A scan of the whole `.bin` (numpy min/max over the memory map, chunk by chunk), done once
        per file: remembered here, and in `cache_dir` keyed by the file's path, size and mtime."""
        if getattr(self, "_token_id_range", None) is None:
            stat = os.stat(self._bin_path)
            key = {"token_id_range": os.path.abspath(self._bin_path), "size": stat.st_size,
                   "mtime_ns": stat.st_mtime_ns, "dtype": np.dtype(self.index.dtype).name}
            self._token_id_range = tuple(cached_json(cache_dir, key, "token_id_range", self._scan_token_ids))
        return self._token_id_range

    def _scan_token_ids(self, chunk_tokens: int = 1 << 26) -> Tuple[int, int]:
        if not os.path.getsize(self._bin_path):
            return 0, -1
        flat = np.memmap(self._bin_path, dtype=self.index.dtype, mode="r")
        low, high = None, None
        for start in range(0, len(flat), chunk_tokens):
            chunk = flat[start:start + chunk_tokens]
            low = int(chunk.min()) if low is None else min(low, int(chunk.min()))
            high = int(chunk.max()) if high is None else max(high, int(chunk.max()))
        return low, high

    @staticmethod
    def exists(path_prefix: str) -> bool:
        return os.path.isfile(get_idx_path(path_prefix)) and os.path.isfile(
            get_bin_path(path_prefix)
        )


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach") and hasattr(values, "numpy"):  # torch.Tensor
        return values.detach().cpu().numpy()
    return np.asarray(values)


class IndexedDatasetBuilder:
    """Write a Megatron `.bin/.idx` pair, byte for byte as Megatron-LM does.

    The `.bin` is written to a temporary name and renamed by `finalize`, and the `.idx` likewise,
    so an interrupted build leaves no file that looks complete.
    """

    def __init__(self, bin_path: str, dtype=np.int32, multimodal: bool = False) -> None:
        self.bin_path = bin_path
        self.dtype = np.dtype(dtype).type
        DType.code_from_dtype(self.dtype)  # reject dtypes without a code early
        self.multimodal = multimodal
        self._tmp_bin_path = f"{bin_path}.tmp-{os.getpid()}"
        self.data_file = open(self._tmp_bin_path, "wb")
        self._lengths = array.array("i")  # int32 sequence lengths
        self._doc_indices = array.array("q", [0])
        self._modes = array.array("b") if multimodal else None
        info = np.iinfo(self.dtype) if np.issubdtype(self.dtype, np.integer) else None
        self._bounds = (int(info.min), int(info.max)) if info else None

    @property
    def sequence_lengths(self) -> List[int]:
        return self._lengths.tolist()

    @property
    def document_indices(self) -> List[int]:
        return self._doc_indices.tolist()

    @property
    def sequence_modes(self) -> Optional[List[int]]:
        return None if self._modes is None else self._modes.tolist()

    def _encode(self, values) -> np.ndarray:
        data = _to_numpy(values)
        if self._bounds is not None and data.size and data.dtype.kind in "iub":
            low, high = int(data.min()), int(data.max())
            if low < self._bounds[0] or high > self._bounds[1]:
                raise IndexedDatasetError(
                    f"token id {high if high > self._bounds[1] else low} does not fit the "
                    f"{np.dtype(self.dtype).name} tokens of {self.bin_path} (range "
                    f"{self._bounds[0]}..{self._bounds[1]}); build it with a wider dtype, e.g. "
                    "numpy.int32 (DType.optimal_dtype(vocab_size))"
                )
        return np.ascontiguousarray(data, dtype=self.dtype)

    def add_item(self, tensor, mode: int = 0) -> None:
        """Append one sequence (of the document in progress)."""
        data = self._encode(tensor)
        self.data_file.write(data.tobytes(order="C"))
        self._lengths.append(data.size)
        if self._modes is not None:
            self._modes.append(mode)

    def end_document(self) -> None:
        """Close the document made of the sequences added since the last one."""
        self._doc_indices.append(len(self._lengths))

    def add_document(self, tensor, lengths: Sequence[int], modes: Optional[Sequence[int]] = None):
        """Append a whole document: `tensor` holds its sequences back to back, `lengths` sizes them."""
        data = self._encode(tensor).reshape(-1)
        lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if int(lengths.sum()) != data.size:
            raise IndexedDatasetError(
                f"add_document on {self.bin_path}: lengths sum to {int(lengths.sum())} but the "
                f"document has {data.size} tokens"
            )
        self.data_file.write(data.tobytes(order="C"))
        self._lengths.frombytes(lengths.astype(np.int32).tobytes())
        self._doc_indices.append(len(self._lengths))
        if self._modes is not None:
            if modes is None:
                modes = np.zeros(len(lengths), dtype=np.int8)
            self._modes.frombytes(np.asarray(modes, dtype=np.int8).tobytes())

    def add_index(self, path_prefix: str) -> None:
        """Append every document of another dataset with the same dtype (merging)."""
        index = _Index(get_idx_path(path_prefix), multimodal=self.multimodal)
        if index.dtype != self.dtype:
            raise IndexedDatasetError(
                f"cannot merge {path_prefix}: its tokens are {np.dtype(index.dtype).name}, "
                f"this builder writes {np.dtype(self.dtype).name}; convert one of them first"
            )
        if self.multimodal and index.sequence_modes is None:
            raise IndexedDatasetError(f"cannot merge {path_prefix}: it has no sequence modes")
        offset = len(self._lengths)
        self._lengths.frombytes(np.ascontiguousarray(index.sequence_lengths).tobytes())
        self._doc_indices.frombytes((index.document_indices[1:] + offset).astype(np.int64).tobytes())
        if self._modes is not None:
            self._modes.frombytes(np.ascontiguousarray(index.sequence_modes).tobytes())
        del index
        with open(get_bin_path(path_prefix), "rb") as source:
            shutil.copyfileobj(source, self.data_file, length=16 << 20)

    def finalize(self, idx_path: str) -> None:
        """Write the `.idx` and move both files to their final names."""
        self.data_file.close()
        lengths = np.frombuffer(self._lengths, dtype=np.int32) if len(self._lengths) else np.empty(
            0, np.int32
        )
        pointers = np.zeros(len(lengths), dtype=np.int64)
        if len(lengths) > 1:
            np.cumsum(lengths[:-1].astype(np.int64) * np.dtype(self.dtype).itemsize, out=pointers[1:])
        documents = np.frombuffer(self._doc_indices, dtype=np.int64)
        tmp_idx_path = f"{idx_path}.tmp-{os.getpid()}"
        with open(tmp_idx_path, "wb") as stream:
            stream.write(_INDEX_HEADER)
            stream.write(struct.pack("<Q", 1))
            stream.write(struct.pack("<B", DType.code_from_dtype(self.dtype)))
            stream.write(struct.pack("<Q", len(lengths)))
            stream.write(struct.pack("<Q", len(documents)))
            stream.write(lengths.tobytes(order="C"))
            stream.write(pointers.tobytes(order="C"))
            stream.write(documents.tobytes(order="C"))
            if self._modes is not None:
                stream.write(np.frombuffer(self._modes, dtype=np.int8).tobytes())
        os.replace(self._tmp_bin_path, self.bin_path)
        os.replace(tmp_idx_path, idx_path)

    def abort(self) -> None:
        """Drop a build in progress and its temporary file."""
        if not self.data_file.closed:
            self.data_file.close()
        if os.path.exists(self._tmp_bin_path):
            os.remove(self._tmp_bin_path)


def write_indexed_dataset(path_prefix: str, documents: Iterable[Iterable[int]], dtype=np.int32):
    """Convenience: write one sequence per document under `path_prefix`."""
    builder = IndexedDatasetBuilder(get_bin_path(path_prefix), dtype=dtype)
    try:
        for document in documents:
            data = np.asarray(document)
            builder.add_document(data, [data.size])
        builder.finalize(get_idx_path(path_prefix))
    except BaseException:
        builder.abort()
        raise
    return path_prefix
