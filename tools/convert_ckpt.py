#!/usr/bin/env python
"""Checkpoint conversions: ours or Megatron-LM's to a Hugging Face model; ours or a Hugging Face model to Megatron-LM.

    python tools/convert_ckpt.py --load OUTPUT_DIR                      # our latest -> OUTPUT_DIR/hf_iter_XXXXXXX
    python tools/convert_ckpt.py --load OUTPUT_DIR/iter_0000100 --output my_model --max-shard-size 2GB --dtype bf16
    python tools/convert_ckpt.py --load MEGATRON_SAVE --output HF_DIR   # a Megatron-LM checkpoint (torch, torch_dist)
    python tools/convert_ckpt.py --load HF_DIR_OR_OUTPUT_DIR --to-megatron MEGATRON_OUT --target-tp 2 --target-pp 2 \\
                                 [--format torch_dist|torch] [--megatron-spec te|local]

To Hugging Face: safetensors (sharded with model.safetensors.index.json above --max-shard-size),
config.json, generation_config.json, and the run's tokenizer when our checkpoint holds one. A
Megatron checkpoint's architecture comes from the args it saved; its padded vocabulary is kept
unless --trim-vocab gives the tokenizer's size (the padding rows dropped are reported).
To Megatron-LM: latest_checkpointed_iteration.txt and iter_XXXXXXX/ with the saved args, split for
--target-tp/--target-pp; load it in Megatron with the same sizes and --no-load-optim --no-load-rng
(continuing the counters of our checkpoint), or --finetune.

The output is never a checkpoint directory and never a non-empty folder unless --overwrite; it is
written beside its final place and renamed at the end, so a failed conversion leaves nothing
behind. One process, no accelerator: tensors are read one at a time (one layer for Megatron input).
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size such as 5GB, 500MB or 1000000")
    unit = m.group(2).upper().rstrip("B").rstrip("I")
    return int(float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[unit])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", required=True, help="our save or iter_XXXXXXX directory, a Megatron-LM save / "
                                                 "iter_XXXXXXX / release directory, or (with --to-megatron) a Hugging "
                                                 "Face model")
    p.add_argument("--output", help="Hugging Face output directory (default: <save>/hf_<iter_XXXXXXX>)")
    p.add_argument("--to-megatron", metavar="DIR", help="write a Megatron-LM checkpoint (save directory) instead")
    p.add_argument("--target-tp", type=int, default=1, help="Megatron tensor-parallel size (--to-megatron)")
    p.add_argument("--target-pp", type=int, default=1, help="Megatron pipeline-parallel size (--to-megatron)")
    p.add_argument("--format", choices=("torch_dist", "torch"), default="torch_dist",
                   help="Megatron checkpoint format (--to-megatron; default torch_dist)")
    p.add_argument("--megatron-spec", choices=("te", "local"), default="te",
                   help="the layer spec Megatron will build: Transformer Engine's (default) or the local one "
                        "(--transformer-impl local)")
    p.add_argument("--make-vocab-size-divisible-by", type=int, default=128,
                   help="Megatron's vocabulary padding (--to-megatron; default 128)")
    p.add_argument("--max-shard-size", type=parse_size, default=parse_size("5GB"),
                   help="largest safetensors file (default 5GB)")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="cast floating-point weights (default: as stored)")
    p.add_argument("--trim-vocab", type=int, metavar="N",
                   help="keep the first N rows of a Megatron checkpoint's padded vocabulary (the tokenizer's size)")
    p.add_argument("--trust-megatron-pickle", action="store_true",
                   help="unpickle Megatron files fully, types outside the allow-list included (runs code from them)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    import torch

    from fsdp2_core.checkpoint.layout import CheckpointError
    from megatron_compat.architecture import ArchitectureError
    dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
    try:
        if args.to_megatron:
            return to_megatron(args, dtype)
        from fsdp2_core.checkpoint.megatron.detect import locate
        if locate(args.load) is not None:
            return megatron_to_hf(args, dtype)
        return ours_to_hf(args, dtype)
    except (CheckpointError, ArchitectureError) as exc:
        print(f"convert_ckpt.py: {exc}", file=sys.stderr)
        return 2


def _staged(output: str, sources, overwrite: bool, write):
    """Run write(staging_dir) and publish it as `output`; on any failure remove only the staging directory."""
    from fsdp2_core.checkpoint.output_dir import claim_output, discard, publish
    staging = claim_output(output, sources, overwrite)
    try:
        result = write(staging)
        publish(staging, output)
    except BaseException:
        discard(staging)
        raise
    return result


def ours_to_hf(args, dtype) -> int:
    from fsdp2_core.checkpoint import export_checkpoint
    from fsdp2_core.checkpoint.layout import resolve_explicit
    path = resolve_explicit(args.load)
    save_dir = os.path.dirname(os.path.normpath(path))
    output = args.output or os.path.join(save_dir, "hf_" + os.path.basename(os.path.normpath(path)))
    result = _staged(output, [path, args.load], args.overwrite,
                     lambda d: export_checkpoint(path, d, max_shard_bytes=args.max_shard_size, dtype=dtype))
    print(f"wrote {result['tensors']} tensors in {result['files']} safetensors file(s) from {path} to {output}")
    return 0


def megatron_to_hf(args, dtype) -> int:
    from fsdp2_core.checkpoint.megatron.checkpoint import open_checkpoint
    from fsdp2_core.checkpoint.megatron.to_hf import megatron_to_hf as convert
    from megatron_compat.checkpoint_args import hf_config_for
    ckpt = open_checkpoint(args.load, trust=args.trust_megatron_pickle)
    config, notes = hf_config_for(ckpt)
    base = ckpt.located.save_dir or os.path.dirname(ckpt.path)
    output = args.output or os.path.join(base, "hf_" + os.path.basename(ckpt.path))
    result = _staged(output, [ckpt.path, args.load], args.overwrite,
                     lambda d: convert(ckpt, config, d, max_shard_bytes=args.max_shard_size, dtype=dtype,
                                       trim_vocab=args.trim_vocab))
    for note in notes:
        print(f"note: {note}")
    if args.trim_vocab is not None:
        print(f"vocabulary trimmed to {args.trim_vocab} rows: {result['padding_rows_dropped']} padding rows of "
              f"Megatron's {args.trim_vocab + result['padding_rows_dropped']} dropped")
    print(f"wrote {result['tensors']} tensors in {result['files']} safetensors file(s) of a {config.model_type} model "
          f"from Megatron checkpoint {ckpt.path} ({ckpt.format}, iteration {ckpt.iteration}) to {output}")
    return 0


def to_megatron(args, dtype) -> int:
    from fsdp2_core.checkpoint.layout import TRACKER, resolve_explicit
    from fsdp2_core.checkpoint.megatron.hf_source import from_hf_dir, from_our_checkpoint
    from fsdp2_core.checkpoint.megatron.write import write_megatron
    from megatron_compat.checkpoint_args import megatron_args_for
    load = args.load
    if os.path.isfile(os.path.join(load, "config.json")) and not os.path.isfile(os.path.join(load, TRACKER)) \
            and not os.path.isfile(os.path.join(load, ".metadata")):
        source = from_hf_dir(load)
    else:
        source = from_our_checkpoint(resolve_explicit(load))
    if args.target_tp < 1 or args.target_pp < 1:
        raise SystemExit("convert_ckpt.py: --target-tp and --target-pp must be at least 1")
    margs = megatron_args_for(source.config, args.target_tp, args.target_pp, args.format, args.megatron_spec,
                              args.make_vocab_size_divisible_by, source.iteration, source.consumed_train_samples)
    result = _staged(args.to_megatron, [source.path, load], args.overwrite,
                     lambda d: write_megatron(source, d, margs, fmt=args.format, spec=args.megatron_spec, dtype=dtype))
    print(f"wrote a Megatron-LM {args.format} checkpoint (tp {args.target_tp}, pp {args.target_pp}, "
          f"{args.megatron_spec} spec, iteration {result['iteration']}) of {source.path} to {args.to_megatron}; "
          f"vocabulary padded to {result['padded_vocab_size']} (+{result['padding_rows_added']} zero rows). Load it "
          f"with --load {args.to_megatron} --tensor-model-parallel-size {args.target_tp} "
          f"--pipeline-model-parallel-size {args.target_pp} and --no-load-optim --no-load-rng (or --finetune)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
