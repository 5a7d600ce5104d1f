"""Every example in examples/ converts or loads, and every CPU-sized twin trains a few iterations.

The twins are run as shipped, from a directory laid out as the quickstart leaves the repository
(output_quickstart/ with the corpus, tokenizer, .bin/.idx and instruction data that
examples/make_example_data.py and tools/preprocess_data.py write); only the number of iterations
is cut. The quickstart itself (and with it the Megatron-LM CPU twin) is tests/test_quickstart.py.
"""
import glob
import os
import re
import subprocess
import sys

import pytest
import yaml

from fsdp2_core.testing.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
ITERATION = re.compile(r" iteration +(\d+)/ +(\d+) \|.*? lm loss: ([\d.E+-]+) \|")
SHELL = sorted(glob.glob(os.path.join(EXAMPLES, "megatron_lm", "*.sh"))
               + glob.glob(os.path.join(EXAMPLES, "mindspeed_llm", "*.sh")))
YAMLS = sorted(glob.glob(os.path.join(EXAMPLES, "fsdp2", "*.yaml")))
CPU_YAMLS = [p for p in YAMLS if p.endswith("_cpu.yaml")]


def _env(**extra):
    # the interpreter's own bin/ first: the shipped scripts call `torchrun` and `python` by name
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return dict(os.environ, PATH=path,
                PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), FSDP2_DEVICE="cpu",
                OMP_NUM_THREADS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false", **extra)


