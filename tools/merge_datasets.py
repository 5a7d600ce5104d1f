#!/usr/bin/env python
"""Concatenate every `.bin/.idx` pair of a directory into one dataset (Megatron's command line).

    python tools/merge_datasets.py --input data/shards --output-prefix data/merged

Pairs are merged in sorted name order; all must share one token dtype.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fsdp2_core.data.megatron.indexed_dataset import (  # noqa: E402
    IndexedDataset,
    IndexedDatasetBuilder,
    get_bin_path,
    get_idx_path,
)


def find_prefixes(directory: str):
    if not os.path.isdir(directory):
        raise SystemExit(f"--input {directory}: not a directory of .bin/.idx pairs")
    prefixes = set()
    for name in os.listdir(directory):
        stem, ext = os.path.splitext(name)
        if ext not in (".bin", ".idx") or not os.path.isfile(os.path.join(directory, name)):
            continue
        partner = os.path.join(directory, stem + (".idx" if ext == ".bin" else ".bin"))
        if not os.path.isfile(partner):
            raise SystemExit(f"{os.path.join(directory, name)} has no partner {partner}")
        prefixes.add(stem)
    if not prefixes:
        raise SystemExit(f"--input {directory}: no .bin/.idx pair found")
    return [os.path.join(directory, p) for p in sorted(prefixes)]


def merge(prefixes, output_prefix: str, multimodal: bool = False) -> None:
    first = IndexedDataset(prefixes[0], multimodal=multimodal)
    builder = IndexedDatasetBuilder(get_bin_path(output_prefix), dtype=first.index.dtype,
                                    multimodal=multimodal)
    del first
    try:
        for prefix in prefixes:
            IndexedDataset(prefix, multimodal=multimodal)  # validates the pair before copying
            builder.add_index(prefix)
        builder.finalize(get_idx_path(output_prefix))
    except BaseException:
        builder.abort()
        raise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="directory holding the .bin/.idx pairs")
    parser.add_argument("--output-prefix", required=True, help="prefix of the merged dataset")
    parser.add_argument("--multimodal", action="store_true", help="the datasets carry modes")
    args = parser.parse_args(argv)
    merge(find_prefixes(args.input), args.output_prefix, args.multimodal)
    print(f"merged into {args.output_prefix}.bin / {args.output_prefix}.idx")


if __name__ == "__main__":
    main()
