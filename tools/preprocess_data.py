#!/usr/bin/env python
"""Tokenize a corpus into Megatron `.bin/.idx` files, with Megatron-LM's command line.

    python tools/preprocess_data.py --input corpus.jsonl --output-prefix data/corpus \
        --tokenizer-type HuggingFaceTokenizer --tokenizer-model ./tokenizer --append-eod --workers 8

Writes <output-prefix>_<json-key>_document.bin/.idx (…_sentence with --split-sentences).
--input takes jsonl (and json, parquet, arrow through `datasets`), or a glob of them.

MindSpeed-LLM's instruction handlers (fine-tuning data for posttrain_gpt.py --is-instruction-dataset):

    python tools/preprocess_data.py --input alpaca.json --output-prefix data/alpaca \
        --handler-name AlpacaStyleInstructionHandler --prompt-type qwen3 --seq-length 4096 \
        --tokenizer-type PretrainedFromHF --tokenizer-name-or-path ./tokenizer --workers 1 [--pack | --neat-pack]

writes <output-prefix>_packed_{input_ids,attention_mask,labels}_document.bin/.idx, as MindSpeed-LLM does
(SharegptStyleInstructionHandler for sharegpt records; --map-keys renames columns). Without --seq-length a
conversation is cut at 100000 tokens and nothing is dropped, as in MindSpeed-LLM; --pack needs --seq-length.
`--handler-name GeneralPretrainHandler` writes pretraining text as MindSpeed-LLM does (int32 tokens, records
without text skipped); without --handler-name the output is Megatron-LM's.
"""
import argparse
import functools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fsdp2_core.data.megatron.preprocess import DocumentRules, input_files, iter_records, preprocess  # noqa: E402
from fsdp2_core.data.mindspeed.handlers import CUT_STYLE, HANDLERS, REFUSED_HANDLERS, encode_instruction_records  # noqa: E402
from fsdp2_core.data.mindspeed.instruction import template_for_prompt_type, write_instruction_dataset  # noqa: E402
from fsdp2_core.data.tokenizers import TOKENIZER_TYPES, build_pretraining_tokenizer  # noqa: E402

# MindSpeed-LLM's tokenizer types that are not Hugging Face tokenizers, with the reason
REFUSED_TOKENIZER_TYPES = {
    "MagistralTokenizer": "MindSpeed-LLM's wrapper of mistral-common's Tekken tokenizer (tekken.json), which is not "
                          "available here; give the model's Hugging Face tokenizer directory with --tokenizer-type "
                          "PretrainedFromHF --tokenizer-name-or-path DIR",
}


def _thinking(text: str):
    """MindSpeed-LLM's --enable-thinking values: true, false or none, in any case."""
    choices = {"true": True, "false": False, "none": None}
    if text.lower() not in choices:
        raise argparse.ArgumentTypeError(f"expects true, false or none, got {text!r}")
    return choices[text.lower()]


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
    group.add_argument("--tokenizer-type", required=True, help=f"one of {', '.join(TOKENIZER_TYPES)}")
    group.add_argument("--tokenizer-model", "--tokenizer-file", default=None,
                       help="sentencepiece model file or Hugging Face tokenizer directory; bigcode's tokenizer.json "
                            "(--tokenizer-file, with --tokenizer-type TokenizerFromFile)")
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
    group.add_argument("--tokenizer-not-use-fast", dest="use_fast", action="store_false",
                       help="load the Hugging Face tokenizer's slow (Python) version")
    group = parser.add_argument_group("instruction data (MindSpeed-LLM handlers)")
    group.add_argument("--handler-name", default="",
                       help="AlpacaStyleInstructionHandler or SharegptStyleInstructionHandler: write an instruction "
                            "dataset (GeneralPretrainHandler or none: pretraining text)")
    group.add_argument("--prompt-type", default=None,
                       help="chat template of the instruction data, MindSpeed-LLM's names (qwen3, llama3, qwen, "
                            "llama2, mistral, gemma, deepseek3, ...)")
    group.add_argument("--prompt-type-path", default=None, help="MindSpeed's custom template file (not supported)")
    group.add_argument("--enable-thinking", type=_thinking, default=None,
                       help="thinking mode of reasoning templates (qwen3): true trains an empty thought before "
                            "responses without one; false strips thoughts; none (the default) puts the empty "
                            "thought in the prompt")
    group.add_argument("--seq-length", type=int, default=None,
                       help="sequence length: conversations are cut to it (100000 when not given), samples of it "
                            "or more dropped (cut with --neat-pack); packed rows have exactly it")
    group.add_argument("--pack", action="store_true", help="pack samples into rows of --seq-length")
    group.add_argument("--neat-pack", action="store_true",
                       help="pack, recording each token's sample so that samples do not attend to each other")
    group.add_argument("--map-keys", default=None,
                       help='JSON column names, e.g. \'{"prompt":"instruction","query":"input","response":"output"}\'')
    group.add_argument("--overwrite-cache", action="store_true",
                       help="accepted for MindSpeed-LLM's scripts: nothing is cached here, every run tokenizes afresh")
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
    if args.tokenizer_type in REFUSED_TOKENIZER_TYPES:
        parser.error(f"--tokenizer-type {args.tokenizer_type} is not supported: "
                     f"{REFUSED_TOKENIZER_TYPES[args.tokenizer_type]}")
    if args.tokenizer_type not in TOKENIZER_TYPES:
        parser.error(f"--tokenizer-type {args.tokenizer_type}: expects one of {', '.join(TOKENIZER_TYPES)}")
    if args.tokenizer_type.startswith("TokenizerFromFile") and not args.tokenizer_model:
        parser.error(f"--tokenizer-type {args.tokenizer_type} needs --tokenizer-file (bigcode's tokenizer.json)")
    if args.tokenizer_type in ("HuggingFaceTokenizer", "PretrainedFromHF") and not (
        args.tokenizer_model or args.tokenizer_name_or_path
    ):
        parser.error(f"--tokenizer-type {args.tokenizer_type} needs --tokenizer-model "
                     "or --tokenizer-name-or-path (a local tokenizer directory)")
    if args.handler_name in REFUSED_HANDLERS:
        parser.error(f"--handler-name {args.handler_name} is not supported: {REFUSED_HANDLERS[args.handler_name]}")
    if args.handler_name and args.handler_name != "GeneralPretrainHandler":
        if args.handler_name not in HANDLERS:
            parser.error(f"--handler-name {args.handler_name}: supported are GeneralPretrainHandler, "
                         f"{', '.join(HANDLERS)}")
        if not args.prompt_type:
            parser.error(f"--handler-name {args.handler_name} needs --prompt-type (the chat template)")
        if (args.pack or args.neat_pack) and not args.seq_length:
            parser.error("--pack/--neat-pack need --seq-length: rows are packed to exactly that many tokens")
        if args.prompt_type_path:
            parser.error("--prompt-type-path: custom template files are not supported; use a built-in --prompt-type")
        if not (args.tokenizer_name_or_path or args.tokenizer_model):
            parser.error("instruction data needs a Hugging Face tokenizer: --tokenizer-name-or-path DIR")
    elif args.pack or args.neat_pack:
        parser.error("--pack/--neat-pack apply to instruction data (--handler-name AlpacaStyleInstructionHandler ...); "
                     "pretraining data is not packed here")
    if args.workers < 1 or args.partitions < 1:
        parser.error("--workers and --partitions must be at least 1")
    return args


