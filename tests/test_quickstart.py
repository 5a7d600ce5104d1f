"""The README's Quickstart: exactly two commands, the second running the CI test command; and the quickstart
script itself end to end on a reduced path (no install, a smaller corpus, 6 iterations instead of 100)."""
import os
import re
import subprocess
import sys

import pytest

from fsdp2_core.testing.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _readme():
    with open(README, encoding="utf-8") as fh:
        return fh.read()


def _test_command(text):
    """As .ci/run reads it: the first line of the code block after `<!-- test-command -->`."""
    after = text.split("<!-- test-command -->", 1)[1]
    block = re.search(r"```[a-z]*\n(.*?)```", after, re.S)
    return block.group(1).splitlines()[0].strip()


def _quickstart_commands(text):
    section = re.search(r"^## Quickstart\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Quickstart' section"
    blocks = re.findall(r"```[a-z]*\n(.*?)```", section.group(1), re.S)
    assert len(blocks) == 1, f"the Quickstart section should hold one shell block, found {len(blocks)}"
    return [line.strip() for line in blocks[0].splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_quickstart_is_two_commands():
    text = _readme()
    first, second = _quickstart_commands(text)  # exactly two
    assert "-m venv" in first and "bash examples/quickstart.sh" in first
    assert "-m venv" not in second and ".venv/bin/activate" in second
    test_cmd = _test_command(text)
    assert test_cmd == "python -m pytest -q tests"
    assert second.endswith(test_cmd) and 'pip install -e ".[test]"' in second
    # the diagram names the whole flow, from the launch script to checkpoints and the Hugging Face export
    diagram = text.split("```", 2)[1]
    for word in ("launch script", "flag registry", "canonical config", "checkpoint", "Hugging Face export"):
        assert word in diagram, word


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.subprocess
def test_quickstart_script_reduced(tmp_path):
    """examples/quickstart.sh from corpus to generation: .bin/.idx, converted YAML, training lines, HF export, PNG."""
    out = tmp_path / "qs"
    env = dict(os.environ, QUICKSTART_SKIP_INSTALL="1", QUICKSTART_DIR=str(out), QUICKSTART_ITERS="6",
               QUICKSTART_DOCS="600", PYTHON=sys.executable, MASTER_PORT=str(free_port()),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.run(["bash", os.path.join(ROOT, "examples", "quickstart.sh")], env=env, capture_output=True,
                          text=True, timeout=600)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    for step in range(1, 8):
        assert f"== [{step}/7]" in proc.stdout, log
    for path in ("corpus.jsonl", "tokenizer/tokenizer.json", "data/stdlib_text_document.bin",
                 "data/stdlib_text_document.idx", "llama3_cpu.yaml", "llama3_cpu_fsdp2.sh",
                 "checkpoints/latest_checkpointed_iteration.txt", "checkpoints/hf_model/config.json",
                 "checkpoints/hf_model/model.safetensors", "metrics.png"):
        assert (out / path).is_file(), (path, log)
    assert (out / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "6"
    iterations = re.findall(r" iteration +(\d+)/ +6 \|", proc.stdout)
    assert iterations == ["5"], log  # --log-interval 5 of the shipped script, 6 iterations
    generated = re.findall(r"^  '(.+?)' -> '(.*)'$", proc.stdout, re.M)
    assert len(generated) == 2 and all(new for _, new in generated), log
    assert "LlamaForCausalLM" in proc.stdout
