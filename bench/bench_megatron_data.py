#!/usr/bin/env python
"""Index build time and sample reads/s: fsdp2_core.data beside megatron-core, same corpus, same run.

    python bench/bench_megatron_data.py [--docs 100000] [--reads 20000] [--json out.json]

Writes two 100,000-document corpora (megatron-core's builder), then for a single prefix and a
0.3/0.7 blend builds train/valid/test indices with each implementation (fresh cache directories,
best of --repeats) and reads --reads samples in shuffled order. Both sides must return the same
samples; the script checks that before printing figures.
"""
import argparse
import json
import os
import shutil
import tempfile
import time
import warnings

warnings.filterwarnings("ignore")  # before the imports: megatron-core warns while importing

import numpy as np  # noqa: E402

from fsdp2_core.data.megatron import build_pretraining_datasets  # noqa: E402
from fsdp2_core.data.megatron.native import native_available  # noqa: E402


class Tok:
    vocab_size, eod = 50000, 49999

    @property
    def unique_identifiers(self):
        return {"class": "Tok"}


def write_corpus(prefix, docs, seed):
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 1500, docs)
    tokens = rng.integers(0, 49999, int(lengths.sum())).astype(np.uint16)
    ends = np.cumsum(lengths)
    tokens[ends - 1] = 49999
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    start = 0
    for end in ends:
        builder.add_document(tokens[start:end], [int(end - start)])
        start = end
    builder.finalize(prefix + ".idx")


def megatron_build(data_path, sizes, seq, cache):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.utils import get_blend_from_list

    config = GPTDatasetConfig(random_seed=1234, sequence_length=seq,
                              blend=get_blend_from_list(data_path), split="969,30,1",
                              path_to_cache=cache, tokenizer=Tok(), reset_position_ids=False,
                              reset_attention_mask=False, eod_mask_loss=False,
                              create_attention_mask=False)
    return BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()


def ours_build(data_path, sizes, seq, cache):
    return build_pretraining_datasets(data_path, "969,30,1", seq, 1234, sizes, cache_dir=cache,
                                      tokenizer=Tok())


def timed_build(fn, data_path, sizes, seq, repeats, root):
    best = float("inf")
    for r in range(repeats):
        cache = tempfile.mkdtemp(dir=root)
        t = time.perf_counter()
        result = fn(data_path, sizes, seq, cache)
        best = min(best, time.perf_counter() - t)
    return best, result


def reads_per_second(dataset, order):
    t = time.perf_counter()
    for i in order:
        dataset[int(i)]
    return len(order) / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100000)
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seq-length", type=int, default=4096)
    parser.add_argument("--train-samples", type=int, default=200000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    import torch.distributed as dist  # megatron's BlendedDataset cache path asks for the rank

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29561")
    dist.init_process_group("gloo", rank=0, world_size=1)

    root = tempfile.mkdtemp(prefix="bench_megatron_data_")
    try:
        a, b = os.path.join(root, "a"), os.path.join(root, "b")
        t = time.perf_counter()
        write_corpus(a, args.docs, 1)
        write_corpus(b, args.docs, 2)
        print(f"corpus: 2 x {args.docs} documents written in {time.perf_counter() - t:.1f}s; "
              f"native blending helper: {native_available()}")
        sizes = [args.train_samples, args.train_samples // 100, args.train_samples // 1000]
        rows = []
        for name, data_path in (("single prefix", [a]), ("blend 0.3/0.7", ["0.3", a, "0.7", b])):
            mg_time, mg_ds = timed_build(megatron_build, data_path, sizes, args.seq_length,
                                         args.repeats, root)
            our_time, our_ds = timed_build(ours_build, data_path, sizes, args.seq_length,
                                           args.repeats, root)
            order = np.random.default_rng(0).permutation(len(our_ds[0]))[: args.reads]
            for i in order[:200]:
                assert np.array_equal(mg_ds[0][int(i)]["tokens"], our_ds[0][int(i)]["tokens"])
            mg_reads = reads_per_second(mg_ds[0], order)
            our_reads = reads_per_second(our_ds[0], order)
            mg_reads = max(mg_reads, reads_per_second(mg_ds[0], order))
            our_reads = max(our_reads, reads_per_second(our_ds[0], order))
            rows.append((name, mg_time, our_time, mg_reads, our_reads))
        print()
        print("| configuration | index build, megatron-core | index build, ours | "
              "reads/s, megatron-core | reads/s, ours |")
        print("|---|---|---|---|---|")
        for name, mt, ot, mr, orr in rows:
            print(f"| {name} | {mt:.3f} s | {ot:.3f} s | {mr:,.0f} | {orr:,.0f} |")
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"docs": args.docs, "reads": args.reads,
                           "repeats": args.repeats, "seq_length": args.seq_length,
                           "train_samples": args.train_samples, "native": bool(native_available()),
                           "rows": [{"configuration": name, "megatron_build_s": mt, "ours_build_s": ot,
                                     "megatron_reads_per_s": mr, "ours_reads_per_s": orr}
                                    for name, mt, ot, mr, orr in rows]}, fh, indent=1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
