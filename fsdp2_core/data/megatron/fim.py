"""Fill-in-the-middle (FIM) samples, as Megatron-LM's `GPTFIMDataset` computes them.

Megatron-LM (megatron/training/datasets/fim_dataset.py, selected by --fim-data; see docs/megatron_data.md for where
bigcode's older megatron/data/gpt_dataset.py differs) takes each GPT
sample, cuts it into documents at the FIM eod token, and, with probability `rate` per document,
decodes that document to text, picks two character boundaries uniformly, re-encodes prefix /
middle / suffix and lays them out as

    PSM: <fim_prefix> prefix <fim_suffix> suffix <fim_middle> middle
    SPM: <fim_prefix> <fim_suffix> suffix <fim_middle> prefix middle    (with probability spm_rate)

The documents are joined again with eod (an empty document, i.e. an eod at the start of the sample
or right after another, loses its eod), and the sample is cut back or padded with the FIM pad token
to its original length. With `split_sample` a document holding that token is further cut at it:
one draw at `rate` decides for the whole document, then each fragment is transformed at
`fragment_rate`. `no_prefix` leaves a piece whose text starts with it unchanged (after the draw).

The random numbers come from one `numpy.random.RandomState(seed)` per dataset, drawn in the order
samples are read: binomial(1, rate), then randint(0, len(text) + 1, size=2) and binomial(1,
spm_rate) for each piece transformed, exactly as Megatron draws them. Like Megatron's, the draws of
a sample therefore depend on what the same process read before it (loader workers each start from
the seed; a resumed run starts again from the seed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

# Field name -> Megatron flag, for the error that names a missing token.
TOKEN_FLAGS = {
    "prefix": "--fim-prefix-token", "middle": "--fim-middle-token", "suffix": "--fim-suffix-token",
    "pad": "--fim-pad-token", "eod": "--fim-eod-token",
}


@dataclass(frozen=True)
class FIMSettings:
    """The FIM flags as values (token names still as strings)."""

    rate: float = 0.5
    spm_rate: float = 0.5
    split_sample: Optional[str] = None
    fragment_rate: Optional[float] = None
    no_prefix: Optional[str] = None
    prefix_token: str = "<fim_prefix>"
    middle_token: str = "<fim_middle>"
    suffix_token: str = "<fim_suffix>"
    pad_token: str = "<fim_pad>"
    eod_token: str = "<|endoftext|>"


class FIMTransform:
    """Turns GPT samples into FIM samples with a tokenizer's text codec (see module docstring).

    The tokenizer needs `token_id(str) -> int | None`, `ids_to_text(ids) -> str` (special tokens
    dropped, as Megatron's Hugging Face tokenizer decodes) and `text_to_ids(str) -> list[int]`
    (no special tokens added).
    """

    def __init__(self, settings: FIMSettings, tokenizer) -> None:
        for method in ("token_id", "ids_to_text", "text_to_ids"):
            if not callable(getattr(tokenizer, method, None)):
                raise ValueError(
                    f"fill-in-the-middle data (--fim-data / --fim-rate) decodes samples to text and back; "
                    f"{type(tokenizer).__name__} cannot ({method} missing): use --tokenizer-type "
                    "HuggingFaceTokenizer with a tokenizer that has the FIM tokens (or bigcode's "
                    "TokenizerFromFileWithFIM)")
        self.settings = settings
        self.tokenizer = tokenizer
        ids = {}
        for name, flag in TOKEN_FLAGS.items():
            token = getattr(settings, f"{name}_token")
            ids[name] = _require_token(tokenizer, token, flag)
        self.prefix_id, self.middle_id, self.suffix_id = ids["prefix"], ids["middle"], ids["suffix"]
        self.pad_id, self.eod_id = ids["pad"], ids["eod"]
        self.split_id = (None if not settings.split_sample
                         else _require_token(tokenizer, settings.split_sample, "--fim-split-sample"))

    # ------------------------------------------------------------------ one sample
    def __call__(self, sample: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """The FIM form of `sample` (same length), drawing from `rng`."""
        length = sample.shape[0]
        breaks = np.flatnonzero(sample == self.eod_id)
        if breaks.size:
            pieces: List[np.ndarray] = []
            start = 0
            for loc in breaks:
                if loc > start:  # an empty document keeps no eod (as Megatron's loop skips it)
                    pieces += [self._split_and_permute(sample[start:loc], rng), np.array([self.eod_id])]
                start = loc + 1
            pieces.append(self._split_and_permute(sample[start:], rng))
            out = np.concatenate(pieces)
        else:
            out = self._split_and_permute(sample, rng)
        if out.shape[0] > length:
            out = out[:length]
        elif out.shape[0] < length:
            out = np.concatenate([out, np.full(length - out.shape[0], self.pad_id)])
        return out.astype(np.int64)

    def _split_and_permute(self, document: np.ndarray, rng) -> np.ndarray:
        s = self.settings
        if self.split_id is None:
            return self._permute(document, s.rate, rng)
        breaks = np.flatnonzero(document == self.split_id)
        if not breaks.size:
            return self._permute(document, s.rate, rng)
        if not rng.binomial(1, s.rate):  # one draw decides for the whole split document
            return document
        pieces: List[np.ndarray] = []
        start = 0
        for loc in breaks:
            if loc > start:
                pieces += [self._permute(document[start:loc], s.fragment_rate, rng), np.array([self.split_id])]
            start = loc + 1
        pieces.append(self._permute(document[start:], s.fragment_rate, rng))
        return np.concatenate(pieces)

    def _permute(self, piece: np.ndarray, rate: float, rng) -> np.ndarray:
        if not rng.binomial(1, rate):
            return piece
        text = self.tokenizer.ids_to_text(piece.tolist())
        if self.settings.no_prefix is not None and text.startswith(self.settings.no_prefix):
            return piece
        lo, hi = sorted(rng.randint(low=0, high=len(text) + 1, size=2))
        encode = self.tokenizer.text_to_ids
        prefix, middle, suffix = (np.asarray(encode(part), dtype=np.int64)
                                  for part in (text[:lo], text[lo:hi], text[hi:]))
        if rng.binomial(1, self.settings.spm_rate):
            parts = [[self.prefix_id, self.suffix_id], suffix, [self.middle_id], prefix, middle]
        else:
            parts = [[self.prefix_id], prefix, [self.suffix_id], suffix, [self.middle_id], middle]
        return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])


def _require_token(tokenizer, token: str, flag: str) -> int:
    token_id = tokenizer.token_id(token)
    if token_id is None:
        raise ValueError(
            f"fill-in-the-middle data: the tokenizer has no {token!r} token ({flag} {token}); use a tokenizer "
            f"whose vocabulary holds it (StarCoder-style tokenizers have <fim_prefix>, <fim_middle>, <fim_suffix>, "
            f"<fim_pad>) or name the tokenizer's own token with {flag}")
    return int(token_id)
