"""The new launch script logs where the old launch line did: its output redirections and pipes (`2>&1 | tee LOG`,
`> LOG 2>&1`, around `eval "$CMD"` or a function) are kept, with the log folders created first.

The scripts written here are run by real bash with a stub `torchrun` on PATH that prints one line to stdout and one
to stderr, so the test sees where each line lands, as a user would."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest

from megatron_compat.launch_script import render_launch_script
from megatron_compat.shell import read_launch_script

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

FLAGS = "--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 128 --train-iters 10 --mock-data"
STUB = "#!/bin/sh\necho \"out from $1\"\necho \"err from $1\" >&2\n"


def _new_script(tmp_path, text: str) -> str:
    old = tmp_path / "old.sh"
    old.write_text(text)
    launch = read_launch_script(text, path=str(old))
    new = render_launch_script(launch, "train_fsdp2.py", ["cfg.yaml"], str(old))
    (tmp_path / "new.sh").write_text(new)
    return new


def _run(tmp_path) -> subprocess.CompletedProcess:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "torchrun"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    return subprocess.run([BASH, "new.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)


def test_tee_into_a_dated_folder_keeps_the_folder_live_and_creates_it(tmp_path):
    new = _new_script(tmp_path, f"""#!/bin/bash
LOG_DIR=logs/$(date +%Y)
mkdir -p $LOG_DIR
torchrun --nproc_per_node 2 pretrain_gpt.py {FLAGS} 2>&1 | tee ${{LOG_DIR}}/train.log
""")
    assert '| tee "logs/$(date +%Y)/train.log"' in new
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    year = subprocess.run(["date", "+%Y"], capture_output=True, text=True).stdout.strip()
    log = (tmp_path / "logs" / year / "train.log").read_text()
    assert "out from --nproc_per_node" in log and "err from --nproc_per_node" in log
    assert "out from" in done.stdout  # tee still shows it


def test_redirection_around_eval_of_a_built_command(tmp_path):
    new = _new_script(tmp_path, f"""#!/bin/bash
LOG=run/out.log
cmd="torchrun --nproc_per_node 2 pretrain_gpt.py {FLAGS}"
eval "$cmd" > $LOG 2>&1
""")
    assert new.rstrip().endswith("cfg.yaml > run/out.log 2>&1")
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    assert (tmp_path / "run" / "out.log").read_text().count("from") == 2


def test_a_function_piped_into_tee_and_its_own_redirection_nest(tmp_path):
    new = _new_script(tmp_path, f"""#!/bin/bash
train() {{
    torchrun --nproc_per_node 2 pretrain_gpt.py {FLAGS} 2> errors.log
}}
train | tee -a all.log
""")
    assert "{ torchrun" in new and "2> errors.log; } | tee -a all.log" in new
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "errors.log").read_text().startswith("err from")
    assert (tmp_path / "all.log").read_text().startswith("out from")


def test_a_scheduler_variable_in_the_log_name_stays_a_reference(tmp_path):
    new = _new_script(tmp_path, f"""#!/bin/bash
srun -N 2 bash -c "torchrun --nproc_per_node 8 pretrain_gpt.py {FLAGS} 2>&1 | tee log_\\${{SLURM_PROCID}}.txt"
""")
    assert '| tee "log_${SLURM_PROCID}.txt"' in new


def test_no_redirection_no_change(tmp_path):
    new = _new_script(tmp_path, f"torchrun --nproc_per_node 2 pretrain_gpt.py {FLAGS}\n")
    assert new.rstrip().endswith("cfg.yaml") and "mkdir" not in new and "tee" not in new
    assert _run(tmp_path).stdout.startswith("out from")


def test_input_redirection_and_heredoc_are_not_copied(tmp_path):
    new = _new_script(tmp_path, f"torchrun --nproc_per_node 2 pretrain_gpt.py {FLAGS} < /dev/null > o.log\n")
    assert new.rstrip().endswith("cfg.yaml > o.log")
