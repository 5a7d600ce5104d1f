"""Tokenizers for pretraining data, with Megatron-LM's `--tokenizer-type` names and special ids.

Every tokenizer has `.vocab_size`, `.eod`, `.pad` (raises AttributeError where Megatron's has
none, which the dataset turns into -1), `.tokenize(text) -> list[int]`, `.detokenize(ids)`.
Only local files are read; nothing is downloaded.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional


class PretrainingTokenizer:
    """Common interface; subclasses fill in the details."""

    vocab_size: int
    eod: int

    @property
    def pad(self) -> int:
        raise AttributeError(f"{type(self).__name__} has no pad token")

    @property
    def eos(self) -> int:
        return self.eod

    @property
    def identity(self) -> str:
        return f"{type(self).__name__}:{getattr(self, '_source', '')}"

    @property
    def unique_identifiers(self) -> dict:
        return {"class": type(self).__name__, "source": getattr(self, "_source", None)}

    def tokenize(self, text: str) -> List[int]:
        raise NotImplementedError

    def detokenize(self, ids) -> str:
        raise NotImplementedError


def _require_file(path: Optional[str], flag: str, what: str) -> str:
    if not path:
        raise ValueError(f"{flag} is required for {what}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{flag} {path}: no such file or directory ({what})")
    return path


class _HFTextCodec:
    """Fill-in-the-middle's text codec on a wrapped Hugging Face tokenizer (`self._tokenizer`, `self._vocab`)."""

    # The text codec of fill-in-the-middle data, as megatron-core's Hugging Face tokenizer library has it
    # (megatron/core/tokenizers/text/libraries/huggingface_tokenizer.py: tokens_to_ids, ids_to_text, text_to_ids).
    def token_id(self, token: str) -> Optional[int]:
        """The id of this exact vocabulary entry (added tokens included); None when there is none."""
        if self._vocab is None:
            self._vocab = self._tokenizer.get_vocab()
        return self._vocab.get(token)

    def ids_to_text(self, ids) -> str:
        """Decode with the special tokens left out."""
        specials = set(self._tokenizer.all_special_tokens)
        tokens = [t for t in self._tokenizer.convert_ids_to_tokens([int(i) for i in ids]) if t not in specials]
        return self._tokenizer.convert_tokens_to_string(tokens)

    def text_to_ids(self, text: str) -> List[int]:
        """Encode without adding special tokens (no bos/eos)."""
        return self._tokenizer.convert_tokens_to_ids(self._tokenizer.tokenize(text))


class HuggingFaceTokenizer(_HFTextCodec, PretrainingTokenizer):
    """A local Hugging Face tokenizer directory (`HuggingFaceTokenizer`, `PretrainedFromHF`)."""

    def __init__(self, path: str, trust_remote_code: bool = False, use_fast: bool = True,
                 kwargs: Optional[Dict[str, str]] = None) -> None:
        _require_file(path, "--tokenizer-model / --tokenizer-name-or-path", "a HF tokenizer")
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=trust_remote_code, use_fast=use_fast, **(kwargs or {})
        )
        self._source = os.path.abspath(path)
        self._vocab = None  # token -> id, read on first use (FIM tokens)
        if self._tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer {path} has no eos token, which Megatron uses as eod; name one with "
                             f"--tokenizer-kwargs eos_token TOKEN (model.tokenizer_kwargs)")

    @property
    def vocab_size(self) -> int:
        return len(self._tokenizer)

    @property
    def eod(self) -> int:
        return self._tokenizer.eos_token_id

    @property
    def pad(self) -> int:
        pad = self._tokenizer.pad_token_id
        if pad is None:
            raise AttributeError("tokenizer has no pad token")
        return pad

    @property
    def bos(self) -> Optional[int]:
        return self._tokenizer.bos_token_id

    def tokenize(self, text: str) -> List[int]:
        return self._tokenizer(text).input_ids

    def detokenize(self, ids) -> str:
        return self._tokenizer.decode(list(ids))


class PretrainedFromHF(HuggingFaceTokenizer):
    """MindSpeed-LLM's name for a Hugging Face tokenizer directory."""


class GPT2BPETokenizer(PretrainingTokenizer):
    """GPT-2 byte-level BPE from `--vocab-file` (encoder json) and `--merge-file`."""

    def __init__(self, vocab_file: str, merge_file: str) -> None:
        _require_file(vocab_file, "--vocab-file", "GPT2BPETokenizer")
        _require_file(merge_file, "--merge-file", "GPT2BPETokenizer")
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        with open(vocab_file, encoding="utf-8") as stream:
            self._encoder = json.load(stream)
        self._tokenizer = Tokenizer(models.BPE.from_file(vocab_file, merge_file))
        self._tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        self._tokenizer.decoder = decoders.ByteLevel()
        if "<|endoftext|>" not in self._encoder:
            raise ValueError(f"{vocab_file} has no '<|endoftext|>' entry, GPT-2's eod token")
        self._source = os.path.abspath(vocab_file)

    @property
    def vocab_size(self) -> int:
        return len(self._encoder)

    @property
    def eod(self) -> int:
        return self._encoder["<|endoftext|>"]

    def tokenize(self, text: str) -> List[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def detokenize(self, ids) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)