def _run(cmd, cwd, timeout=300, **env):
    proc = subprocess.run(cmd, cwd=str(cwd), env=_env(**env), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory holding output_quickstart/ as the quickstart writes it (a smaller corpus)."""
    root = tmp_path_factory.mktemp("examples")
    data = root / "output_quickstart"
    _run([sys.executable, os.path.join(EXAMPLES, "make_example_data.py"), str(data), "--max-docs", "800",
          "--vocab-size", "512", "--sft-samples", "200"], root)
    _run([sys.executable, os.path.join(ROOT, "tools", "preprocess_data.py"), "--input", str(data / "corpus.jsonl"),
          "--output-prefix", str(data / "data" / "stdlib"), "--tokenizer-type", "HuggingFaceTokenizer",
          "--tokenizer-model", str(data / "tokenizer"), "--append-eod", "--workers", "1", "--no-progress-bar"], root)
    return root


def test_examples_are_all_here():
    """The issue's list: Megatron-LM and MindSpeed-LLM scripts, mg / lf / MoE / long-context YAMLs, each with a CPU
    twin."""
    names = {os.path.relpath(p, EXAMPLES) for p in SHELL + YAMLS}
    for full in ("megatron_lm/llama3_8b.sh", "mindspeed_llm/qwen3_8b_pretrain.sh", "fsdp2/pretrain_mg.yaml",
                 "fsdp2/sft_lf.yaml", "fsdp2/moe_qwen3.yaml", "fsdp2/long_context.yaml"):
        stem, ext = os.path.splitext(full)
        assert full in names and f"{stem}_cpu{ext}" in names, (full, sorted(names))
    for path in SHELL + YAMLS:  # and no twin without its full-size example
        if "_cpu." in path:
            assert os.path.exists(path.replace("_cpu.", ".")), path


@pytest.mark.subprocess
@pytest.mark.parametrize("script", SHELL, ids=lambda p: os.path.relpath(p, EXAMPLES))
def test_shell_example_converts(script, tmp_path):
    """convert_args takes every shipped launch script with nothing rejected; the YAML it writes loads."""
    from fsdp2_core.config import load_config
    out = _run([sys.executable, os.path.join(ROOT, "tools", "convert_args.py"), script, "-o", str(tmp_path / "c.yaml"),
                "--script-out", str(tmp_path / "c.sh"), "--", "DATA", "5"], tmp_path, timeout=120)
    assert " rejected " not in out and " unknown " not in out
    cfg = load_config(str(tmp_path / "c.yaml"))
    assert cfg.data.data_manager_type == "mg" and cfg.training.stage == "pt"
    if script.endswith("_cpu.sh"):
        assert cfg.parallel.param_dtype == "fp32" and cfg.training.max_steps == 5
        assert cfg.data.dataset == "DATA/data/stdlib_text_document"
        assert cfg.model.tokenizer_name_or_path == "DATA/tokenizer"
        assert 'NPROC_PER_NODE=${NPROC_PER_NODE:-2}' in (tmp_path / "c.sh").read_text()
    else:
        assert cfg.parallel.param_dtype == "bf16" and cfg.parallel.tp_size > 1
        assert cfg.model.architecture["num_hidden_layers"] >= 32


def _twin_pairs():
    return [(p.replace("_cpu.", "."), p) for p in SHELL + YAMLS if "_cpu." in p]


@pytest.mark.subprocess
@pytest.mark.parametrize("full,cpu", _twin_pairs(), ids=lambda p: os.path.basename(p))
def test_cpu_twin_mirrors_full_size(full, cpu, tmp_path):
    """A CPU twin keeps its full-size example's family, stage, data path kind and parallel features."""
    from fsdp2_core.config import load_config

    def config(path):
        if path.endswith(".yaml"):
            return load_config(path)
        out = tmp_path / (os.path.basename(path) + ".yaml")
        _run([sys.executable, os.path.join(ROOT, "tools", "convert_args.py"), path, "-o", str(out),
              "--script-out", str(out) + ".sh", "--", "DATA"], tmp_path, timeout=120)
        return load_config(str(out))

    a, b = config(full), config(cpu)
    arch_a = a.model.architecture or {}
    arch_b = b.model.architecture or {}
    if arch_a:  # the full one names its family in flags; from a model directory it comes from the weights
        assert arch_a.get("model_type") == arch_b.get("model_type")
    assert (a.model.model_id, a.training.stage, a.data.data_manager_type) == (b.model.model_id, b.training.stage,
                                                                              b.data.data_manager_type)
    assert (a.parallel.ep_size > 1) == (b.parallel.ep_size > 1) and (a.parallel.cp_size > 1) == (b.parallel.cp_size > 1)
    assert b.parallel.param_dtype == "fp32"


@pytest.mark.parametrize("path", [p for p in YAMLS if p not in CPU_YAMLS], ids=os.path.basename)
def test_full_size_yaml_loads(path):
    from fsdp2_core.config import load_config
    cfg = load_config(path)
    assert cfg.training.output_dir and cfg.model.model_name_or_path


# (world size, why) for each CPU YAML: MoE and long context need their expert / context groups.
WORLD = {"pretrain_mg_cpu.yaml": 1, "sft_lf_cpu.yaml": 1, "moe_qwen3_cpu.yaml": 2, "long_context_cpu.yaml": 2}


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.subprocess
@pytest.mark.parametrize("path", CPU_YAMLS, ids=os.path.basename)
def test_cpu_yaml_trains(path, workdir, tmp_path):
    """Each CPU YAML, as shipped, trains 4 iterations through train_fsdp2.py and exports when it says so."""
    name = os.path.basename(path)
    world = WORLD[name]
    out = tmp_path / "out"
    args = [os.path.join(ROOT, "train_fsdp2.py"), path, "--training.max_steps", "4", "--training.lr_warmup_steps", "1",
            "--training.eval_interval", "4", "--training.eval_iters", "1", "--training.logging_steps", "1",
            "--training.output_dir", str(out)]
    if world == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world), "--master-port",
               str(free_port()), *args]
    stdout = _run(cmd, workdir, timeout=400)
    lines = [(int(i), int(n), float(loss)) for i, n, loss in ITERATION.findall(stdout)]
    assert [(i, n) for i, n, _ in lines] == [(k, 4) for k in range(1, 5)], stdout[-2000:]
    assert all(loss == loss and 0 < loss < 20 for _, _, loss in lines)
    assert "validation loss at iteration 4" in stdout
    shipped = yaml.safe_load(open(path))
    if shipped["training"].get("save_hf_weights", True):
        assert os.path.isfile(out / "hf_model" / "config.json"), os.listdir(out)


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.subprocess
def test_mindspeed_cpu_script_trains(workdir, tmp_path):
    """The MindSpeed-LLM CPU twin, converted, then launched with the script convert_args writes (2 ranks)."""
    script = os.path.join(EXAMPLES, "mindspeed_llm", "qwen3_8b_pretrain_cpu.sh")
    data = str(workdir / "output_quickstart")
    _run([sys.executable, os.path.join(ROOT, "tools", "convert_args.py"), script, "-o", str(tmp_path / "ms.yaml"),
          "--script-out", str(tmp_path / "ms.sh"), "--", data, "3"], ROOT, timeout=120)
    stdout = _run(["bash", str(tmp_path / "ms.sh")], ROOT, timeout=400, MASTER_PORT=str(free_port()))
    assert "validation loss at iteration 3" in stdout, stdout[-2000:]
    assert os.path.isfile(os.path.join(data, "qwen3_cpu_checkpoints", "latest_checkpointed_iteration.txt"))
