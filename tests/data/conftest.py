"""Fixtures for the data tests: tiny corpora written by megatron-core, a stub tokenizer."""
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*Transformer Engine.*")
warnings.filterwarnings("ignore", message=".*Apex.*")

megatron_indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")


class StubTokenizer:
    """What both GPTDataset implementations need of a tokenizer: vocab size, eod, (no) pad."""

    def __init__(self, vocab_size=1000, pad=None):
        self.vocab_size = vocab_size
        self.eod = vocab_size - 1
        self._pad = pad

    @property
    def pad(self):
        if self._pad is None:
            raise AttributeError("no pad")
        return self._pad

    @property
    def unique_identifiers(self):
        return {"class": "StubTokenizer", "vocab_size": self.vocab_size}


def write_corpus(prefix, num_docs, max_len, seed, vocab=1000, last_len=None, dtype=np.uint16,
                 sentences_per_doc=1):
    """A corpus written by megatron-core's own builder: random tokens, each document ends in eod."""
    rng = np.random.default_rng(seed)
    builder = megatron_indexed.IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for i in range(num_docs):
        lengths = []
        tokens = []
        for _ in range(sentences_per_doc):
            n = int(rng.integers(1, max_len))
            tokens.append(rng.integers(0, vocab - 1, n))
            lengths.append(n)
        if last_len is not None and i == num_docs - 1:
            tokens, lengths = [rng.integers(0, vocab - 1, last_len)], [last_len]
        doc = np.concatenate(tokens)
        doc[-1] = vocab - 1
        builder.add_document(doc, lengths)
    builder.finalize(prefix + ".idx")
    return prefix


@pytest.fixture(scope="session")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    return {
        "a": write_corpus(str(root / "a"), 300, 200, 1),
        "b": write_corpus(str(root / "b"), 150, 400, 2),
        "c": write_corpus(str(root / "c"), 200, 50, 3),
        "tiny": write_corpus(str(root / "tiny"), 12, 40, 4),
        "short_last": write_corpus(str(root / "short_last"), 90, 120, 5, last_len=2),
        "multi": write_corpus(str(root / "multi"), 80, 60, 6, sentences_per_doc=3),
    }


@pytest.fixture
def stub_tokenizer():
    return StubTokenizer()


FIM_CHARS = "abcdefghijklmnopqrstuvwxyz #"
FIM_SPECIALS = ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<file_sep>", "<|endoftext|>"]


def save_char_tokenizer(path, specials=FIM_SPECIALS):
    """A Hugging Face tokenizer with one token per character (ids 0..27 for FIM_CHARS), then `specials`, the eod
    <|endoftext|> last (so megatron-core's stub tokenizer of the same vocabulary size has the same eod)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(FIM_CHARS)}
    vocab.update({s: len(FIM_CHARS) + i for i, s in enumerate(specials)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))  # no merges: every character is its own token
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(list(specials))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>",
                                   additional_special_tokens=[s for s in specials if s != "<|endoftext|>"])
    fast.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="session")
def fim_tokenizer(tmp_path_factory):
    from fsdp2_core.data.tokenizers import HuggingFaceTokenizer

    return HuggingFaceTokenizer(save_char_tokenizer(tmp_path_factory.mktemp("char_tokenizer")))
