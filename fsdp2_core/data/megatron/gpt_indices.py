"""Pure functions that build the GPT document, sample and shuffle indices.

Sample order is Megatron-LM's (`GPTDataset`): the documents of a split are repeated for as many
epochs as the requested samples need, shuffled with `numpy.random.RandomState(seed)`, flattened
into one token stream that is cut every `seq_length` tokens (each sample reads one extra token,
the first of the next sample, for its labels), and the samples are shuffled again. When the last
epoch would contribute less than 80% of an epoch's samples it is shuffled on its own
("separate final epoch") so that its few samples do not crowd into the first epochs.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

SEPARATE_FINAL_EPOCH_THRESHOLD = 0.80


def num_epochs_needed(tokens_per_epoch: int, num_samples: Optional[int], seq_length: int,
                      extra_token: int) -> int:
    """Smallest number of epochs (at least 1) holding `num_samples` samples."""
    if num_samples is None:
        return 1
    requested = num_samples * seq_length + extra_token
    if tokens_per_epoch <= 0:
        raise ValueError("tokens_per_epoch must be positive")
    return max(1, -(-requested // tokens_per_epoch))


def separate_final_epoch(num_epochs: int, tokens_per_epoch: int, num_samples: Optional[int],
                         seq_length: int, extra_token: int) -> Tuple[bool, int]:
    """(whether the last epoch is shuffled apart, number of samples before the last epoch)."""
    if num_epochs == 1:
        return False, 0
    before_final = ((num_epochs - 1) * tokens_per_epoch - extra_token) // seq_length
    from_final = num_samples - before_final
    per_epoch = (tokens_per_epoch - extra_token) // seq_length
    if not 0 <= from_final <= per_epoch + 1:
        raise AssertionError(
            f"inconsistent epoch arithmetic: {from_final} samples from the final epoch, "
            f"{per_epoch} per epoch"
        )
    return from_final < int(SEPARATE_FINAL_EPOCH_THRESHOLD * per_epoch), before_final


def index_bytes(num_epochs: int, num_documents: int, tokens_per_epoch: int, seq_length: int) -> int:
    """Peak bytes of the three index arrays of one split, and their main temporaries, before building them."""
    samples = num_epochs * tokens_per_epoch // max(seq_length, 1) + 1
    documents = num_epochs * num_documents
    return documents * 4 * 2 + samples * (2 * 8 + 8 + 8)  # tiled + shuffled copy; sample pairs; shuffle + temporaries


def build_document_index(documents: np.ndarray, num_epochs: int, rng: np.random.RandomState,
                         separate_final: bool, shuffle: bool = True) -> np.ndarray:
    """int32 array of `num_epochs` copies of `documents`, shuffled (the last copy apart)."""
    documents = np.asarray(documents)
    if separate_final and num_epochs > 1:
        first = build_document_index(documents, num_epochs - 1, rng, False, shuffle)
        last = build_document_index(documents, 1, rng, False, shuffle)
        return np.concatenate((first, last))
    index = np.tile(documents.astype(np.int32, copy=False), num_epochs)
    if shuffle:
        rng.shuffle(index)
    return index


def build_sample_index(sequence_lengths: np.ndarray, document_index: np.ndarray, seq_length: int,
                       num_epochs: int, tokens_per_epoch: int, drop_last_partial: bool = True,
                       extra_token: int = 1) -> np.ndarray:
    """[num_samples + 1, 2] array of (position in document_index, token offset) sample starts.

    Sample k covers flat tokens [k * seq_length, (k + 1) * seq_length + extra_token) of the
    concatenation of the documents in `document_index`. Its end is recorded where the last token
    it reads lies, moved back by the extra token, which the next sample starts on.
    """
    total = num_epochs * tokens_per_epoch
    if drop_last_partial:
        num_samples = (total - extra_token) // seq_length
    else:  # Megatron computes this in single precision; keep its rounding
        num_samples = int(np.ceil(np.float32(total - extra_token) / np.float32(seq_length)))
    max_value = max(document_index.shape[0], int(sequence_lengths.max()) if len(sequence_lengths) else 0)
    dtype = np.int32 if max_value <= np.iinfo(np.int32).max else np.int64
    if len(document_index):
        from .native import build_sample_index_native

        native = build_sample_index_native(
            sequence_lengths, document_index, seq_length, num_samples, extra_token, dtype
        )
        if native is not None:
            return native
    return _sample_index_numpy(sequence_lengths, document_index, seq_length, num_samples,
                               extra_token, dtype)


def _sample_index_numpy(sequence_lengths, document_index, seq_length, num_samples, extra_token,
                        dtype) -> np.ndarray:
    """Vectorised form of the same walk (used without a C compiler)."""
    lengths = np.asarray(sequence_lengths)[document_index]
    ends = np.cumsum(lengths, dtype=np.int64)  # flat end of every document in document_index
    last_token = np.arange(1, num_samples + 1, dtype=np.int64) * seq_length + (extra_token - 1)
    position = np.searchsorted(ends, last_token, side="right")  # document holding that token
    sample_index = np.empty((num_samples + 1, 2), dtype=dtype)
    sample_index[0] = 0
    inside = position < len(ends)
    starts = ends - lengths
    pos_in = position[inside]
    sample_index[1:, 0][inside] = pos_in
    sample_index[1:, 1][inside] = last_token[inside] - starts[pos_in] + 1 - extra_token
    if not inside.all():  # the partial last sample stops at the end of the stream
        last = len(document_index) - 1
        sample_index[1:, 0][~inside] = last
        sample_index[1:, 1][~inside] = int(lengths[last]) - extra_token
    return sample_index


def build_shuffle_index(num_samples: int, total_size: int, rng: np.random.RandomState,
                        shuffle: bool = True) -> np.ndarray:
    """Permutation of [0, total_size): [0, num_samples) and the rest shuffled separately."""
    dtype = np.uint32 if total_size < np.iinfo(np.uint32).max - 1 else np.int64
    first = np.arange(num_samples, dtype=dtype)
    if shuffle:
        rng.shuffle(first)
    if num_samples == total_size:
        return first
    last = np.arange(num_samples, total_size, dtype=dtype)
    if shuffle:
        rng.shuffle(last)
    return np.concatenate((first, last))
