#!/usr/bin/env python
"""Run every benchmark of the project in one go and rewrite docs/benchmarks.md from their results.

    python bench/run.py                      # all CPU benchmarks (+ the GPU one when CUDA is available)
    python bench/run.py --only engine cp_ep  # some of them; the others' sections keep their last results
    python bench/run.py --render-only        # rewrite the page from the JSON results already in --results
    python bench/run.py --quick              # tiny sizes, to check the scripts; writes <results>/benchmarks.md

Each benchmark script writes its figures as JSON (`--json`) into --results (default output_bench/), beside
its log and <name>.run.json (the machine, the date, the command line, the exit status). The page is generated from
those files and the templates below, which hold the explanations; edit them here, not in docs/benchmarks.md. A
benchmark with no results in --results keeps the section and runs-table row the page already has.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(ROOT, "docs", "benchmarks.md")


@dataclass
class Bench:
    name: str
    script: str
    args: List[str]
    quick: List[str]
    needs_cuda: bool = False
    timeout_s: int = 1800
    env: Dict[str, str] = field(default_factory=dict)

    def command(self, quick: bool, json_path: str) -> List[str]:
        return [sys.executable, os.path.join("bench", self.script),
                *(self.quick if quick else self.args), "--json", json_path]


BENCHES = [
    Bench("engine", "bench_engine.py", ["--steps", "25", "--ranks", "2", "4"], ["--steps", "3", "--ranks", "2"]),
    Bench("megatron_data", "bench_megatron_data.py", [],
          ["--docs", "2000", "--reads", "500", "--repeats", "1", "--train-samples", "5000", "--seq-length", "512"]),
    Bench("cp_ep", "bench_cp_ep.py", ["--world", "2", "--seq", "256", "--iters", "6"],
          ["--world", "2", "--seq", "64", "--iters", "3"]),
    Bench("tp_memory", "bench_tp_memory.py", [], ["--tp", "1", "2", "--vocab", "4096", "--seq", "128"]),
    Bench("kernels", "bench_kernels.py", ["--iters", "20"], ["--quick", "--iters", "3"], env={"FSDP2_DEVICE": ""}),
    Bench("integrity", "bench_integrity.py", ["--mib", "100"], ["--mib", "8", "--repeats", "1"]),
    Bench("loader_start", "bench_loader_start.py", [], ["--repeats", "1"]),
    Bench("gpu_llama1b", "gpu_llama1b.py", [], ["--steps", "3", "--warmup", "1", "--seq", "512"], needs_cuda=True,
          env={"FSDP2_DEVICE": ""}),
    # needs LLaMA-Factory in some Python ($LLAMAFACTORY_PYTHON, $LLAMAFACTORY_DATA_DIR); skipped cleanly without it
    Bench("llamafactory", "bench_llamafactory.py", ["--reps", "3", "--steps", "20"],
          ["--reps", "1", "--steps", "3", "--settings", "1:none"], timeout_s=7200),
]


# ----------------------------------------------------------------------------------------- the machine
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gb = int(fh.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": mem_gb,
            "os": platform.platform(terse=True), "python": platform.python_version(), "gpu": None}
    for module in ("torch", "numpy", "transformers"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            info[module] = None
    try:
        from importlib.metadata import version
        info["megatron_core"] = version("megatron-core")
    except Exception:  # not installed
        info["megatron_core"] = None
    try:
        import torch
        if torch.cuda.is_available():
            info["gpu"] = f"{torch.cuda.device_count()} × {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["load_average"] = None
    return info


def cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


# ----------------------------------------------------------------------------------------- running
def run_bench(bench: Bench, results: str, quick: bool) -> dict:
    json_path = os.path.join(results, f"{bench.name}.json")
    if os.path.exists(json_path):
        os.remove(json_path)
    cmd = bench.command(quick, json_path)
    shown = " ".join(shlex.quote(c) for c in ["python", *cmd[1:-2]])
    print(f"== {bench.name}: {shown}", flush=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for key, value in bench.env.items():
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    t0 = time.time()
    with open(os.path.join(results, f"{bench.name}.log"), "w") as log:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=bench.timeout_s)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.time() - t0
    ok = rc == 0 and os.path.exists(json_path)
    status = "done" if ok else f"FAILED ({rc})"
    print(f"   {status} in {wall:.0f} s; log {results}/{bench.name}.log", flush=True)
    return {"command": shown, "rc": rc, "ok": ok, "wall_s": wall,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "quick": quick}


# ----------------------------------------------------------------------------------------- the page
def _mib(n: float) -> str:
    return f"{n / 2**20:.2f}"


def _header(meta: dict) -> List[str]:
    m = meta["machine"]
    mem = f", {m['memory_gb']:.0f} GiB memory" if m.get("memory_gb") else ""
    usable = f" ({m['usable_cores']} usable)" if m.get("usable_cores") != m.get("cores") else ""
    cores = f"{m['cores']} cores{usable}"
    versions = ", ".join(f"{k.replace('_', '-')} {m[k]}" for k in ("torch", "numpy", "transformers", "megatron_core")
                         if m.get(k))
    load = f"; load average {m['load_average'][0]} when it started" if m.get("load_average") else ""
    return [
        "# Benchmarks",
        "",
        "<!-- Generated by `python bench/run.py` from the JSON results of the bench/*.py scripts; the explanations "
        "live in bench/run.py's templates. Do not edit by hand. -->",
        "",
        f"Measured with `python bench/run.py`{' --quick (smoke sizes)' if meta.get('quick') else ''}, last on "
        f"{meta['date']}: {m['cpu']}, {cores}{mem}, "
        f"{'GPU ' + m['gpu'] if m.get('gpu') else 'no GPU'}; {m['os']}, Python {m['python']}, {versions}{load}. "
        "The development machine is shared with other jobs, so CPU figures vary by ±20% from run to run; "
        "the ratios, measured side by side in one run, are the figures to read.",
        "",
        "| benchmark | command | date | commit | wall time | result |",
        "|---|---|---|---|---|---|",
    ] + [f"| {name} | `{r['command']}` | {r['date'][:10]} | {r.get('machine', {}).get('commit') or '?'} | "
         f"{r['wall_s']:.0f} s | {'ok' if r['ok'] else 'failed (' + str(r['rc']) + ')'} |"
         for name, r in meta["runs"].items()] + [""]


def section_engine(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## Engine", ""]
    if r is None:
        return out + [_missing("engine", run), ""]
    a = r["model"]
    out += [
        f"`{run['command'] if run else 'python bench/bench_engine.py --steps 25 --ranks 2 4'}` (CPU, gloo, fp32, "
        f"{r.get('threads', 1)} thread per rank). Model: Llama-shaped, hidden {a['hidden_size']}, FFN "
        f"{a['intermediate_size']}, {a['num_hidden_layers']} layers, {a['num_attention_heads']} heads / "
        f"{a['num_key_value_heads']} KV heads, vocabulary {a['vocab_size']}, untied; batch {r['batch']} × "
        f"sequence {r['seq']}.",
        "",
        "**Step time at world size 1**, engine against the reference: a bare PyTorch loop over the same Hugging Face "
        "model, batch and AdamW hyper-parameters (`model(input_ids, labels).loss`, `backward`, `clip_grad_norm_`, "
        "`step`), with PyTorch's default AdamW implementation for the device (on CPU the per-parameter loop). The two "
        "steps are timed alternately in one process (median), so background load hits both alike.",
        "",
        "| loop | ms / step |",
        "|---|---|",
        f"| bare PyTorch (reference) | {r['bare_ms']:.1f} |",
        f"| engine (world 1, Megatron loss accounting, DTensor-aware clipping, schedule, fused AdamW) "
        f"| {r['engine_ms']:.1f} |",
        f"| ratio engine / reference | **{r['engine_ms'] / r['bare_ms']:.3f}** ({r['overhead_pct']:+.1f} %) |",
        *([f"| engine FSDP2-wrapped all the same (what one fp32 rank no longer pays) | {r['wrapped_ms']:.1f} |"]
          if "wrapped_ms" in r else []),
        "",
        "What keeps the engine at or below the bare loop: one rank computing and reducing in fp32 is left unwrapped "
        "(FSDP2 would only copy every parameter into an unsharded twin before forward and every gradient into a "
        "sharded one after backward: the last row); AdamW runs PyTorch's fused kernel (one pass over parameters "
        "and moments, where foreach makes several and the default loop one per parameter); the step reads the "
        "device once (the gradient norm that "
        "decides the skip, with the losses); the gradient norm is one fused `_foreach_norm` per replication factor. "
        "On more ranks, a shard group of one does not reshard after forward (it would free nothing and re-gather in "
        "backward).",
        "",
        "**Bytes held per rank** after one step (local shards of parameters, gradients, AdamW `exp_avg`/`exp_avg_sq`), "
        "against the reference of one rank holding everything:",
        "",
        "| ranks | params (MiB) | grads (MiB) | AdamW state (MiB) | fraction of one rank | ideal 1/N |",
        "|---|---|---|---|---|---|",
    ]
    one = r["bytes"]["1"]
    total_one = one["params"] + one["grads"] + one["optimizer"]
    for n, b in sorted(r["bytes"].items(), key=lambda kv: int(kv[0])):
        frac = (b["params"] + b["grads"] + b["optimizer"]) / total_one
        out.append(f"| {n} | {_mib(b['params'])} | {_mib(b['grads'])} | {_mib(b['optimizer'])} | {frac:.3f} | "
                   f"{1 / int(n):.3f} |")
    return out + [""]


def section_data(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## Megatron data", ""]
    if r is None:
        return out + [_missing("megatron_data", run), ""]
    out += [
        f"`{run['command'] if run else 'python bench/bench_megatron_data.py'}`: two corpora of {r['docs']:,} documents "
        "each (50–1,499 uint16 tokens per document), written with megatron-core's `IndexedDatasetBuilder`. Both sides "
        f"build train/valid/test for `--split 969,30,1`, seed 1234, {r['train_samples']:,} training samples of "
        f"{r['seq_length']} tokens, each into a fresh cache directory (best of {r['repeats']} builds, cache writes "
        f"included); reads are `dataset[i]` for {r['reads']:,} shuffled train indices (best of 2 passes). The "
        "reference is megatron-core with its compiled helpers; the script asserts that both sides return the same "
        "tokens before timing. Compiled sample-index helper in use: "
        f"{'yes' if r['native'] else 'no (numpy fallback)'}.",
        "",
        "| configuration | index build, megatron-core | index build, ours | build speed-up | reads/s, megatron-core | "
        "reads/s, ours | read ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        out.append(f"| {row['configuration']} | {row['megatron_build_s']:.3f} s | {row['ours_build_s']:.3f} s | "
                   f"**{row['megatron_build_s'] / row['ours_build_s']:.2f}×** | {row['megatron_reads_per_s']:,.0f} | "
                   f"{row['ours_reads_per_s']:,.0f} | "
                   f"**{row['ours_reads_per_s'] / row['megatron_reads_per_s']:.2f}×** |")
    out += [
        "",
        "Most of the build time on both sides goes to `numpy.random.RandomState.shuffle` of the document and sample "
        "indices, which both must call identically to keep Megatron's order. Ours builds the sample index and the "
        "blending indices with a small C loop compiled on first use (`fsdp2_core/data/megatron/_index_helpers.c`, "
        "loaded with ctypes; a vectorised numpy / pure-Python fallback gives the same arrays without a compiler, more "
        "slowly). Reads are faster because a sample is assembled in numpy and converted to tensors once, with the "
        "position ids and loss mask cached, instead of a sequence of small torch operations.",
        "",
    ]
    return out


def section_cp_ep(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## Context and expert parallel", ""]
    if r is None:
        return out + [_missing("cp_ep", run), ""]
    a = r["arch"]
    out += [
        f"`{run['command'] if run else 'python bench/bench_cp_ep.py'}` (CPU, gloo, {r['world']} ranks, fp32): a "
        f"Qwen3-MoE with our forward (hidden {a['hidden_size']}, {a['num_attention_heads']} heads / "
        f"{a['num_key_value_heads']} KV heads, {a['num_experts']} experts top-{a['num_experts_per_tok']}, "
        f"{a['num_hidden_layers']} layers), sequence {r['seq']}, micro-batch 1, global batch 4, median step time after "
        f"the first of {r['iters']} iterations. The reference is the unsplit layout (FSDP over the ranks, every expert "
        "on every rank); all-to-all bytes are what each rank sends per iteration, forward and backward, counted in "
        "`fsdp2_core.parallel.comm`.",
        "",
        "| layout | step time (s) | ratio to unsplit | all-to-all sent per rank per iteration |",
        "|---|---|---|---|",
    ]
    for row in r["rows"]:
        name = row["layout"] + (f" (FSDP over {r['world']}, reference)" if row["layout"] == "unsplit" else "")
        out.append(f"| {name} | {row['step_s']:.3f} | {row['vs_unsplit']:.2f}× | {_mib(row['all_to_all_bytes'])} MiB |")
    out += [
        "",
        "The volumes follow the arithmetic: Ulysses sends (world − 1) / world of q, k, v and the attention output per "
        "layer, forward and again backward, for each micro-batch; expert dispatch sends (world − 1) / world of the "
        "sequence × top-k token copies out and back per layer. Step times on shared CPU cores are dominated by "
        "per-call overhead and are not a prediction for accelerators.",
        "",
    ]
    return out


PLAN_NAMES = {"unsplit": "one rank (reference)", "before": "before #19: glob TP, full logits",
              "no-sp": "vocab-parallel head + loss, sequence_parallel false",
              "sp": "vocab-parallel head + loss + SP (default)"}


def section_tp_memory(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## Tensor parallelism: activation and logits memory", ""]
    if r is None:
        return out + [_missing("tp_memory", run), ""]
    a = r["arch"]
    one = next(row for row in r["rows"] if row["tp"] == 1)
    out += [
        f"`{run['command'] if run else 'python bench/bench_tp_memory.py'}` (CPU, gloo, fp32): one forward and "
        f"backward of a Llama-shaped model (hidden {a['hidden_size']}, FFN {a['intermediate_size']}, "
        f"{a['num_hidden_layers']} layers, {a['num_attention_heads']} heads / {a['num_key_value_heads']} KV heads, "
        f"vocabulary {a['vocab_size']:,}), one sequence of {r['seq']} tokens, on tp ranks. Counted on rank 0 "
        "(`fsdp2_core/testing/tensors.py`): the bytes autograd saves for backward, once per storage, by the module "
        "that saved them (saved-tensor hooks), and the largest logits tensor any operator creates (a dispatch mode "
        "over every operator's output). The *before #19* plan is the one the engine applied before this work "
        "(column/row-parallel projections from the glob patterns only), re-applied by the script.",
        "",
        "| tp | plan | norms (MiB) | loss, logits-sized (MiB) | largest logits tensor (MiB) | all saved (MiB) | "
        "norms / tp 1 | logits / tp 1 | loss = tp 1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        s = row["saved"]
        same = abs(row["loss"] - one["loss"]) <= 1e-4 * abs(one["loss"]) and row["ranks_agree"]
        out.append(f"| {row['tp']} | {PLAN_NAMES.get(row['plan'], row['plan'])} | {_mib(s.get('norms', 0))} | "
                   f"{_mib(s.get('loss', 0))} | {_mib(row['largest_logits_bytes'])} | {_mib(row['saved_total'])} | "
                   f"{s.get('norms', 0) / one['saved']['norms']:.3f} | "
                   f"{row['largest_logits_bytes'] / one['largest_logits_bytes']:.3f} | {'yes' if same else 'NO'} |")
    out += [
        "",
        "Sequence parallelism divides what the norms save by tp (each rank normalises its slice of the sequence); the "
        "column-parallel output layer with the vocabulary-parallel cross entropy divides the logits, and what the loss "
        "saves for backward (the softmax of this rank's vocabulary slice), by tp. Before, every rank built and kept "
        "the whole [tokens, vocabulary] logits. Attention and MLP activations were already split by heads and columns; "
        "what they still hold whole is their gathered input (the hidden states of the whole sequence), as in Megatron.",
        "",
    ]
    return out


def section_gpu(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## GPU: Llama 1B", ""]
    if r is None:
        why = ("the run failed (see the table above)" if run and not run["ok"]
               else "no CUDA device on the machine that made this page; the script has not yet been run on GPU "
                    "hardware (only its CPU smoke mode, `--smoke`, has)")
        return out + [
            f"Not measured: {why}. `bench/gpu_llama1b.py` trains the Llama-3.2-1B shape (16 layers, hidden 2048, "
            "FFN 8192, 32 heads / 8 KV heads, vocabulary 128256; 1.24B parameters) with bf16 parameters and fp32 "
            "reduction, FSDP2, batch 4 × 2048, meta-device init, and reports tokens/s, TFLOP/s and MFU per device "
            "against the device's peak (`fsdp2_core/device.py`'s table) and the peak memory of the largest rank. On "
            "one GPU: `python bench/gpu_llama1b.py`; on several, tensor parallel 2 (sequence parallel, "
            "vocabulary-parallel loss) with FSDP2 over the rest: `torchrun --nproc-per-node N bench/gpu_llama1b.py` "
            "(`--tp` to choose). `python bench/run.py` runs the one-GPU form whenever CUDA is available.", ""]
    mfu = "n/a" if r.get("mfu") is None else f"**{100 * r['mfu']:.1f} %**"
    layout = (f"tensor parallel {r['tp']} (sequence parallel {'on' if r.get('sequence_parallel') else 'off'}) × "
              f"FSDP2 {r.get('dp', 1)}" if r.get("tp", 1) > 1 else "FSDP2")
    return out + [
        f"`{run['command'] if run else 'python bench/gpu_llama1b.py'}` on {r.get('devices', 1)} × {r['device']}: "
        f"{r['params'] / 1e9:.2f}B parameters (Llama-3.2-1B shape), bf16 parameters / fp32 reduction, {layout}, batch "
        f"{r['batch']} × {r['seq']} per data-parallel rank, recompute {'on' if r['recompute'] else 'off'}, "
        f"torch {r['torch']}.",
        "",
        "| step (ms) | tokens/s per device | TFLOP/s per device | MFU (of the device's peak) | peak memory (GB) |",
        "|---|---|---|---|---|",
        f"| {r['step_ms']:.1f} | {r['tokens_per_s_per_device']:,.0f} | {r['tflops_per_device']:.1f} | {mfu} | "
        f"{r['peak_memory_gb']:.1f} |",
        "",
    ]


def section_kernels(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## Fused kernels", ""]
    if r is None:
        return out + [_missing("kernels", run), ""]
    note = (" On CPU every switch selects the reference implementation (no fused kernel exists there), so the "
            "ratios only show the dispatch overhead; the MXFP8 row is emulated (quantise-dequantise, then a "
            "matmul in the input dtype), which costs time and saves none." if r["device_type"] == "cpu" else "")
    out += [
        f"`{run['command'] if run else 'python bench/bench_kernels.py'}` on {r['device']}, {r['dtype']}, torch "
        f"{r['torch']}: forward of each kernel of `fsdp2_core/kernels`, the implementation `select.choose` picks on "
        f"this device against the reference (median of {r['iters']} calls), and an MXFP8 linear against the plain "
        f"one (forward and backward).{note}",
        "",
        "| kernel | shape | implementation | reference (ms) | selected (ms) | speed-up | max abs diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        out.append(f"| {row['kernel']} | {row['shape']} | {row['implementation']} | {row['reference_ms']:.3f} | "
                   f"{row['fused_ms']:.3f} | {row['speedup']:.2f}× | {row['max_abs_diff']:.2e} |")
    return out + [""]


def section_integrity(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## Integrity checks", ""]
    if r is None:
        return out + [_missing("integrity", run), ""]
    return out + [
        f"`{run['command'] if run else 'python bench/bench_integrity.py'}` (one process, best of {r['repeats']} runs): "
        "the cost of "
        "the checks that catch damaged files. Checkpoints: CRC-32 (zlib) of every file of a "
        f"{r['mib']:.0f} MiB DCP checkpoint, against the DCP save itself, read back from the page cache as at a save "
        "(each rank sums the files it wrote, so a save's sums run in parallel; at resume each rank verifies a share). "
        f"Data: a {r['bin_mib']:.0f} MiB corpus of {r['documents']:,} documents: the `.idx` check runs at every start, "
        "the token-id scan once per `.bin` (its answer is cached beside the dataset indices).",
        "",
        "| step | time | throughput | against |",
        "|---|---|---|---|",
        f"| DCP save (reference) | {r['save_s']:.3f} s | {r['mib'] * 2**20 / r['save_s'] / 1e9:.2f} GB/s | |",
        f"| checksums at save (`checksums.record`) | {r['record_s']:.3f} s | {r['record_gb_s']:.2f} GB/s | "
        f"{100 * r['record_over_save']:.0f} % of the save |",
        f"| verification at resume (`checksums.mismatches`) | {r['verify_s']:.3f} s | {r['verify_gb_s']:.2f} GB/s | |",
        f"| CRC-32 of 64 MiB in memory | | {r['crc32_memory_gb_s']:.2f} GB/s | the ceiling |",
        f"| `.idx` check (lengths, pointers) | {1e3 * r['idx_check_s']:.1f} ms | | every start |",
        f"| token-id scan of the `.bin` | {r['token_scan_s']:.3f} s | {r['token_scan_gb_s']:.2f} GB/s | "
        "once per file |",
        "",
        "A save to a real file system is slower than this save into the page cache, so the checksums' share of a "
        "save is smaller there; a resume from a cold disk pays one extra read of the checkpoint, spread over the "
        "ranks.",
        "",
    ]


def section_loader_start(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## Data-loader workers in a spawned rank", ""]
    if r is None:
        return out + [_missing("loader_start", run), ""]
    return out + [
        f"`{run['command'] if run else 'python bench/bench_loader_start.py'}` (best of {r['repeats']}): a pass of "
        f"{r['batches']} micro-batches through the engine's `micro_batches` with {r['workers']} workers, from the "
        "first request to the workers' exit, in a process started by multiprocessing's spawn (as the tests start "
        "their ranks; Python 3.14's forkserver default behaves alike). The reference is the start method "
        "multiprocessing defaults to there, which the engine followed before it forked its workers on Linux.",
        "",
        "| workers | forked (engine) | spawned (reference) | ratio |",
        "|---|---|---|---|",
        f"| {r['workers']} | {r['forked_s']:.3f} s | {r['reference_s']:.3f} s | {r['speedup']:.1f}× |",
        "",
        "Under torchrun on Linux with Python 3.13 or older, the default is fork already, so users saw the forked "
        "figure; the spawned one is what every test rank paid per pass, and what Python 3.14 would have cost.",
        "",
    ]


SETTING_NAMES = {("1", "none"): "1 process, no packing", ("1", "neat"): "1 process, neat packing",
                 ("2", "none"): "2 processes, no packing", ("2", "neat"): "2 processes, neat packing"}


def section_llamafactory(r: Optional[dict], run: Optional[dict]) -> List[str]:
    out = ["## Fine-tuning against LLaMA-Factory", ""]
    if r is None or "skipped" in r:
        why = r["skipped"] if r else None
        return out + [f"Skipped: {why}." if why else _missing("llamafactory", run), "",
                      "`bench/bench_llamafactory.py` runs when some Python imports `llamafactory` (0.9.5, installed "
                      "beside its own transformers, e.g. in a separate virtual environment named by "
                      "`LLAMAFACTORY_PYTHON`) and its demo data is found (`LLAMAFACTORY_DATA_DIR`).", ""]
    lf, a = r["llamafactory"], r["arch"]
    load = f"{r['load_average_start'][0]:.1f} at the start, {r['load_average_end'][0]:.1f} at the end"
    out += [
        f"`{run['command'] if run else 'python bench/bench_llamafactory.py'}` with `LLAMAFACTORY_PYTHON` naming a "
        f"virtual environment that holds LLaMA-Factory {lf['version']} with transformers {lf['transformers']} "
        f"(torch {lf['torch']}) and `LLAMAFACTORY_DATA_DIR` its demo data. Both engines run the same SFT job as "
        f"subprocesses: a Qwen3-shaped model directory written by the script (hidden {a['hidden_size']}, "
        f"{a['num_hidden_layers']} layers, {a['num_attention_heads']} heads / {a['num_key_value_heads']} KV heads, "
        f"FFN {a['intermediate_size']}, vocabulary {r['vocab']}, untied, fp32, random weights), alpaca_en_demo "
        f"with the qwen3 template, cutoff {r['cutoff']}, global batch {r['batch']}, {r['steps']} steps, constant "
        f"learning rate {r['lr']}, AdamW with the same hyper-parameters, no shuffling, gradient checkpointing off; "
        f"ours through `run_training`, theirs through `run_exp` (HF Trainer; `torchrun` for 2 processes, gloo). "
        f"{r['reps']} repetitions planned (the table counts those completed per setting"
        f"{'; this run was stopped before the last ones' if run and not run['ok'] else ''}), the engines alternated "
        "(ours first in even repetitions). Tokens/s: real tokens "
        "of steps 2..N over the time from the end of step 1 to the end of step N; first step: from the process "
        "start; memory: the peak resident set of the whole process tree. Load average of the shared 2-core "
        f"machine: {load}.",
        "",
        "| setting | ours / LLaMA-Factory tokens/s (median, range) | ours tokens/s | LLaMA-Factory tokens/s | "
        "first step, ours / theirs (s) | peak RSS, ours / theirs (GB) | largest loss difference | repetitions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["settings"]:
        o, t = row["ours"], row["llamafactory"]
        name = SETTING_NAMES.get((str(row["procs"]), row["packing"]), f"{row['procs']} × {row['packing']}")
        out.append(f"| {name} | **{row['ratio']['median']:.2f}** ({row['ratio']['min']:.2f}–{row['ratio']['max']:.2f})"
                   f" | {o['tokens_per_s']['median']:,.0f} | {t['tokens_per_s']['median']:,.0f} | "
                   f"{o['first_step_s']['median']:.1f} / {t['first_step_s']['median']:.1f} | "
                   f"{o['peak_rss_gb']['median']:.2f} / {t['peak_rss_gb']['median']:.2f} | "
                   f"{row['max_loss_diff']:.1e} | {row['repetitions']} |")
    optimizers = {e: v for row in r["settings"][:1] for e, v in row["optimizer"].items()}
    out += [
        "",
        f"Optimizer implementation: ours `{optimizers.get('ours')}`; LLaMA-Factory's HF Trainer "
        f"`{optimizers.get('llamafactory')}`. Loss differences are per step over the whole run; on 2 processes both "
        "average the loss over the tokens of the global batch. On 2 processes ours keeps the weights whole on both "
        "ranks and all-reduces the gradients in buckets during backward (`parallel.data_parallel: auto` picks this "
        "for fp32 runs on CPU, `fsdp2_core/parallel/replicate.py`), as the HF Trainer's DistributedDataParallel "
        "does; FSDP2's per-unit gathers and reduce-scatters, each a blocking collective on gloo, are what kept the "
        "2-process ratio below 1 before. The loss (`fsdp2_core/train/loss.py`) runs the output head and the cross "
        "entropy only at the positions the loss mask counts, on the CPU, so the prompt and padding tokens of a "
        "fine-tuning batch cost no logits; the HF model computes the logits of every position and masks the loss "
        "afterwards. The same sum and gradients (`tests/engine/test_loss_positions.py`); this took the one-process "
        "ratios from 0.98 / 0.97 (no packing / neat) to above 1.1 / 1.05. Neat-packed rows on the CPU run SDPA once "
        "per packed sample (`fsdp2_core/models/document_attention.py`) where LLaMA-Factory passes a block-diagonal "
        "mask; this job's rows mostly hold one long sample, so it gains little here. With neat packing both engines "
        "do the same work and the ratio sits near 1 (2 processes: medians 1.01, 1.00 and 1.02 in three runs of "
        "this benchmark on 2026-12-02; the table is the last).",
        "",
    ]
    return out


def _missing(name: str, run: Optional[dict]) -> str:
    if run and not run["ok"]:
        return f"The last run failed ({run['rc']}); see `output_bench/{name}.log`."
    return f"Not run yet: `python bench/run.py --only {name}`."


SECTIONS = [("engine", section_engine), ("llamafactory", section_llamafactory), ("megatron_data", section_data),
            ("cp_ep", section_cp_ep), ("tp_memory", section_tp_memory), ("kernels", section_kernels),
            ("integrity", section_integrity), ("loader_start", section_loader_start),
            ("gpu_llama1b", section_gpu)]


def previous_page(path: str) -> Dict[str, object]:
    """The page as last written: its sections by heading and its runs-table rows by benchmark name, so that a
    benchmark without results here (not run on this machine, e.g. `--only`) keeps its last published figures."""
    if not os.path.exists(path):
        return {"sections": {}, "rows": {}}
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    sections, rows = {}, {}
    for block in text.split("\n## ")[1:]:
        heading = block.split("\n", 1)[0].strip()
        sections[heading] = "## " + block.rstrip() + "\n"
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if line.startswith("| ") and len(cells) > 2 and cells[1] in {b.name for b in BENCHES}:
            rows[cells[1]] = line
    return {"sections": sections, "rows": rows}


def render(meta: dict, results: Dict[str, Optional[dict]], previous: Optional[dict] = None) -> str:
    previous = previous or {"sections": {}, "rows": {}}
    lines = _header(meta)
    table_end = lines.index("", lines.index("|---|---|---|---|---|---|"))
    kept = [row for name, row in previous["rows"].items() if name not in meta["runs"] and results.get(name) is None]
    lines[table_end:table_end] = kept
    for name, fn in SECTIONS:
        section = fn(results.get(name), meta["runs"].get(name))
        old = previous["sections"].get(section[0][3:])
        if results.get(name) is None and name not in meta["runs"] and old:
            section = old.rstrip("\n").split("\n") + [""]
        lines += section
    return "\n".join(lines).rstrip() + "\n"


def load_results(results_dir: str) -> Dict[str, Optional[dict]]:
    out = {}
    for bench in BENCHES:
        path = os.path.join(results_dir, f"{bench.name}.json")
        out[bench.name] = json.load(open(path)) if os.path.exists(path) else None
    return out


def load_runs(results_dir: str) -> dict:
    """The page's metadata from each benchmark's <name>.run.json (one file per benchmark, so that runs of
    different benchmarks, even at the same time, never overwrite each other's records)."""
    runs = {}
    for bench in BENCHES:
        path = os.path.join(results_dir, f"{bench.name}.run.json")
        if os.path.exists(path):
            runs[bench.name] = json.load(open(path))
    if not runs:
        return {"runs": {}}
    latest = max(runs.values(), key=lambda r: r["date"])
    return {"runs": runs, "machine": latest["machine"], "date": latest["date"][:10],
            "quick": any(r.get("quick") for r in runs.values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run these; keep the others' results")
    ap.add_argument("--results", default=os.path.join(ROOT, "output_bench"),
                    help="JSON results, logs and <name>.run.json records")
    ap.add_argument("--out", help="page to write (default docs/benchmarks.md; with --quick <results>/benchmarks.md)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that every benchmark runs")
    ap.add_argument("--render-only", action="store_true", help="run nothing; rewrite the page from --results")
    args = ap.parse_args(argv)
    os.makedirs(args.results, exist_ok=True)
    out_path = args.out or (os.path.join(args.results, "benchmarks.md") if args.quick else PAGE)
    failed = []
    if not args.render_only:
        info = machine()
        for bench in BENCHES:
            if args.only and bench.name not in args.only:
                continue
            if bench.needs_cuda and not cuda_available():
                print(f"== {bench.name}: skipped (no CUDA device)")
                if not args.only:  # a full run on a machine without CUDA: no stale GPU figures on the page
                    for suffix in (".json", ".run.json"):
                        stale = os.path.join(args.results, bench.name + suffix)
                        if os.path.exists(stale):
                            os.remove(stale)
                continue
            record = dict(run_bench(bench, args.results, args.quick), machine=info)
            with open(os.path.join(args.results, f"{bench.name}.run.json"), "w") as fh:
                json.dump(record, fh, indent=1)
            if not record["ok"]:
                failed.append(bench.name)
    meta = load_runs(args.results)
    if "machine" not in meta:
        print(f"bench/run.py: no results in {args.results}; run without --render-only first", file=sys.stderr)
        return 2
    page = render(meta, load_results(args.results), previous_page(out_path))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.write(page)
    print(f"wrote {out_path}")
    if failed:
        print(f"bench/run.py: failed: {', '.join(failed)} (logs in {args.results})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
