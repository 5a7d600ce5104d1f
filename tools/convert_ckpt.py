#!/usr/bin/env python
"""A saved checkpoint to a Hugging Face model directory (`AutoModelForCausalLM.from_pretrained` loads it).

    python tools/convert_ckpt.py --load OUTPUT_DIR                 # its latest checkpoint
    python tools/convert_ckpt.py --load OUTPUT_DIR/iter_0000100 --output my_model --max-shard-size 2GB
    python tools/convert_ckpt.py --load OUTPUT_DIR --dtype bf16

Writes safetensors (sharded with model.safetensors.index.json above --max-shard-size),
config.json, generation_config.json and the run's tokenizer when the checkpoint holds one.
The default output is OUTPUT_DIR/hf_iter_XXXXXXX/. One process, no accelerator needed:
tensors are read from the DCP files one at a time, whatever layout (FSDP, TP, EP, world
size) saved them. The end of a training run with save_hf_weights writes the same thing to
OUTPUT_DIR/hf_model/.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--load", required=True, help="a "
                                                 "save directory (its latest checkpoint) or an iter_XXXXXXX directory")
    p.add_argument("--output", help="output directory (default: <save>/hf_iter_XXXXXXX)")
    p.add_argument("--max-shard-size", type=parse_size, default=parse_size("5GB"),
                   help="largest safetensors file (default 5GB)")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="cast floating-point weights (default: as trained)")
    args = p.parse_args(argv)

    import torch

    from fsdp2_core.checkpoint import export_checkpoint
    from fsdp2_core.checkpoint.layout import CheckpointError, resolve_explicit
    try:
        path = resolve_explicit(args.load)
        output = args.output or os.path.join(os.path.dirname(os.path.normpath(path)),
                                             "hf_" + os.path.basename(os.path.normpath(path)))
        dtype = getattr(torch, DTYPES[args.dtype]) if args.dtype else None
        result = export_checkpoint(path, output, max_shard_bytes=args.max_shard_size, dtype=dtype)
    except CheckpointError as exc:
        print(f"convert_ckpt.py: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result['tensors']} tensors in {result['files']} safetensors file(s) from {path} to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