def instruction_main(args):
    """--handler-name Alpaca/SharegptStyleInstructionHandler: MindSpeed-LLM's instruction layout."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_name_or_path or args.tokenizer_model,
                                              local_files_only=True, trust_remote_code=args.trust_remote_code,
                                              use_fast=args.use_fast)
    try:
        template = template_for_prompt_type(args.prompt_type, tokenizer, args.enable_thinking)
        map_keys = json.loads(args.map_keys) if args.map_keys else None
        files = input_files(args.input)
    except (ValueError, json.JSONDecodeError, FileNotFoundError) as exc:
        sys.exit(f"preprocess_data.py: {exc}")
    records = (record for f in files for record, _ in iter_records(f))
    counts = {}
    samples = encode_instruction_records(records, args.handler_name, template, tokenizer, args.seq_length,
                                         CUT_STYLE[args.prompt_type], neat_pack=args.neat_pack, map_keys=map_keys,
                                         append_eod=args.append_eod, counts=counts)
    result = write_instruction_dataset(args.output_prefix, samples, args.seq_length, tokenizer.pad_token_id,
                                       pack=args.pack, neat_pack=args.neat_pack)
    print(f"{result['samples']} samples in {result['rows']} rows ({result['dropped']} too long, "
          f"{counts.get('bad', 0)} malformed records dropped, {counts.get('empty', 0)} written as an empty turn)")
    for key, prefix in result["paths"].items():
        print(f"{key}: {prefix}.bin / {prefix}.idx")


def main(argv=None):
    args = get_args(argv)
    if args.handler_name and args.handler_name != "GeneralPretrainHandler":
        return instruction_main(args)
    factory = functools.partial(
        build_pretraining_tokenizer, args.tokenizer_type, tokenizer_model=args.tokenizer_model,
        vocab_file=args.vocab_file, merge_file=args.merge_file, vocab_size=args.vocab_size,
        tokenizer_name_or_path=args.tokenizer_name_or_path,
        vocab_extra_ids=args.vocab_extra_ids, trust_remote_code=args.trust_remote_code, use_fast=args.use_fast,
    )
    mindspeed = args.handler_name == "GeneralPretrainHandler"
    rules = DocumentRules.mindspeed(args.seq_length) if mindspeed else DocumentRules()
    try:
        outputs = preprocess(
            args.input, args.output_prefix, factory, json_keys=args.json_keys,
            append_eod=args.append_eod, workers=args.workers, partitions=args.partitions,
            split_sentences=args.split_sentences, log_interval=args.log_interval,
            keep_sequential_samples=args.keep_sequential_samples, lang=args.lang,
            keep_newlines=args.keep_newlines, progress=not args.no_progress_bar, rules=rules,
        )
    except (OSError, ValueError) as exc:  # input errors name the file (and line) and what to do
        sys.exit(f"preprocess_data.py: {exc}")
    except KeyError as exc:  # a record without a --json-keys key
        sys.exit(f"preprocess_data.py: {exc.args[0] if exc.args else exc}")
    for key, prefix in outputs.items():
        print(f"{key}: {prefix}.bin / {prefix}.idx")


if __name__ == "__main__":
    main()
