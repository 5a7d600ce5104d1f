#!/usr/bin/env python
"""What starting the data-loader workers costs in a rank that multiprocessing's spawn started.

    python bench/bench_loader_start.py [--workers 2] [--batches 16] [--repeats 3] [--json OUT.json]

A rank started by multiprocessing's spawn (as the tests start theirs; Python 3.14's default start method,
forkserver, behaves alike) makes spawn its own default, so workers that follow the default are spawned: each
imports torch again and unpickles the dataset. The engine forks them on Linux (fsdp2_core/train/data.py,
`_worker_start`). In one spawned child, best of --repeats, this times a pass of --batches micro-batches through
the engine's `micro_batches` with --workers workers, from the first request to the workers' exit, both ways:
the engine's forked workers, and the reference (multiprocessing's default there, what the engine did before).
"""
import argparse
import json
import multiprocessing as mp
import time


def _pass_seconds(workers: int, batches: int, fork: bool) -> float:
    from fsdp2_core.testing.tiny import SyntheticDataset
    from fsdp2_core.train import data
    if not fork:
        data._worker_start = lambda: None  # the reference: the start method multiprocessing defaults to here
    start = time.perf_counter()
    loader = data.micro_batches(SyntheticDataset(batches * 2), 0, 2, 0, 1, workers=workers)
    for _ in range(batches):
        next(loader)
    loader.close()  # the workers exit
    return time.perf_counter() - start


def _child(args, fork: bool, out) -> None:
    out.put(min(_pass_seconds(args.workers, args.batches, fork) for _ in range(args.repeats)))


def measure(args) -> dict:
    ctx = mp.get_context("spawn")
    result = {}
    for name, fork in (("forked", True), ("reference", False)):
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(args, fork, queue))
        proc.start()
        result[name] = queue.get(timeout=600)
        proc.join()
    return {"workers": args.workers, "batches": args.batches, "repeats": args.repeats,
            "forked_s": result["forked"], "reference_s": result["reference"],
            "speedup": result["reference"] / result["forked"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    r = measure(args)
    print(f"{args.workers} workers, a pass of {args.batches} micro-batches: forked {r['forked_s']:.3f} s, "
          f"reference (spawned) {r['reference_s']:.3f} s, {r['speedup']:.1f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=1)


if __name__ == "__main__":
    main()
