"""End to end on CPU: a tiny .bin/.idx corpus, `torchrun --nproc-per-node 2 pretrain_gpt.py <Megatron flags>`
and `train_fsdp2.py CONFIG.yaml`; Megatron's iteration lines come out and the loss falls."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from fsdp2_core.testing.spawn import free_port

pytestmark = [pytest.mark.dist, pytest.mark.subprocess, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINE = re.compile(r" iteration +(\d+)/ +(\d+) \| consumed samples: +(\d+) \|.*? lm loss: ([\d.E+-]+) \|")
VALID = re.compile(r"validation loss at iteration (\d+) \| lm loss value: ([\d.E+-]+)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Counting sequences mod 100: learnable in a few dozen steps."""
    from fsdp2_core.data.megatron import IndexedDatasetBuilder
    prefix = str(tmp_path_factory.mktemp("corpus") / "corpus_text_document")
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    for _ in range(300):
        start, n = int(rng.integers(0, 50)), int(rng.integers(20, 80))
        builder.add_item(torch.from_numpy(((start + np.arange(n)) % 100).astype(np.uint16)))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def _run(cmd, tmp):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), FSDP2_DEVICE="cpu",
               OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=str(tmp), env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout


def _check(out, iters, log_interval):
    lines = [(int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))) for m in LINE.finditer(out)]
    assert [l[0] for l in lines] == list(range(log_interval, iters + 1, log_interval)), out[-2000:]
    assert all(l[1] == iters for l in lines) and lines[-1][2] == iters * 8
    assert lines[-1][3] < 0.7 * lines[0][3], lines  # it learns
    return lines


def test_pretrain_gpt_torchrun_two_ranks(corpus, tmp_path):
    flags = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --ffn-hidden-size 128 --seq-length 32 "
             "--max-position-embeddings 64 --micro-batch-size 2 --global-batch-size 8 --train-iters 30 --lr 3e-3 "
             "--min-lr 3e-4 --lr-decay-style cosine --lr-warmup-iters 3 --split 90,8,2 --tokenizer-type NullTokenizer "
             "--vocab-size 100 --log-interval 5 --eval-interval 10 --eval-iters 2 --position-embedding-type rope "
             "--normalization RMSNorm --swiglu --untie-embeddings-and-output-weights --disable-bias-linear "
             "--attention-dropout 0 --hidden-dropout 0 --num-workers 0").split()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           os.path.join(ROOT, "pretrain_gpt.py"), *flags, "--data-path", corpus, "--save", str(tmp_path / "out")]
    out = _run(cmd, tmp_path)
    _check(out, 30, 5)
    valid = [(int(i), float(v)) for i, v in VALID.findall(out)]
    assert [i for i, _ in valid] == [10, 20, 30] and valid[-1][1] < valid[0][1]
    assert "validation loss at iteration 30 on test set" in out
    # the flags' architecture, beside the output
    arch = json.load(open(tmp_path / "out" / "architecture" / "config.json"))
    assert arch["model_type"] == "llama" and arch["num_hidden_layers"] == 2 and arch["vocab_size"] == 128


def test_train_fsdp2_yaml_mg_path(corpus, tmp_path):
    doc = {
        "model": {"architecture": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                                   "max_position_embeddings": 64, "tie_word_embeddings": False},
                  "tokenizer_type": "NullTokenizer", "vocab_size": 100, "train_from_scratch": True},
        "data": {"dataset": corpus, "data_manager_type": "mg", "split": "90,8,2", "cutoff_len": 32},
        "parallel": {"param_dtype": "fp32"},
        "training": {"stage": "pt", "output_dir": str(tmp_path / "out"), "max_steps": 20, "lr": 3e-3, "min_lr": 3e-4,
                     "lr_warmup_steps": 2, "per_device_train_batch_size": 4, "global_batch_size": 8,
                     "logging_steps": 5},
    }
    path = tmp_path / "pt.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = _run([sys.executable, os.path.join(ROOT, "train_fsdp2.py"), str(path), "--training.eval_iters", "1"],
               tmp_path)
    _check(out, 20, 5)
    assert os.path.exists(tmp_path / "out" / "metrics.jsonl")
