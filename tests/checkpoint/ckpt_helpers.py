"""Shared pieces of the checkpoint tests: in-process gloo ranks (the engine tests' helpers) and
separately launched rank processes (as SLURM / torchrun start them) that can be signalled and killed."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torch.distributed.tensor import DTensor

from fsdp2_core.testing.spawn import free_port, spawn_runs
from fsdp2_core.testing.tiny import datasets, tiny_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def run_one(run):
    """On every rank: one run_training, run = (output dir, overrides, env, hooks factory); its summary, or the
    error text when it raised (the tests inspect it). Without a factory the engine's Checkpointer saves."""
    import torch.distributed as dist

    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.train import run_training
    out_dir, over, env, make_hooks = run
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    cfg = tiny_config(out_dir, **over)
    try:
        hooks = (make_hooks(cfg) if make_hooks else None) or Checkpointer(cfg)  # a factory may only prepare the run
        return run_training(cfg, datasets=datasets(), checkpoint=hooks, print_fn=lambda s: None)
    except Exception as exc:  # noqa: BLE001  (the test inspects it)
        if dist.is_initialized():
            dist.destroy_process_group()
        return f"{type(exc).__name__}: {exc}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def spawn_sequence(world, tmp, runs, timeout=400):
    """runs: [(name, overrides, env, hooks factory)] in order on `world` gloo ranks; output dir tmp/<out or name>.

    Returns every rank's {name: summary or error text}."""
    prepared = []
    for name, over, env, make_hooks in runs:
        over = dict(over)
        prepared.append((os.path.join(str(tmp), over.pop("out", name)), over, env, make_hooks))
    per_rank = spawn_runs(world, run_one, prepared, timeout=timeout)
    return [dict(zip([r[0] for r in runs], results)) for results in per_rank]


# ---------------------------------------------------------------- launched rank processes (real entry point)

def write_corpus(prefix):
    """A tiny Megatron .bin/.idx corpus: counting sequences mod 100."""
    from fsdp2_core.data.megatron import IndexedDatasetBuilder
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for _ in range(200):
        start, n = int(rng.integers(0, 50)), int(rng.integers(20, 80))
        builder.add_item(torch.from_numpy(((start + np.arange(n)) % 100).astype(np.uint16)))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def yaml_config(path, corpus, out_dir, **training):
    import yaml
    doc = {
        "model": {"architecture": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
                                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                   "max_position_embeddings": 32, "tie_word_embeddings": False},
                  "tokenizer_type": "NullTokenizer", "vocab_size": 100, "train_from_scratch": True},
        "data": {"dataset": corpus, "data_manager_type": "mg", "split": "100,0,0", "cutoff_len": 16},
        "parallel": {"param_dtype": "fp32", "reduce_dtype": "fp32"},
        "training": dict({"stage": "pt", "output_dir": out_dir, "lr": 3e-3, "min_lr": 3e-4, "lr_warmup_steps": 2,
                          "per_device_train_batch_size": 2, "global_batch_size": 4, "logging_steps": 1,
                          "save_hf_weights": False, "seed": 3}, **training),
    }
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh)
    return path


