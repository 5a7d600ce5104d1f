#!/usr/bin/env python
"""What the integrity checks cost: checkpoint checksums, and the data checks made once at start.

    python bench/bench_integrity.py [--mib 100] [--repeats 3] [--json OUT.json]

Checkpoints: writes a DCP checkpoint of about --mib MiB (fp32 tensors of 1024 × 1024, one process,
as one rank of a save writes its shard) and times, best of --repeats: the DCP save itself (the
reference), `checksums.record` (what a save adds before publishing), and `checksums.mismatches`
(what a resume adds). Files are read back from the page cache right after being written, as at a save.

Data: writes a Megatron .bin/.idx corpus of about --mib MiB of uint16 tokens and times the .idx
check (`IndexedDataset.check_sequences`, every run) and the token-id scan (`token_id_range`, once
per .bin: later runs read the cached answer).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import zlib

import numpy as np
import torch
import torch.distributed.checkpoint as dcp

from fsdp2_core.checkpoint import checksums
from fsdp2_core.data.megatron import IndexedDataset, IndexedDatasetBuilder


def state_dict(mib: int) -> dict:
    """Tensors of 4 MiB (1024 × 1024 fp32) adding up to `mib` MiB."""
    gen = torch.Generator().manual_seed(0)
    return {f"layer{i}.weight": torch.randn(1024, 1024, generator=gen) for i in range(max(mib // 4, 1))}


def corpus(prefix: str, mib: int) -> int:
    """Documents of 50-1,499 uint16 tokens up to `mib` MiB; returns the document count."""
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    written, docs = 0, 0
    while written < mib << 20:
        tokens = rng.integers(0, 50000, size=int(rng.integers(50, 1500)), dtype=np.uint16)
        builder.add_document(tokens, [tokens.size])
        written += tokens.nbytes
        docs += 1
    builder.finalize(prefix + ".idx")
    return docs


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sd = state_dict(args.mib)
    root = tempfile.mkdtemp(prefix="bench-checksums-")
    try:
        path = os.path.join(root, "iter_0000001")

        def save():
            shutil.rmtree(path, ignore_errors=True)
            dcp.save(sd, checkpoint_id=path)

        save_s = best(save, args.repeats)
        record_s = best(lambda: checksums.record(path), args.repeats)
        verify_s = best(lambda: checksums.mismatches(path), args.repeats)
        assert checksums.mismatches(path) == []
        total = sum(os.path.getsize(os.path.join(path, f)) for f in checksums.list_files(path))
        buffer = os.urandom(64 << 20)
        crc_s = best(lambda: zlib.crc32(buffer), args.repeats)
        prefix = os.path.join(root, "corpus_text_document")
        docs = corpus(prefix, args.mib)
        bin_mib = os.path.getsize(prefix + ".bin") / 2**20
        idx_check_s = best(lambda: IndexedDataset(prefix).check_sequences(), args.repeats)
        scan_s = best(lambda: IndexedDataset(prefix)._scan_token_ids(), args.repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"repeats": args.repeats, "mib": total / 2**20, "save_s": save_s, "record_s": record_s,
              "verify_s": verify_s,
              "record_gb_s": total / record_s / 1e9, "verify_gb_s": total / verify_s / 1e9,
              "crc32_memory_gb_s": len(buffer) / crc_s / 1e9, "record_over_save": record_s / save_s,
              "bin_mib": bin_mib, "documents": docs, "idx_check_s": idx_check_s, "token_scan_s": scan_s,
              "token_scan_gb_s": bin_mib * 2**20 / scan_s / 1e9}
    print(f"checkpoint {result['mib']:.1f} MiB: DCP save {save_s:.3f} s, checksums at save {record_s:.3f} s "
          f"({result['record_gb_s']:.2f} GB/s, {100 * result['record_over_save']:.0f} % of the save), "
          f"verification at resume {verify_s:.3f} s ({result['verify_gb_s']:.2f} GB/s); "
          f"CRC-32 in memory {result['crc32_memory_gb_s']:.2f} GB/s")
    print(f"corpus {bin_mib:.1f} MiB, {docs:,} documents: .idx check {idx_check_s * 1e3:.1f} ms, token-id scan "
          f"{scan_s:.3f} s ({result['token_scan_gb_s']:.2f} GB/s, once per .bin)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
