#!/usr/bin/env python
"""Engine benchmark on CPU (not a test): overhead against a bare PyTorch loop, and bytes per rank.

    python bench/bench_engine.py [--steps 20] [--ranks 2 4] [--json out.json]

1. Step time at world size 1: our engine (FSDP2 wrapping, loss, clipping, schedule) against
   a bare loop over the same Hugging Face model, batch and AdamW (model(..., labels) + step).
2. Parameter, gradient and AdamW-state bytes held per rank under FSDP over N ranks, against one rank.
"""
import argparse
import json
import os
import statistics
import time

import torch

ARCH = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
        "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 4096, "max_position_embeddings": 512,
        "tie_word_embeddings": False}
SEQ, BATCH = 256, 4


def _cfg(tmp, **over):
    from fsdp2_core.testing.tiny import tiny_config
    return tiny_config(tmp, architecture=dict(ARCH), cutoff_len=SEQ, per_device_train_batch_size=BATCH,
                       global_batch_size=BATCH, max_grad_norm=1.0, warmup_ratio=0.0, max_steps=1000, **over)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(0, ARCH["vocab_size"], (BATCH, SEQ + 1), generator=g)
    return {"tokens": text[:, :-1], "labels": text[:, 1:], "loss_mask": torch.ones(BATCH, SEQ),
            "position_ids": torch.arange(SEQ).expand(BATCH, SEQ)}


def _interleaved(fns, steps):
    """Median seconds per call of each fn, calls alternating so machine noise hits all alike; the order rotates
    every round, so no fn always runs first (right after another's memory was freed)."""
    for _ in range(3):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for round_ in range(steps):
        for k in range(len(fns)):
            i = (round_ + k) % len(fns)
            t0 = time.perf_counter()
            fns[i]()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def engine_step(cfg, wrap: bool = False):
    """The engine's step at world size 1; `wrap`: FSDP2-wrapped all the same (what a single fp32 rank skips)."""
    from fsdp2_core.device import init_distributed
    from fsdp2_core.parallel import build_mesh, modules_used_twice
    from fsdp2_core.parallel.fsdp import apply_fsdp
    from fsdp2_core.train.entry import build_parallel_model
    from fsdp2_core.train.loss import register_loss_with_fsdp
    from fsdp2_core.train.lr_schedule import build_schedule
    from fsdp2_core.train.optimizer import build_optimizer
    from fsdp2_core.train.step import RunContext, train_step
    device = init_distributed("cpu")
    mesh = build_mesh(cfg.parallel, 1, "cpu")
    model = build_parallel_model(cfg, device, mesh)
    if wrap:
        apply_fsdp(model, mesh.fsdp, cfg.parallel, keep_in_root=modules_used_twice(model, chunked_head=False))
        register_loss_with_fsdp(model)
    opt = build_optimizer(model, cfg.training)
    sched = build_schedule(cfg.training, 1000, BATCH)
    ctx = RunContext(cfg, model, opt, sched, mesh, device, 1, BATCH)
    batch = _batch()
    return lambda: train_step(ctx, [batch])


def bare_step(t):
    """The plain loop: HF model with its own loss, clip_grad_norm_, AdamW with the engine's hyper-parameters and
    PyTorch's default implementation for the device."""
    from transformers import AutoConfig, AutoModelForCausalLM
    arch = dict(ARCH)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(arch.pop("model_type"), **arch))
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_epsilon,
                            weight_decay=t.weight_decay)
    b = _batch()
    labels = torch.cat([b["tokens"][:, :1], b["labels"]], dim=1)[:, :SEQ]  # HF shifts labels itself

    def step():
        loss = model(input_ids=b["tokens"], labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def step_times(steps):
    cfg = _cfg("/tmp/bench_engine")
    return _interleaved([engine_step(cfg), bare_step(cfg.training), engine_step(cfg, wrap=True)], steps)


def bytes_per_rank(tmp):
    """On every rank: one step, then the local bytes of parameters, gradients (before zeroing) and AdamW state."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from fsdp2_core.device import init_distributed
    from fsdp2_core.parallel import build_mesh
    from fsdp2_core.train.entry import build_parallel_model
    from fsdp2_core.train.optimizer import build_optimizer
    cfg = _cfg(tmp, data_parallel="fsdp")  # what FSDP holds per rank (auto would replicate this fp32 CPU model)
    device = init_distributed("cpu")
    mesh = build_mesh(cfg.parallel, dist.get_world_size(), "cpu")
    model = build_parallel_model(cfg, device, mesh)
    opt = build_optimizer(model, cfg.training)
    local = lambda t: t.to_local() if isinstance(t, DTensor) else t  # noqa: E731
    nbytes = lambda ts: sum(local(t).numel() * local(t).element_size() for t in ts)  # noqa: E731
    s, n = model.lm_loss(**{k: v for k, v in _batch().items() if k != "position_ids"})
    (s / n).backward()
    grads = nbytes(p.grad for p in model.parameters() if p.grad is not None)
    opt.step()
    states = nbytes(v for st in opt.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0)
    out = {"params": nbytes(model.parameters()), "grads": grads, "optimizer": states}
    dist.destroy_process_group()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--ranks", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.manual_seed(0)
    from fsdp2_core.testing.spawn import spawn
    ours, bare, wrapped = spawn(1, step_times, args.steps, timeout=3600)[0]  # a loaded shared machine is slow
    result = {"model": ARCH, "seq": SEQ, "batch": BATCH, "threads": 1, "engine_ms": ours * 1e3, "bare_ms": bare * 1e3,
              "wrapped_ms": wrapped * 1e3, "overhead_pct": 100.0 * (ours / bare - 1.0),
              "load_average": list(os.getloadavg()), "bytes": {}}
    result["bytes"]["1"] = spawn(1, bytes_per_rank, "/tmp/bench_mem", timeout=1200)[0]
    for n in args.ranks:
        result["bytes"][str(n)] = spawn(n, bytes_per_rank, "/tmp/bench_mem", timeout=1200)[0]
    print(f"step time, world 1: engine {result['engine_ms']:.1f} ms, bare PyTorch {result['bare_ms']:.1f} ms, "
          f"overhead {result['overhead_pct']:+.1f}%; engine FSDP2-wrapped {result['wrapped_ms']:.1f} ms")
    one = result["bytes"]["1"]
    print("| ranks | params (MiB) | grads (MiB) | AdamW state (MiB) | fraction of one rank |")
    print("|---|---|---|---|---|")
    for n, b in result["bytes"].items():
        frac = (b["params"] + b["grads"] + b["optimizer"]) / (one["params"] + one["grads"] + one["optimizer"])
        print(f"| {n} | {b['params'] / 2**20:.2f} | {b['grads'] / 2**20:.2f} | {b['optimizer'] / 2**20:.2f} | "
              f"{frac:.3f} (1/{n} = {1 / int(n):.3f}) |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
