"""Command substitutions that compute a path (`$(cd "$(dirname "$0")" && pwd)`, `` `pwd` ``, `$(dirname $(readlink -f
$0))`, `basename`) are computed by the reader, and agree with what real bash and coreutils give when the script is
started as `bash sub/dir/s.sh` from the folder convert_args runs in."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from megatron_compat.shell import read_launch_script
from megatron_compat.shell.path_commands import basename, dirname

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None or shutil.which("dirname") is None, reason="needs bash and coreutils")

SCRIPTS = {
    "pai_style": """
CURRENT_DIR="$( cd "$( dirname "$0" )" && pwd )"
MEGATRON_PATH=$( dirname $( dirname ${CURRENT_DIR}))
torchrun --nproc_per_node 2 pretrain_gpt.py --data-path ${MEGATRON_PATH}/data/text --save $CURRENT_DIR/ckpt
""",
    "bash_source_and_backticks": """
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" &> /dev/null && pwd)
ROOT=`pwd`
NAME=$(basename $0 .sh)
torchrun pretrain_gpt.py --data-path $HERE/../corpus --save "$ROOT/out/${NAME}"
""",
    "cd_then_pwd": """
cd "$(dirname "$0")"/..
WORK=$(pwd)
LOGS=$(realpath ./logs)
torchrun pretrain_gpt.py --save $WORK/ckpt --tensorboard-dir $LOGS
""",
    "pwd_variable": """
BASE_DIR="$PWD"
cd "$(dirname "$0")"
torchrun pretrain_gpt.py --save $BASE_DIR/ckpt --tensorboard-dir ${PWD}/tb
""",
    "readlink": """
SCRIPT=$(readlink -f "$0")
torchrun pretrain_gpt.py --save $(dirname "$SCRIPT")/ckpt
""",
}


def _bash_argv(script: str, cwd: str) -> list[str]:
    stub = 'torchrun() { printf "%s\\n" "$@"; }\nexport -f torchrun\n'
    done = subprocess.run([BASH, "-c", stub + 'source "$0"', script], cwd=cwd, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_path_substitutions_agree_with_bash(name, tmp_path, monkeypatch):
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    (tmp_path / "sub" / "logs").mkdir()
    script = "sub/dir/s.sh"
    (tmp_path / script).write_text("#!/bin/bash\n" + SCRIPTS[name])
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script(SCRIPTS[name], path=script)
    theirs = _bash_argv(script, str(tmp_path))
    assert launch.argv == theirs[theirs.index("pretrain_gpt.py") + 1:]
    assert not [w for w in launch.warnings if "not evaluated" in w.message]


def test_pwd_from_the_starting_folder_is_said():
    launch = read_launch_script("ROOT=`pwd`\ntorchrun pretrain_gpt.py --save $ROOT/ckpt\n", path="/abs/s.sh")
    assert launch.argv == ["--save", os.path.join(os.getcwd(), "ckpt")]
    assert any("`pwd` read as" in w.message and w.line == 1 for w in launch.warnings)


def test_other_substitutions_stay_text():
    launch = read_launch_script('D=$(date +%F)\ntorchrun pretrain_gpt.py --save ckpt_$D\n', path="/abs/s.sh")
    assert launch.argv == ["--save", "ckpt_$(date +%F)"]
    assert any("not evaluated" in w.message for w in launch.warnings)


@pytest.mark.parametrize("path", ["a/b/c.sh", "c.sh", "/c.sh", "/", "a/b/", "a//b//", "", ".", "../x", "//a"])
def test_dirname_and_basename_as_coreutils(path):
    assert dirname(path) == subprocess.run(["dirname", "--", path], capture_output=True, text=True).stdout.strip()
    if path:
        expected = subprocess.run(["basename", "--", path], capture_output=True, text=True).stdout.strip()
        assert basename(path) == expected
    assert basename("a/train.sh", ".sh") == "train"