FIM_TOKENS = ("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>")


class TokenizerFromFile(_HFTextCodec, PretrainingTokenizer):
    """bigcode's `TokenizerFromFile` / `TokenizerFromFileWithFIM`: one `tokenizer.json` (`--tokenizer-file`) with
    `<|endoftext|>` as eod (and the four FIM tokens) added as special tokens, as bigcode-project/Megatron-LM builds
    it; the vocabulary size counts the added tokens."""

    EOD = "<|endoftext|>"

    def __init__(self, tokenizer_file: str, with_fim: bool = False) -> None:
        _require_file(tokenizer_file, "--tokenizer-file", "TokenizerFromFile")
        if os.path.isdir(tokenizer_file):
            raise ValueError(f"--tokenizer-file {tokenizer_file} is a folder: give the tokenizer.json file itself")
        from transformers import PreTrainedTokenizerFast

        self._tokenizer = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file)
        specials = [self.EOD] + (list(FIM_TOKENS) if with_fim else [])
        self._tokenizer.add_special_tokens({"additional_special_tokens": specials})
        vocab = self._tokenizer.get_vocab()
        self._eod = vocab[self.EOD]
        self.special_tokens = {token: vocab[token] for token in specials}
        self._source = os.path.abspath(tokenizer_file)
        self._vocab = None  # token -> id, read on first use (FIM tokens)

    @property
    def vocab_size(self) -> int:
        return len(self._tokenizer)

    @property
    def eod(self) -> int:
        return self._eod

    def tokenize(self, text: str) -> List[int]:
        return self._tokenizer.encode(text)

    def detokenize(self, ids) -> str:
        return self._tokenizer.decode(list(ids))


class _SentencePieceBase(PretrainingTokenizer):
    def __init__(self, model_file: str) -> None:
        _require_file(model_file, "--tokenizer-model", type(self).__name__)
        import sentencepiece

        self._sp = sentencepiece.SentencePieceProcessor(model_file=model_file)
        self._source = os.path.abspath(model_file)

    def detokenize(self, ids) -> str:
        return self._sp.decode_ids([int(i) for i in ids])


class SentencePieceTokenizer(_SentencePieceBase):
    """Megatron's `SentencePieceTokenizer`: the model's pieces plus <CLS> <SEP> <EOD> <MASK>,
    pad/bos/eos (added when the model lacks them) and `vocab_extra_ids` <extra_id_i> tokens."""

    def __init__(self, model_file: str, vocab_extra_ids: int = 0) -> None:
        super().__init__(model_file)
        self._vocab = {self._sp.id_to_piece(i): i for i in range(self._sp.get_piece_size())}
        self._inv_vocab = {i: p for p, i in self._vocab.items()}
        self._special = {}

        def add(token: str) -> int:
            if token not in self._vocab:
                new_id = len(self._vocab)
                self._vocab[token] = new_id
                self._inv_vocab[new_id] = token
            self._special[token] = self._vocab[token]
            return self._vocab[token]

        def piece_or(default: str, token_id: int) -> str:
            try:
                return self._sp.id_to_piece(token_id)
            except IndexError:
                return default

        self._cls, self._sep = add("<CLS>"), add("<SEP>")
        self._eod, self._mask = add("<EOD>"), add("<MASK>")
        self._pad = add(piece_or("<PAD>", self._sp.pad_id()))
        self._bos = add(piece_or("<BOS>", self._sp.bos_id()))
        self._eos = add(piece_or("<EOS>", self._sp.eos_id()))
        for i in range(vocab_extra_ids):
            add(f"<extra_id_{i}>")

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    @property
    def eod(self) -> int:
        return self._eod

    @property
    def pad(self) -> int:
        return self._pad

    @property
    def eos(self) -> int:
        return self._eos

    def tokenize(self, text: str) -> List[int]:
        ids: List[int] = []
        idx = 0
        while True:
            found = {}
            for token in self._special:
                pos = text.find(token, idx)
                if pos >= 0:
                    found[token] = pos
            if not found:
                break
            token = min(found, key=found.get)
            ids.extend(self._sp.encode_as_ids(text[idx: found[token]]))
            ids.append(self._special[token])
            idx = found[token] + len(token)
        ids.extend(self._sp.encode_as_ids(text[idx:]))
        return ids

    def detokenize(self, ids) -> str:
        text, last = "", 0
        ids = [int(i) for i in ids]
        for i, token_id in enumerate(ids):
            if token_id in self._inv_vocab and self._inv_vocab[token_id] in self._special:
                text += self._sp.decode_ids(ids[last:i]) + self._inv_vocab[token_id]
                last = i + 1
        return text + self._sp.decode_ids(ids[last:])


