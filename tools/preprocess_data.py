#!/usr/bin/env python
"""Tokenize a corpus into Megatron `.bin/.idx` files, with Megatron-LM's command line.

    python tools/preprocess_data.py --input corpus.jsonl --output-prefix data/corpus \
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model ./tokenizer --append-eod --workers 8

Writes <output-prefix>_<json-key>_document.bin/.idx (…_sentence with --split-sentences).
--input takes jsonl (and json, parquet, arrow through `datasets`), or a glob of them.
"""
import argparse
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fsdp2_core.data.preprocess import preprocess  # noqa: E402
from fsdp2_core.data.tokenizers import TOKENIZER_TYPES, build_pretraining_tokenizer  # noqa: E402


def get_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_argument_group("input data")
    group.add_argument("--input", required=True, help="jsonl/json/parquet/arrow file or glob")
    group.add_argument("--json-keys", nargs="+", default=["text"],
                       help="keys to extract from each record")
    group.add_argument("--split-sentences", action="store_true",
                       help="store every sentence as its own sequence")
    group.add_argument("--keep-newlines", action="store_true",
                       help="keep newlines between sentences when splitting")
    group = parser.add_argument_group("tokenizer")
    group.add_argument("--tokenizer-type", required=True, choices=TOKENIZER_TYPES)
    group.add_argument("--tokenizer-model", default=None,
                       help="sentencepiece model file or Hugging Face tokenizer directory")
    group.add_argument("--tokenizer-name-or-path", default=None,
                       help="Hugging Face tokenizer directory (MindSpeed-LLM's flag)")
    group.add_argument("--vocab-file", default=None, help="GPT-2 vocab (encoder.json)")
    group.add_argument("--merge-file", default=None, help="GPT-2 BPE merges")
    group.add_argument("--vocab-size", type=int, default=None, help="NullTokenizer vocab size")
    group.add_argument("--vocab-extra-ids", type=int, default=0)
    group.add_argument("--append-eod", action="store_true",
                       help="append the eod token to every document")
    group.add_argument("--lang", default="english", help="nltk language for sentence splitting")
    group.add_argument("--trust-remote-code", action="store_true")
    group = parser.add_argument_group("output data")
    group.add_argument("--output-prefix", required=True, help="prefix of the .bin/.idx files")
    group.add_argument("--dataset-impl", default="mmap", choices=["mmap"],
                       help="accepted for old scripts; mmap is the only format")
    group = parser.add_argument_group("runtime")
    group.add_argument("--workers", type=int, required=True, help="tokenizer processes")
    group.add_argument("--partitions", type=int, default=1,
                       help="deal records round-robin to this many partitions, then concatenate")
    group.add_argument("--keep-sequential-samples", action="store_true",
                       help="deal partitions in runs of 1,000,000 records instead of round-robin")
    group.add_argument("--log-interval", type=int, default=1000,
                       help="documents between progress updates")
    group.add_argument("--no-progress-bar", action="store_true",
                       help="print Megatron-style progress lines instead of a bar")
    args = parser.parse_args(argv)
    if args.tokenizer_type in ("HuggingFaceTokenizer", "PretrainedFromHF") and not (
        args.tokenizer_model or args.tokenizer_name_or_path
    ):
        parser.error(f"--tokenizer-type {args.tokenizer_type} needs --tokenizer-model "
                     "or --tokenizer-name-or-path (a local tokenizer directory)")
    if args.workers < 1 or args.partitions < 1:
        parser.error("--workers and --partitions must be at least 1")
    return args


def main(argv=None):
    args = get_args(argv)
    factory = functools.partial(
        build_pretraining_tokenizer, args.tokenizer_type, tokenizer_model=args.tokenizer_model,
        vocab_file=args.vocab_file, merge_file=args.merge_file, vocab_size=args.vocab_size,
        tokenizer_name_or_path=args.tokenizer_name_or_path,
        vocab_extra_ids=args.vocab_extra_ids, trust_remote_code=args.trust_remote_code,
    )
    outputs = preprocess(
        args.input, args.output_prefix, factory, json_keys=args.json_keys,
        append_eod=args.append_eod, workers=args.workers, partitions=args.partitions,
        split_sentences=args.split_sentences, log_interval=args.log_interval,
        keep_sequential_samples=args.keep_sequential_samples, lang=args.lang,
        keep_newlines=args.keep_newlines, progress=not args.no_progress_bar,
    )
    for key, prefix in outputs.items():
        print(f"{key}: {prefix}.bin / {prefix}.idx")


if __name__ == "__main__":
    main()
