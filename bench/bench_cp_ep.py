"""All-to-all volume and step time of context and expert parallelism against the unsplit run.

    python bench/bench_cp_ep.py [--seq 256] [--iters 6] [--world 2] [--json out.json]

Spawns gloo ranks on CPU (or NCCL on GPUs with FSDP2_DEVICE unset and enough devices) and trains a
small Qwen3-MoE with our forward for `--iters` iterations under each layout:
  unsplit   FSDP over the ranks, every expert on every rank
  cp        Ulysses context parallel over all ranks (each holds seq / world tokens)
  ep        expert parallel over all ranks (each holds experts / world)
Reported per layout: median step time after the first iteration, and the bytes each rank sends in
all-to-alls per iteration (forward and backward; `fsdp2_core.parallel.comm.COMM` counts them).
Prints a Markdown table for docs/benchmarks.md.
"""
import argparse
import json
import os
import statistics
import time

VOCAB = 512


def arch(seq):
    return {"model_type": "qwen3_moe", "hidden_size": 128, "intermediate_size": 256, "moe_intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 16,
            "num_experts": 8, "num_experts_per_tok": 2, "norm_topk_prob": True, "vocab_size": VOCAB,
            "max_position_embeddings": seq, "tie_word_embeddings": False}


class Timed:
    """Checkpoint hooks that time each iteration and read the all-to-all counter."""

    def __init__(self):
        from fsdp2_core.parallel.comm import COMM
        self.comm, self.times, self.bytes = COMM, [], []

    def load(self, *a):
        self.comm.reset()
        self.t0 = time.perf_counter()

    def after_step(self, *a):
        self.times.append(time.perf_counter() - self.t0)
        self.bytes.append(self.comm.all_to_all_bytes)
        self.comm.reset()
        self.t0 = time.perf_counter()
        return False

    def finish(self, *a):
        pass


def run(tmp, seq, iters, layouts):
    from fsdp2_core.testing.tiny import SyntheticDataset, tiny_config
    from fsdp2_core.train import run_training
    out = []
    for name, over, port in layouts:
        os.environ["MASTER_PORT"] = str(port)
        cfg = tiny_config(os.path.join(tmp, name), architecture=arch(seq), model_id="qwen3_moe", cutoff_len=seq,
                          max_steps=iters, per_device_train_batch_size=1, global_batch_size=4,
                          data_parallel="fsdp", **over)  # the unsplit reference is FSDP, as the page says
        hooks = Timed()
        data = (SyntheticDataset(64, seq=seq, vocab=VOCAB),)
        run_training(cfg, datasets=data, checkpoint=hooks, print_fn=lambda s: None)
        out.append((name, statistics.median(hooks.times[1:]), statistics.median(hooks.bytes[1:])))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    import tempfile

    from fsdp2_core.testing.spawn import free_port, spawn
    w = args.world
    layouts = [("unsplit", {}), (f"cp={w}", {"cp_size": w}), (f"ep={w}", {"ep_size": w}),
               (f"cp={w}, ep={w}", {"cp_size": w, "ep_size": w})]
    with tempfile.TemporaryDirectory() as tmp:
        rows = spawn(w, run, tmp, args.seq, args.iters, [(n, o, free_port()) for n, o in layouts], timeout=1800)[0]
    base = rows[0][1]
    print(f"world {w}, seq {args.seq}, micro-batch 1, global batch 4, Qwen3-MoE h128 8 heads 8 experts top-2, fp32\n")
    print("| layout | step time (s) | vs unsplit | all-to-all sent per rank per iteration |")
    print("|---|---|---|---|")
    for name, t, b in rows:
        print(f"| {name} | {t:.3f} | {t / base:.2f}× | {b / 2**20:.2f} MiB |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"world": w, "seq": args.seq, "iters": args.iters, "arch": arch(args.seq),
                       "rows": [{"layout": name, "step_s": t, "vs_unsplit": t / base, "all_to_all_bytes": b}
                                for name, t, b in rows]}, fh, indent=1)


if __name__ == "__main__":
    main()
