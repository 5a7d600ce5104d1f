"""Tokenize text corpora into Megatron `.bin/.idx` files (the engine of tools/preprocess_data.py).

Output and document order are Megatron-LM's `tools/preprocess_data.py`: one document per input
record and json key, sentences (with --split-sentences) as separate sequences, the eod token
appended to the last sequence with --append-eod, records dealt round-robin to `--partitions` which
are then concatenated in partition order, tokens stored as uint16 below 65500 ids, else int32.
"""
from __future__ import annotations

import glob
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .indexed_dataset import DType, IndexedDatasetBuilder

logger = logging.getLogger(__name__)

TEXT_FORMATS = (".jsonl", ".json")
TABLE_FORMATS = {".parquet": "parquet", ".arrow": "arrow"}


# ------------------------------------------------------------------ reading records
READABLE_EXTENSIONS = (".jsonl", ".json", ".parquet", ".arrow")


def _directory_files(directory: str) -> List[str]:
    """The files of a directory with its most frequent readable extension (MindSpeed-LLM reads a directory so)."""
    files = sorted(os.path.join(directory, name) for name in os.listdir(directory))
    by_ext: Dict[str, List[str]] = {}
    for path in files:
        ext = os.path.splitext(path)[1].lower()
        if ext in READABLE_EXTENSIONS and os.path.isfile(path):
            by_ext.setdefault(ext, []).append(path)
    if not by_ext:
        raise FileNotFoundError(f"--input {directory}: the directory holds no {'/'.join(READABLE_EXTENSIONS)} file")
    return max(by_ext.values(), key=len)


def input_files(pattern: str) -> List[str]:
    """--input as files: one file, a glob, or a directory."""
    if os.path.isdir(pattern):
        return _directory_files(pattern)
    files = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
    missing = [f for f in files if not os.path.isfile(f)]
    if not files or missing:
        raise FileNotFoundError(f"--input {pattern}: no such file {missing or pattern}")
    return files


def _is_json_array(path: str) -> bool:
    with open(path, "rb") as stream:
        head = stream.read(4096).lstrip()
    return head.startswith(b"[")


def iter_records(path: str) -> Iterator[Tuple[dict, int]]:
    """(record, size in bytes) for every record of a jsonl / json / parquet / arrow file."""
    ext = os.path.splitext(path)[1].lower()
    if ext in TABLE_FORMATS or (ext == ".json" and _is_json_array(path)):
        import datasets

        kind = TABLE_FORMATS.get(ext, "json")
        table = datasets.load_dataset(kind, data_files=path, split="train", streaming=True)
        for record in table:
            yield record, len(json.dumps(record, ensure_ascii=False))
        return
    with open(path, "r", encoding="utf-8") as stream:
        for line_no, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line), len(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_no}: not a JSON line ({error})") from None


