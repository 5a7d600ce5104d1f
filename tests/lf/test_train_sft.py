"""SFT end to end on 2 gloo CPU ranks: tiny Qwen3 from a config, locally trained tokenizer, lf data through the
engine."""
import os
import re
import subprocess
import sys

import pytest
import yaml

from fsdp2_core.testing.spawn import spawn
from tests.lf.lf_helpers import sft_yaml_doc, train_tokenizer, write_sft_dataset_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOSS = re.compile(r" iteration +(\d+)/ +(\d+) \|.*? lm loss: ([\d.E+-]+) \|")


def _train(doc):
    from fsdp2_core.config import build_config
    from fsdp2_core.data.lf import build as lf_build
    calls = []
    inner = lf_build.prepare
    lf_build.prepare = lambda *a, **k: (calls.append(1), inner(*a, **k))[1]
    from fsdp2_core.train import CheckpointHooks, run_training
    flat = {k: v for section in doc.values() for k, v in section.items()}
    summary = run_training(build_config(flat), checkpoint=CheckpointHooks(), print_fn=lambda s: None)
    return summary, len(calls)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = str(tmp_path_factory.mktemp("tok"))
    train_tokenizer(tok)
    return tok, write_sft_dataset_dir(tmp_path_factory.mktemp("data"))


@pytest.mark.dist
@pytest.mark.parametrize("data", [dict(data_shared_file_system=True), dict(neat_packing=True, cutoff_len=128)])
def test_sft_two_ranks_learns(setup, tmp_path, data):
    tok, ddir = setup
    results = spawn(2, _train, sft_yaml_doc(tmp_path, tok, ddir, **data))
    (s0, built0), (s1, built1) = results
    assert s0["iteration"] == 12 and s0["losses"] == s1["losses"]
    assert s0["losses"][-1] < 0.6 * s0["losses"][0], s0["losses"]
    assert [v["iteration"] for v in s0["valid"]] == [6, 12] and s0["valid"][-1]["loss"] < s0["valid"][0]["loss"]
    assert (built0, built1) == (1, 0)  # one rank tokenized; the other waited and loaded its result


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.subprocess
def test_train_fsdp2_yaml_sft(setup, tmp_path):
    tok, ddir = setup
    path = tmp_path / "sft.yaml"
    doc = sft_yaml_doc(tmp_path, tok, ddir)
    doc["training"].update(max_steps=-1, num_train_epochs=4)  # by epochs: 4 passes over a train set of 3 global batches
    path.write_text(yaml.safe_dump(doc))
    env = dict(os.environ, PYTHONPATH=ROOT, FSDP2_DEVICE="cpu",
               OMP_NUM_THREADS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    from fsdp2_core.testing.spawn import free_port
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(free_port()), os.path.join(ROOT, "train_fsdp2.py"), str(path)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    losses = [float(m.group(3)) for m in LOSS.finditer(proc.stdout)]
    assert len(losses) == 12 and losses[-1] < 0.6 * losses[0]
