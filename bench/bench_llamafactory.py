#!/usr/bin/env python
"""Fine-tuning speed against LLaMA-Factory on the same job (CPU), when LLaMA-Factory can be run.

    python bench/bench_llamafactory.py [--reps 3] [--steps 30] [--lf-python PY] [--lf-data DIR] [--json out.json]

Both engines run as subprocesses, the same SFT job each: a tiny Qwen3-shaped model directory written here
(random weights, fp32, a tokenizer trained here on the data's text with Qwen3's special tokens), LLaMA-Factory's
alpaca_en_demo with the qwen3 template, cutoff 512, global batch 4, constant learning rate, AdamW with the same
hyper-parameters, no shuffling, gradient checkpointing off; in four settings: 1 or 2 processes (torchrun, gloo),
without packing or with neat packing. Repetitions alternate the engines (ours first in even repetitions, theirs
first in odd ones) so that the load of a shared machine hits both alike.

Reported per run: tokens/s over steps 2..N (real, non-padding tokens of those steps, counted from our data
pipeline, which gives LLaMA-Factory's rows token for token; the time from the end of step 1 to the end of step N,
from each engine's own per-step callback), the time from the process start to the end of step 1, the peak
resident memory of the whole process tree (launcher and ranks, sampled every 50 ms), and the per-step losses.

LLaMA-Factory runs under `--lf-python` (default: $LLAMAFACTORY_PYTHON, else this Python): a Python that imports
`llamafactory` (0.9.5 with its own transformers; bench/lf_side.py drives it). Its demo data comes from `--lf-data`
($LLAMAFACTORY_DATA_DIR, else the `data/` folder beside an editable install). Where either is missing the
benchmark prints why and exits 0 with {"skipped": reason}.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
            "<tool_response>", "</tool_response>"]
ARCH = {"hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 6, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 64, "max_position_embeddings": 1024, "tie_word_embeddings": False,
        "rms_norm_eps": 1e-6}
VOCAB = 4096
DATASET = "alpaca_en_demo"
CUTOFF, BATCH, LR, SEED = 512, 4, 1e-4, 42
SETTINGS = [(1, "none"), (1, "neat"), (2, "none"), (2, "neat")]

PROBE = """
import importlib.machinery, os, sys, types
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
try:
    import torchaudio
except Exception:
    m = types.ModuleType("torchaudio"); m.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
    sys.modules["torchaudio"] = m
import llamafactory, transformers, torch
from llamafactory.train.tuner import run_exp
here = os.path.dirname(llamafactory.__file__)
print(llamafactory.__version__, transformers.__version__, torch.__version__,
      os.path.abspath(os.path.join(here, "..", "..", "data")))