def _partition_of(index: int, partitions: int, keep_sequential: bool) -> int:
    if keep_sequential:
        return (index // 1_000_000) % partitions
    return index % partitions


# ------------------------------------------------------------------ sentence splitting
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _sentence_splitter(lang: str, keep_newlines: bool) -> Callable[[str], List[str]]:
    try:
        import nltk

        splitter = nltk.load(f"tokenizers/punkt/{lang}.pickle")
        if keep_newlines:
            splitter = nltk.tokenize.punkt.PunktSentenceTokenizer(
                train_text=splitter._params, lang_vars=_CustomLanguageVars()
            )
        return splitter.tokenize
    except Exception:  # nltk or its punkt data missing (offline)
        logger.warning(
            "nltk punkt is unavailable; splitting sentences at . ! ? followed by whitespace. "
            "Install nltk and its punkt data to match Megatron's sentence boundaries exactly."
        )
        return lambda text: [s for s in _SENTENCE_END.split(text) if s]


class _CustomLanguageVars:  # placeholder replaced when nltk is importable
    pass


try:  # keep newlines as Megatron's CustomLanguageVars does
    import nltk.tokenize.punkt as _punkt

    class _CustomLanguageVars(_punkt.PunktLanguageVars):  # type: ignore[no-redef]
        _period_context_fmt = r"""
            \S*                          # some word material
            %(SentEndChars)s             # a potential sentence ending
            \s*                       #  <-- THIS is what I changed
            (?=(?P<after_tok>
                %(NonWord)s              # either other punctuation
                |
                (?P<next_tok>\S+)     #  <-- Normally you would have \s+ here
            ))"""
except ImportError:
    pass


# ------------------------------------------------------------------ encoding
class Encoder:
    """Turns one record into {key: (ids, sequence lengths)}; runs in worker processes."""

    tokenizer = None
    splitter = None

    def __init__(self, tokenizer_factory: Callable[[], object], json_keys: Sequence[str],
                 append_eod: bool, split_sentences: bool, lang: str = "english",
                 keep_newlines: bool = False) -> None:
        self.tokenizer_factory = tokenizer_factory
        self.json_keys = list(json_keys)
        self.append_eod = append_eod
        self.split_sentences = split_sentences
        self.lang = lang
        self.keep_newlines = keep_newlines

    def initializer(self) -> None:
        Encoder.tokenizer = self.tokenizer_factory()
        if self.split_sentences:
            Encoder.splitter = _sentence_splitter(self.lang, self.keep_newlines)

    def encode(self, item: Tuple[dict, int]):
        record, size = item
        out = {}
        for key in self.json_keys:
            if key not in record:
                raise KeyError(
                    f"record has no key {key!r} (keys: {sorted(record)}); set --json-keys"
                )
            text = record[key]
            if self.split_sentences and isinstance(text, str):
                sentences = Encoder.splitter(text)
            elif isinstance(text, list):
                sentences = text
            else:
                sentences = [text]
            ids: List[int] = []
            lengths: List[int] = []
            for sentence in sentences:
                sentence_ids = Encoder.tokenizer.tokenize(sentence)
                if len(sentence_ids) > 0:
                    ids.extend(sentence_ids)
                    lengths.append(len(sentence_ids))
            if ids and self.append_eod:
                ids.append(Encoder.tokenizer.eod)
                lengths[-1] += 1
            out[key] = (ids, lengths)
        return out, size


@dataclass(frozen=True)
class DocumentRules:
    """How encoded records become documents. Megatron-LM's: every record is a document (an empty one too), token
    dtype the smallest that holds the vocabulary. MindSpeed-LLM's GeneralPretrainHandler (`mindspeed()`): int32
    tokens, records without text are skipped, and with --seq-length every sentence of that many tokens or more is
    left out of every key (the document stays, possibly empty)."""
    dtype: Optional[type] = None
    skip_empty_documents: bool = False
    drop_from_length: Optional[int] = None

    @classmethod
    def mindspeed(cls, seq_length: Optional[int]) -> "DocumentRules":
        return cls(dtype=np.int32, skip_empty_documents=True, drop_from_length=seq_length)


def _kept_sentences(doc: Dict[str, Tuple[List[int], List[int]]], drop_from: Optional[int]):
    """{key: (ids, lengths)} without the sentence positions that are too long in any key."""
    if drop_from is None:
        return doc
    too_long = {k for ids, lengths in doc.values() for k, n in enumerate(lengths) if n >= drop_from}
    if not too_long:
        return doc
    out = {}
    for key, (ids, lengths) in doc.items():
        starts = np.cumsum([0] + list(lengths))
        kept_ids, kept_lengths = [], []
        for k, n in enumerate(lengths):
            if k not in too_long:
                kept_ids.extend(ids[starts[k]:starts[k] + n])
                kept_lengths.append(n)
        out[key] = (kept_ids, kept_lengths)
    return out


def output_prefix_for(output_prefix: str, key: str, split_sentences: bool) -> str:
    return f"{output_prefix}_{key}_{'sentence' if split_sentences else 'document'}"


def preprocess(inputs: str, output_prefix: str, tokenizer_factory: Callable[[], object],
               json_keys: Sequence[str] = ("text",), append_eod: bool = False, workers: int = 1,
               partitions: int = 1, split_sentences: bool = False, log_interval: int = 1000,
               keep_sequential_samples: bool = False, lang: str = "english",
               keep_newlines: bool = False, progress: bool = True,
               rules: DocumentRules = DocumentRules()) -> Dict[str, str]:
    """Tokenize `inputs` (a file, glob or directory) to `<output_prefix>_<key>_document.bin/.idx`.

    Returns {json key: output prefix}. Files appear only once complete.
    """
    from tqdm import tqdm

    files = input_files(inputs)
    encoder = Encoder(tokenizer_factory, json_keys, append_eod, split_sentences, lang,
                      keep_newlines)
    encoder.initializer()
    tokenizer = Encoder.tokenizer
    dtype = rules.dtype or DType.optimal_dtype(tokenizer.vocab_size)
    prefixes = {k: output_prefix_for(output_prefix, k, split_sentences) for k in json_keys}
    directory = os.path.dirname(os.path.abspath(output_prefix))
    os.makedirs(directory, exist_ok=True)
    builders = {k: IndexedDatasetBuilder(p + ".bin", dtype=dtype) for k, p in prefixes.items()}
    total_bytes = sum(os.path.getsize(f) for f in files)
    bar = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="tokenizing",
               disable=not progress, file=sys.stderr)
    pool = None
    try:
        if workers > 1:
            ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
            pool = ctx.Pool(workers, initializer=encoder.initializer)
        start = time.time()
        done = 0
        done_bytes = 0
        for part in range(max(1, partitions)):
            records = _records(files, part, partitions, keep_sequential_samples)
            encoded = pool.imap(encoder.encode, records, 32) if pool else map(encoder.encode, records)
            for doc, size in encoded:
                for key, (ids, lengths) in _kept_sentences(doc, rules.drop_from_length).items():
                    if rules.skip_empty_documents and not doc[key][1]:
                        continue
                    builders[key].add_document(np.asarray(ids, dtype=np.int64), lengths)
                done += 1
                done_bytes += size
                bar.update(size)
                elapsed = max(time.time() - start, 1e-9)
                if done % max(1, log_interval) == 0:
                    rate = f"{done / elapsed:.1f} docs/s, {done_bytes / elapsed / 1e6:.2f} MB/s"
                    bar.set_postfix_str(rate)
                    if not progress:
                        print(f"Processed {done} documents ({rate}).", file=sys.stderr)
        _refuse_empty(inputs, done, builders)
        for key, builder in builders.items():
            builder.finalize(prefixes[key] + ".idx")
    except BaseException:
        for builder in builders.values():
            builder.abort()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return prefixes


def _refuse_empty(inputs: str, documents: int, builders: Dict[str, IndexedDatasetBuilder]) -> None:
    """A dataset without a token would pass for data until training found nothing to sample: write none."""
    if documents == 0:
        raise ValueError(f"--input {inputs}: no records (the input is empty or holds only blank lines); "
                         "nothing written")
    for key, builder in builders.items():
        if not any(builder.sequence_lengths):
            raise ValueError(f"--input {inputs}: every record's {key!r} text tokenizes to nothing ({documents} "
                             f"records); nothing written. Check --json-keys and the input")


def _records(files: Sequence[str], part: int, partitions: int, keep_sequential: bool):
    index = 0
    for path in files:
        for record in iter_records(path):
            if partitions <= 1 or _partition_of(index, partitions, keep_sequential) == part:
                yield record
            index += 1
