"""Fused kernels against their references, on whatever device runs this.

    python bench/bench_kernels.py [--device auto|cpu|cuda|npu] [--dtype bf16|fp32] [--iters 20] [--quick]
                                  [--json out.json]

For each kernel of `fsdp2_core/kernels` (RMSNorm, rotary embedding, causal attention, MoE grouped GEMM) it
times the reference implementation and the implementation `select.choose` picks on this device (forward
only, median of --iters after warm-up), and reports the largest difference between their outputs. On CPU
the selected implementation is the reference itself (the ratio is then ~1 by construction). A last row
times an MXFP8-quantised linear (fsdp2_core/quant/mxfp8: torchao's MXFP8 GEMMs on sm100, emulation
elsewhere) against the plain linear, forward and backward.
Prints a Markdown table; --json writes the figures for bench/run.py.
"""
import argparse
import json
import os
import statistics
import time

import torch

from fsdp2_core.device import detect_device_type
from fsdp2_core.kernels import select
from fsdp2_core.kernels.attention import attention_reference, causal_attention
from fsdp2_core.kernels.grouped_gemm import grouped_gemm, grouped_gemm_reference
from fsdp2_core.kernels.rmsnorm import rmsnorm, rmsnorm_reference
from fsdp2_core.kernels.rotary import rotary, rotary_reference
from fsdp2_core.quant import mxfp8

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _sync(device):
    mod = getattr(torch, device.type, None) if device.type != "cpu" else None
    if mod is not None:
        mod.synchronize()


def timed(fn, device, iters):
    fn()
    fn()
    _sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def cases(device, dtype, quick):
    g = torch.Generator(device="cpu").manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)
    b, h, kv, s, d = (1, 4, 2, 128, 64) if quick else (2, 16, 4, 1024, 128)
    tokens, hidden = b * s, h * d
    x, w = rnd(tokens, hidden), rnd(hidden)
    q, k, v = rnd(b, h, s, d), rnd(b, kv, s, d), rnd(b, kv, s, d)
    cos, sin = rnd(1, 1, s, d), rnd(1, 1, s, d)
    experts, ffn = 8, (64 if quick else 512)
    counts = torch.bincount(torch.randint(0, experts, (tokens * 2,), generator=g), minlength=experts).to(device)
    xs, ws = rnd(tokens * 2, hidden), rnd(experts, hidden, ffn)
    scale = d ** -0.5
    return [
        ("rmsnorm", f"[{tokens}, {hidden}]", lambda: rmsnorm_reference(x, w, 1e-6), lambda: rmsnorm(x, w, 1e-6)),
        ("rotary", f"q [{b}, {h}, {s}, {d}]", lambda: rotary_reference(q, cos, sin), lambda: rotary(q, cos, sin)),
        ("attention", f"[{b}, {h}/{kv}, {s}, {d}] causal", lambda: attention_reference(q, k, v, scale),
         lambda: causal_attention(q, k, v, scale)),
        ("grouped_gemm", f"{tokens * 2} rows, {experts} × [{hidden}, {ffn}]",
         lambda: grouped_gemm_reference(xs, ws, counts), lambda: grouped_gemm(xs, ws, counts)),
    ]


def mx_case(device, dtype, quick, iters):
    n, k, m = (256, 256, 256) if quick else (4096, 2048, 2048)
    lin = torch.nn.Linear(k, m, bias=False).to(device=device, dtype=dtype)
    x = torch.randn(n, k, device=device, dtype=dtype, requires_grad=True)

    def step():
        lin(x).float().square().mean().backward()
    plain = timed(step, device, iters)
    ref = lin(x).detach().float()
    mxfp8.convert_linear(lin, "E4M3", 32)
    mxfp8.RAN.clear()
    quant = timed(step, device, iters)
    out = lin(x).detach().float()
    return {"kernel": "mxfp8 linear (fwd+bwd)", "shape": f"[{n}, {k}] × [{k}, {m}]",
            "implementation": ",".join(mxfp8.RAN),
            "reference_ms": plain, "fused_ms": quant, "speedup": plain / quant,
            "max_abs_diff": float((out - ref).abs().max()), "rel_error": float((out - ref).norm() / ref.norm())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "npu"])
    ap.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    device_type = detect_device_type() if args.device == "auto" else args.device
    if device_type == "npu":
        import torch_npu  # noqa: F401
    device = torch.device(device_type if device_type == "cpu" else f"{device_type}:0")
    dtype_name = args.dtype if args.dtype != "auto" else ("fp32" if device_type == "cpu" else "bf16")
    dtype = DTYPES[dtype_name]
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1))) if device_type == "cpu" else None
    rows = []
    with torch.no_grad():
        for kernel, shape, ref_fn, fused_fn in cases(device, dtype, args.quick):
            select.reset()
            diff = float((fused_fn().float() - ref_fn().float()).abs().max())
            impl = ",".join(select.ran(kernel))
            ref_ms, fused_ms = timed(ref_fn, device, args.iters), timed(fused_fn, device, args.iters)
            rows.append({"kernel": kernel, "shape": shape, "implementation": impl, "reference_ms": ref_ms,
                         "fused_ms": fused_ms, "speedup": ref_ms / fused_ms, "max_abs_diff": diff})
    rows.append(mx_case(device, dtype, args.quick, max(3, args.iters // 4)))
    name = torch.cuda.get_device_name(0) if device_type == "cuda" else device_type
    print(f"device {name}, dtype {dtype_name}, torch {torch.__version__}")
    print("| kernel | shape | implementation | reference (ms) | selected (ms) | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kernel']} | {r['shape']} | {r['implementation']} | {r['reference_ms']:.3f} | {r['fused_ms']:.3f} "
              f"| {r['speedup']:.2f}× | {r['max_abs_diff']:.2e} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "device_type": device_type, "dtype": dtype_name, "torch": torch.__version__,
                       "quick": args.quick, "iters": args.iters, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