"""


# ----------------------------------------------------------------------------------------------- LLaMA-Factory
def probe_llamafactory(python: str) -> Dict:
    """{'version', 'transformers', 'torch', 'data'} of the Python given, or {'error': why}."""
    try:
        proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=600,
                              env=_env(with_project=False))
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"{python}: {exc}"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"llamafactory does not import under {python}: {last}"}
    version, transformers, torch, data = proc.stdout.split()[-4:]
    return {"version": version, "transformers": transformers, "torch": torch, "data": data}


def lf_data_dir(given: Optional[str], probed: str) -> Optional[str]:
    for path in (given, os.environ.get("LLAMAFACTORY_DATA_DIR"), probed):
        if path and os.path.isfile(os.path.join(path, "dataset_info.json")):
            return path
    return None


# ----------------------------------------------------------------------------------------------- the job
def prepare_model(workdir: str, data_dir: str) -> str:
    """A tokenizer trained on the data's text (Qwen3's special tokens) and a seeded random Qwen3 model, saved."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
    path = os.path.join(workdir, "model")
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        return path
    with open(os.path.join(data_dir, f"{DATASET}.json"), encoding="utf-8") as fh:
        rows = json.load(fh)
    text = [" ".join(str(r.get(k, "")) for k in ("instruction", "input", "output")) for r in rows]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=SPECIALS[1:])
    fast.save_pretrained(path)
    config = AutoConfig.for_model("qwen3", vocab_size=len(fast), **ARCH)
    torch.manual_seed(SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(path)
    return path


def lf_args(model: str, data: str, out: str, procs: int, packing: str, steps: int) -> Dict:
    return {"model_name_or_path": model, "stage": "sft", "do_train": True, "finetuning_type": "full",
            "dataset": DATASET, "dataset_dir": data, "template": "qwen3", "cutoff_len": CUTOFF,
            "overwrite_cache": True, "packing": packing != "none", "neat_packing": packing == "neat",
            "output_dir": out, "overwrite_output_dir": True, "logging_steps": 1, "save_strategy": "no",
            "report_to": "none", "plot_loss": False, "per_device_train_batch_size": BATCH // procs,
            "gradient_accumulation_steps": 1, "learning_rate": LR, "lr_scheduler_type": "constant",
            "warmup_steps": 0, "max_steps": steps, "weight_decay": 0.0, "adam_beta1": 0.9, "adam_beta2": 0.999,
            "adam_epsilon": 1e-8, "max_grad_norm": 1.0, "disable_shuffling": True,
            "disable_gradient_checkpointing": True, "seed": SEED, "bf16": False, "fp16": False,
            "dataloader_num_workers": 0, "ddp_find_unused_parameters": False}


def our_values(model: str, data: str, out: str, procs: int, packing: str, steps: int) -> Dict:
    return {"model_name_or_path": model, "stage": "sft", "data_manager_type": "lf", "dataset": DATASET,
            "dataset_dir": data, "template": "qwen3", "cutoff_len": CUTOFF, "overwrite_cache": True,
            "packing": packing != "none", "neat_packing": packing == "neat", "output_dir": out,
            "max_steps": steps, "per_device_train_batch_size": BATCH // procs, "global_batch_size": BATCH,
            "lr": LR, "min_lr": LR, "lr_scheduler_type": "constant", "warmup_ratio": 0.0, "weight_decay": 0.0,
            "adam_beta1": 0.9, "adam_beta2": 0.999, "adam_epsilon": 1e-8, "max_grad_norm": 1.0,
            "disable_shuffling": True, "seed": SEED, "param_dtype": "fp32", "reduce_dtype": "fp32",
            "calculate_per_token_loss": True, "logging_steps": 1, "save_steps": 0, "save_hf_weights": False}


def tokens_per_step(values: Dict, steps: int) -> List[int]:
    """Real (non-padding) input tokens of each global batch, from our data pipeline (LLaMA-Factory's rows)."""
    from fsdp2_core.config import build_config
    from fsdp2_core.train.data import build_datasets, build_tokenizer
    cfg = build_config(dict(values, output_dir=values["output_dir"] + "_count"))
    tokenizer = build_tokenizer(cfg)
    train = build_datasets(cfg, steps, BATCH, tokenizer)[0]
    pad = tokenizer.pad_token_id
    out = []
    for step in range(steps):
        rows = [train[i] for i in range(step * BATCH, (step + 1) * BATCH)]
        out.append(sum(sum(1 for t in r["input_ids"] if t != pad) for r in rows))
    return out


# ----------------------------------------------------------------------------------------------- running
def _env(with_project: bool) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FSDP2_DEVICE")}
    if with_project:
        env["PYTHONPATH"] = ROOT
    env.setdefault("DISABLE_VERSION_CHECK", "1")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants."""
    children: Dict[int, List[int]] = {}
    rss: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def run_one(engine: str, python: str, job: Dict, procs: int, workdir: str, name: str, log_dir: str) -> Dict:
    job_path = os.path.join(workdir, f"{name}.job.json")
    out_path = os.path.join(workdir, f"{name}.out.json")
    with open(job_path, "w") as fh:
        json.dump(job, fh)
    if os.path.exists(out_path):
        os.remove(out_path)
    script = os.path.join(HERE, "ours_side.py" if engine == "ours" else "lf_side.py")
    launch = [python, script] if procs == 1 else [
        python, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--master-port", str(_free_port()),
        script]
    shutil.rmtree(job.get("output_dir", ""), ignore_errors=True)
    with open(os.path.join(log_dir, f"{name}.log"), "w") as log:
        start = time.time()
        proc = subprocess.Popen(launch + [job_path, out_path], cwd=ROOT, env=_env(engine == "ours"), stdout=log,
                                stderr=subprocess.STDOUT)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.05)
        wall = time.time() - start
    if proc.returncode != 0 or not os.path.exists(out_path):
        raise RuntimeError(f"{name}: exit {proc.returncode}; see {log_dir}/{name}.log")
    with open(out_path) as fh:
        rec = json.load(fh)
    rec.update(start=start, wall_s=wall, peak_rss_bytes=peak)
    return rec


def measure(rec: Dict, tokens: List[int]) -> Dict:
    ends = rec["step_end"]
    steps = len(ends)
    timed = ends[-1] - ends[0]
    return {"tokens_per_s": sum(tokens[1:steps]) / timed, "steady_s": timed, "first_step_s": ends[0] - rec["start"],
            "wall_s": rec["wall_s"], "peak_rss_gb": rec["peak_rss_bytes"] / 1e9, "losses": rec["losses"],
            "optimizer": rec.get("optimizer")}


def _summary(values: List[float]) -> Dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(result: Dict, runs: Dict, settings: List, tokens: Dict, final: bool = False) -> None:
    """Per setting: medians and ranges of both engines' figures and of the per-repetition ratio."""
    result["settings"] = []
    for procs, packing in settings:
        r = runs[(procs, packing)]
        pairs = list(zip(r["ours"], r["llamafactory"]))
        if not pairs:
            continue
        ratios = [o["tokens_per_s"] / t["tokens_per_s"] for o, t in pairs]
        diffs = [max(abs(a - b) for a, b in zip(o["losses"], t["losses"])) for o, t in pairs]
        row = {"procs": procs, "packing": packing, "tokens": sum(tokens[(procs, packing)]), "ratio": _summary(ratios),
               "ratios": ratios, "repetitions": len(pairs), "max_loss_diff": max(diffs),
               "optimizer": {e: r[e][0]["optimizer"] for e in r}}
        for engine in ("ours", "llamafactory"):
            row[engine] = {key: _summary([x[key] for x, _ in zip(r[engine], pairs)])
                           for key in ("tokens_per_s", "first_step_s", "wall_s", "peak_rss_gb")}
            row[engine]["losses"] = r[engine][0]["losses"]
        result["settings"].append(row)
        if final:
            print(f"{procs} process(es), packing {packing}: ours / LLaMA-Factory tokens/s {row['ratio']['median']:.2f} "
                  f"({row['ratio']['min']:.2f}-{row['ratio']['max']:.2f}); max loss difference "
                  f"{row['max_loss_diff']:.1e}; peak RSS ours {row['ours']['peak_rss_gb']['median']:.2f} GB, theirs "
                  f"{row['llamafactory']['peak_rss_gb']['median']:.2f} GB")
    result["load_average_end"] = list(os.getloadavg())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--settings", nargs="+", default=[f"{p}:{k}" for p, k in SETTINGS],
                    help="processes:packing, packing none or neat (default: all four)")
    ap.add_argument("--lf-python", default=os.environ.get("LLAMAFACTORY_PYTHON", sys.executable))
    ap.add_argument("--lf-data")
    ap.add_argument("--workdir", default=os.path.join(ROOT, "output_bench", "lf_bench"))
    ap.add_argument("--json")
    args = ap.parse_args()

    def finish(result: Dict) -> int:
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(result, fh, indent=1)
        return 0

    lf = probe_llamafactory(args.lf_python)
    data = lf_data_dir(args.lf_data, lf.get("data"))
    if "error" in lf or data is None:
        why = lf.get("error") or ("LLaMA-Factory's demo data (dataset_info.json) not found: give --lf-data or "
                                  "LLAMAFACTORY_DATA_DIR")
        print(f"bench_llamafactory: skipped: {why}")
        return finish({"skipped": why})
    os.makedirs(args.workdir, exist_ok=True)
    log_dir = os.path.join(args.workdir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    model = prepare_model(args.workdir, data)
    settings = [(int(p), k) for p, k in (s.split(":") for s in args.settings)]
    result = {"llamafactory": lf, "lf_python": args.lf_python, "steps": args.steps, "reps": args.reps,
              "arch": ARCH, "vocab": VOCAB, "cutoff": CUTOFF, "batch": BATCH, "lr": LR,
              "load_average_start": list(os.getloadavg()), "settings": []}
    tokens = {}
    for procs, packing in settings:
        values = our_values(model, data, os.path.join(args.workdir, "count"), procs, packing, args.steps)
        tokens[(procs, packing)] = tokens_per_step(values, args.steps)
    runs = {s: {"ours": [], "llamafactory": []} for s in settings}
    for rep in range(args.reps):
        for procs, packing in settings:
            order = ["ours", "llamafactory"] if rep % 2 == 0 else ["llamafactory", "ours"]
            for engine in order:
                name = f"{engine}_{procs}p_{packing}_r{rep}"
                out = os.path.join(args.workdir, "out_" + name)
                if engine == "ours":
                    job, python = our_values(model, data, out, procs, packing, args.steps), sys.executable
                else:
                    job, python = lf_args(model, data, out, procs, packing, args.steps), args.lf_python
                try:
                    rec = measure(run_one(engine, python, job, procs, args.workdir, name, log_dir),
                                  tokens[(procs, packing)])
                except RuntimeError as exc:  # one failed run: reported, the others still measured
                    print(f"{name}: FAILED: {exc}", flush=True)
                    result.setdefault("failed", []).append(str(exc))
                    continue
                runs[(procs, packing)][engine].append(rec)
                summarise(result, runs, settings, tokens)
                finish(result)  # written after every run: a stopped benchmark keeps what it measured
                print(f"{name}: {rec['tokens_per_s']:.0f} tokens/s, first step at {rec['first_step_s']:.1f} s, "
                      f"peak RSS {rec['peak_rss_gb']:.2f} GB, loss {rec['losses'][0]:.4f} .. {rec['losses'][-1]:.4f}",
                      flush=True)
    summarise(result, runs, settings, tokens, final=True)
    return finish(result)


if __name__ == "__main__":
    sys.exit(main())