def launch_ranks(world, argv, cwd, log_prefix):
    """Start `world` rank processes of `python <argv>` joined by env:// rendezvous; return the Popens."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), FSDP2_DEVICE="cpu",
                   OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                   LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
        out = open(f"{log_prefix}.rank{rank}.log", "w")
        procs.append(subprocess.Popen([sys.executable, *argv], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs, timeout=400):
    deadline = time.time() + timeout
    codes = []
    for p in procs:
        codes.append(p.wait(timeout=max(deadline - time.time(), 1)))
    return codes


def wait_for_tracker(out_dir, at_least, procs, timeout=300):
    """Poll until latest_checkpointed_iteration.txt names >= at_least (the run is then mid-training)."""
    path = os.path.join(out_dir, "latest_checkpointed_iteration.txt")
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            text = open(path).read().strip()
            if text and int(text) >= at_least:
                return int(text)
        if any(p.poll() is not None for p in procs):
            raise AssertionError(f"a rank ended before checkpoint {at_least}: codes {[p.poll() for p in procs]}")
        time.sleep(0.02)
    raise TimeoutError(path)


def losses_by_iteration(out_dir):
    """{iteration: lm loss} from rank 0's metrics.jsonl; a resumed run's record of an iteration wins."""
    out = {}
    with open(os.path.join(out_dir, "metrics.jsonl")) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec["kind"] == "train":
                out[rec["iteration"]] = rec["lm_loss"]
    return out


def read_log(log_prefix, rank=0):
    return open(f"{log_prefix}.rank{rank}.log").read()


# ---------------------------------------------------------------- hooks factories (picklable, run on every rank)

def _rank():
    return int(os.environ.get("RANK", "0"))


def remove_file(rel, cfg):
    """Before the run, rank 0 removes <output_dir>/<rel> (rank 0 alone decides which checkpoint to load)."""
    if _rank() == 0:
        os.remove(os.path.join(cfg.training.output_dir, rel))
    return None


def fail_writes(match, errno_code, on_rank, cfg):
    """Make DCP's file writer fail on one rank for checkpoint paths containing `match` under this output dir,
    as a full disk (ENOSPC) or a read-only directory (EACCES) does in the middle of a save. Once: the
    writer is put back after the failure, as when the operator has fixed the cause."""
    from torch.distributed.checkpoint import FileSystemWriter
    original = FileSystemWriter.write_data
    out_dir = cfg.training.output_dir

    def write_data(self, plan, planner):
        path = str(self.path)
        if path.startswith(out_dir) and match in path:
            FileSystemWriter.write_data = original
            if _rank() == on_rank:
                raise OSError(errno_code, os.strerror(errno_code), os.path.join(path, f"__{on_rank}_0.distcp"))
        return original(self, plan, planner)

    FileSystemWriter.write_data = write_data
    return None


def poisoned(from_iteration, cfg):
    """The engine's checkpointer, with the loss made NaN from `from_iteration` on."""
    from fsdp2_core.checkpoint import Checkpointer

    class Poisoned(Checkpointer):
        def load(self, state, model, optimizer, schedule):
            super().load(state, model, optimizer, schedule)
            inner, hooks = model.lm_loss, self
            self.next_iteration = state.iteration + 1

            def lm_loss(*a, **k):
                s, n = inner(*a, **k)
                return (s * float("nan"), n) if hooks.next_iteration >= from_iteration else (s, n)
            model.lm_loss = lm_loss

        def after_step(self, state, *rest):
            self.next_iteration = state.iteration + 1
            return super().after_step(state, *rest)

    return Poisoned(cfg)


PROBE = [[3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43, 38, 32,
          79], [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 4, 93, 97, 62, 31]]


def word_tokenizer(vocab_size):
    """A small Hugging Face tokenizer built locally (nothing downloaded): one word per id."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {f"w{i}": i for i in range(vocab_size - 2)}
    vocab.update({"<unk>": vocab_size - 2, "</s>": vocab_size - 1})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="</s>")


def record_logits(max_shard_bytes, cfg):
    """The engine's checkpointer, which also writes the trained (sharded) model's logits on PROBE
    to <output_dir>/trained_logits.pt after the end-of-training export; a tokenizer rides along."""
    from fsdp2_core.checkpoint import Checkpointer

    class Recorder(Checkpointer):
        def setup(self, **run):
            run["tokenizer"] = word_tokenizer(cfg.model.architecture["vocab_size"])
            super().setup(**run)

        def finish(self, state, model, optimizer, schedule):
            super().finish(state, model, optimizer, schedule)
            with torch.no_grad():
                logits = model(input_ids=torch.tensor(PROBE)).logits
            if isinstance(logits, DTensor):  # tensor parallel: split over the vocabulary
                logits = logits.full_tensor()
            if _rank() == 0:
                torch.save(logits.detach().clone(), os.path.join(cfg.training.output_dir, "trained_logits.pt"))

    return Recorder(cfg, hf_max_shard_bytes=max_shard_bytes)


def only_broken_checkpoints(cfg):
    """Rank 0 leaves an output dir whose only checkpoint lacks everything but its directory and tracker."""
    if _rank() == 0:
        from fsdp2_core.checkpoint.layout import iter_dir, write_tracker
        os.makedirs(iter_dir(cfg.training.output_dir, 2))
        write_tracker(cfg.training.output_dir, 2)
    return None