class GPTSentencePieceTokenizer(_SentencePieceBase):
    """Megatron's `GPTSentencePieceTokenizer`: plain pieces, eod = the model's eos."""

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    @property
    def eod(self) -> int:
        return self._sp.eos_id()

    @property
    def pad(self) -> int:
        return self._sp.pad_id()

    def tokenize(self, text: str) -> List[int]:
        return self._sp.encode_as_ids(text)


class Llama2Tokenizer(_SentencePieceBase):
    """Megatron's `Llama2Tokenizer`: bos prepended to every text, eod = eos."""

    @property
    def vocab_size(self) -> int:
        return self._sp.vocab_size()

    @property
    def eod(self) -> int:
        return self._sp.eos_id()

    @property
    def bos(self) -> int:
        return self._sp.bos_id()

    @property
    def pad(self) -> int:
        return self._sp.pad_id()

    def tokenize(self, text: str, bos: bool = True, eos: bool = False) -> List[int]:
        ids = self._sp.encode(text)
        if bos:
            ids = [self._sp.bos_id()] + ids
        if eos:
            ids = ids + [self._sp.eos_id()]
        return ids


class NullTokenizer(PretrainingTokenizer):
    """Ids written as space-separated integers; eod is `vocab_size`, the vocabulary one larger."""

    def __init__(self, vocab_size: int) -> None:
        if vocab_size is None:
            raise ValueError("NullTokenizer needs --vocab-size")
        self._size = int(vocab_size)
        self._source = str(vocab_size)

    @property
    def vocab_size(self) -> int:
        return self._size + 1

    @property
    def eod(self) -> int:
        return self._size

    def tokenize(self, text: str) -> List[int]:
        return [int(x) for x in text.split(" ")]

    def detokenize(self, ids) -> str:
        return " ".join(str(x) for x in ids)


TOKENIZER_TYPES = (
    "HuggingFaceTokenizer", "PretrainedFromHF", "GPT2BPETokenizer", "SentencePieceTokenizer",
    "GPTSentencePieceTokenizer", "Llama2Tokenizer", "NullTokenizer", "TokenizerFromFile", "TokenizerFromFileWithFIM",
)


def build_pretraining_tokenizer(tokenizer_type: str, tokenizer_model: Optional[str] = None,
                                vocab_file: Optional[str] = None, merge_file: Optional[str] = None,
                                vocab_size: Optional[int] = None,
                                tokenizer_name_or_path: Optional[str] = None,
                                vocab_extra_ids: int = 0, trust_remote_code: bool = False,
                                use_fast: bool = True,
                                tokenizer_kwargs: Optional[Dict[str, str]] = None) -> PretrainingTokenizer:
    """The tokenizer Megatron-LM / MindSpeed-LLM builds for `--tokenizer-type`."""
    if tokenizer_type in ("HuggingFaceTokenizer", "PretrainedFromHF"):
        path = tokenizer_model or tokenizer_name_or_path
        cls = HuggingFaceTokenizer if tokenizer_type == "HuggingFaceTokenizer" else PretrainedFromHF
        return cls(path, trust_remote_code=trust_remote_code, use_fast=use_fast, kwargs=tokenizer_kwargs)
    if tokenizer_type == "GPT2BPETokenizer":
        return GPT2BPETokenizer(vocab_file, merge_file)
    if tokenizer_type == "SentencePieceTokenizer":
        return SentencePieceTokenizer(tokenizer_model, vocab_extra_ids)
    if tokenizer_type == "GPTSentencePieceTokenizer":
        return GPTSentencePieceTokenizer(tokenizer_model)
    if tokenizer_type == "Llama2Tokenizer":
        return Llama2Tokenizer(tokenizer_model)
    if tokenizer_type == "NullTokenizer":
        return NullTokenizer(vocab_size)
    if tokenizer_type in ("TokenizerFromFile", "TokenizerFromFileWithFIM"):
        return TokenizerFromFile(tokenizer_model, with_fim=tokenizer_type.endswith("WithFIM"))
    raise ValueError(
        f"--tokenizer-type {tokenizer_type!r} is not supported for pretraining data; use one of "
        f"{', '.join(TOKENIZER_TYPES)}"
    )
