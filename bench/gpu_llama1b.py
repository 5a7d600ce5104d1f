#!/usr/bin/env python
"""Tokens/s, TFLOP/s, MFU and peak memory of a ~1B-parameter Llama-shaped model, bf16, FSDP2 on CUDA GPUs.

    python bench/gpu_llama1b.py [--steps 20] [--batch 4] [--seq 2048]       # one GPU: FSDP2
    torchrun --nproc-per-node 2 bench/gpu_llama1b.py                        # two GPUs: TP 2 (+ FSDP2 when more)
    torchrun --nproc-per-node 8 bench/gpu_llama1b.py --tp 2                 # TP 2 × FSDP 4
    torchrun --nproc-per-node 2 bench/gpu_llama1b.py --smoke                # tiny shape, any device: checks the script

Runs the engine's own model building, parallelize (tensor parallel with sequence parallelism and
the vocabulary-parallel loss when tp > 1) and train step (random tokens, no data files, no
downloads). With more than one process tp defaults to 2. Prints the figures and writes JSON to
$OUT/gpu_llama1b.json when $OUT is set.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

# Llama-3.2-1B's shape: 16 layers, hidden 2048, FFN 8192, 32 heads / 8 KV heads, vocab 128256 (~1.24B params).
ARCH = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
        "rope_theta": 500000.0, "tie_word_embeddings": False}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("--tp", type=int, help="tensor-parallel size (default: 2 with more than one process, else 1)")
    ap.add_argument("--no-sequence-parallel", action="store_true", help="with tp > 1, keep norms whole on every rank")
    ap.add_argument("--smoke", action="store_true", help="tiny shape on any device, to check the script itself")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    arch = dict(ARCH)
    if args.smoke:
        arch.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=256)
        args.seq, args.steps, args.warmup = min(args.seq, 64), 2, 1
    elif not torch.cuda.is_available():
        sys.exit("gpu_llama1b.py needs a CUDA GPU")

    from fsdp2_core.config import build_config
    from fsdp2_core.device import init_distributed
    from fsdp2_core.models.build import count_parameters
    from fsdp2_core.parallel import build_mesh
    from fsdp2_core.train.entry import build_parallel_model
    from fsdp2_core.train.lr_schedule import build_schedule
    from fsdp2_core.train.metrics import flops_per_token, throughput
    from fsdp2_core.train.optimizer import build_optimizer
    from fsdp2_core.train.step import RunContext, train_step

    device = init_distributed()
    world = torch.distributed.get_world_size()
    tp = args.tp or (2 if world > 1 else 1)
    if world % tp:
        sys.exit(f"--tp {tp} does not divide the {world} processes")
    dp = world // tp
    cfg = build_config({"architecture": arch, "output_dir": os.environ.get("OUT", "/tmp/gpu_llama1b"),
                        "param_dtype": "bf16", "reduce_dtype": "fp32", "cutoff_len": args.seq,
                        "per_device_train_batch_size": args.batch, "global_batch_size": args.batch * dp,
                        "max_steps": 1000, "lr": 1e-4, "min_lr": 1e-5, "warmup_ratio": 0.0, "tp_size": tp,
                        "sequence_parallel": not args.no_sequence_parallel,
                        "init_model_with_meta_device": True, "train_from_scratch": True, "recompute": args.recompute})
    mesh = build_mesh(cfg.parallel, world, device.type)
    model = build_parallel_model(cfg, device, mesh)
    opt = build_optimizer(model, cfg.training)
    ctx = RunContext(cfg, model, opt, build_schedule(cfg.training, 1000, args.batch * dp), mesh, device, 1,
                     args.batch * dp)
    g = torch.Generator().manual_seed(0)
    text = torch.randint(0, arch["vocab_size"], (args.batch, args.seq + 1), generator=g)
    batch = {"tokens": text[:, :-1], "labels": text[:, 1:], "loss_mask": torch.ones(args.batch, args.seq),
             "position_ids": torch.arange(args.seq).expand(args.batch, args.seq)}

    times = []
    device.reset_peak_memory()
    for i in range(args.warmup + args.steps):
        device.synchronize()
        t0 = time.perf_counter()
        r = train_step(ctx, [batch])
        device.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    params = count_parameters(model)
    fpt = flops_per_token(model.config, count_parameters(model, exclude_input_embedding=True), args.seq)
    # Each tensor-parallel group trains one micro-batch: dp × batch × seq tokens per step over `world` devices.
    figures = throughput(dp * args.batch * args.seq, step, world, fpt, device.peak_tflops())
    peak = torch.tensor(device.peak_memory_gb(), device=device.torch_device)
    torch.distributed.all_reduce(peak, op=torch.distributed.ReduceOp.MAX)
    result = {"device": device.name(), "devices": world, "tp": tp, "dp": dp,
              "sequence_parallel": tp > 1 and not args.no_sequence_parallel, "params": params, "batch": args.batch,
              "seq": args.seq, "recompute": args.recompute, "step_ms": step * 1e3, "last_loss": r.loss,
              "peak_memory_gb": float(peak), "torch": torch.__version__, **figures}
    mfu = "n/a" if figures["mfu"] is None else f"{100 * figures['mfu']:.1f}%"
    if torch.distributed.get_rank() == 0:
        print(f"{world} × {device.name()}, tp {tp} × dp {dp}: {params / 1e9:.2f}B params, batch {args.batch} x seq "
              f"{args.seq} per group, step {step * 1e3:.1f} ms, {figures['tokens_per_s_per_device']:.0f} tokens/s "
              f"per device, {figures['tflops_per_device']:.1f} TFLOP/s per device, MFU {mfu}, peak memory "
              f"{result['peak_memory_gb']:.1f} GB (largest rank)")
    if os.environ.get("OUT") and torch.distributed.get_rank() == 0:
        os.makedirs(os.environ["OUT"], exist_ok=True)
        with open(os.path.join(os.environ["OUT"], "gpu_llama1b.json"), "w") as fh:
            json.dump(result, fh, indent=1)
    if args.json and torch.distributed.get_rank() == 0:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
