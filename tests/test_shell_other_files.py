"""Scripts that keep their flags or their launch line in other files (`source conf/arguments.sh`,
`srun ./launch.sh`, `bash train.sh 8`) are read through those files when they are on disk, agreeing with bash;
files that set up the machine (a profile, a virtualenv, modules) are not read and stay in the new script."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from megatron_compat.launch_script import render_launch_script
from megatron_compat.shell import ShellReadError, read_launch_script

BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="bash is not installed")

MAIN = """#!/bin/bash
SCRIPT_DIR="$(cd "$(dirname "$0")" && pwd)"
source "${SCRIPT_DIR}/conf/arguments.sh"
export CUDA_DEVICE_MAX_CONNECTIONS=1
torchrun --nproc_per_node $GPUS pretrain_gpt.py ${MODEL_ARGS[@]} --save $SAVE
"""
ARGUMENTS = """GPUS=4
MODEL_ARGS=(--num-layers 2 --hidden-size 64)
SAVE=${SCRIPT_DIR}/ckpt
"""


def _write(tmp_path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)


def _bash_launch(tmp_path, script: str, args=()) -> list[str]:
    stub = 'torchrun() { printf "%s\\n" torchrun "$@"; }\npython() { printf "%s\\n" python "$@"; }\n' \
           'srun() { shift 2; bash "$@"; }\nexport -f torchrun python srun\n'
    done = subprocess.run([BASH, "-c", stub + 'source "$0"', script, *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_sourced_arguments_file_is_read_like_bash(tmp_path, monkeypatch):
    _write(tmp_path, {"job/run.sh": MAIN, "job/conf/arguments.sh": ARGUMENTS})
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script(MAIN, path="job/run.sh")
    theirs = _bash_launch(tmp_path, "job/run.sh")
    assert launch.argv == theirs[theirs.index("pretrain_gpt.py") + 1:]
    assert launch.nproc_per_node == "4" and launch.exports == {"CUDA_DEVICE_MAX_CONNECTIONS": "1"}
    assert any("conf/arguments.sh" in w.message and "read from" in w.message and w.line == 3
               for w in launch.warnings)


def test_another_script_run_under_srun_holds_the_launch(tmp_path, monkeypatch):
    _write(tmp_path, {
        "run.sh": "#!/bin/bash\n#SBATCH --nodes=2\nexport LR=3e-4\nsrun --ntasks-per-node 8 ./launch.sh 7\n",
        "launch.sh": "#!/bin/bash\npython -u pretrain_gpt.py --lr $LR --seed $1\n"})
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script((tmp_path / "run.sh").read_text(), path="run.sh")
    assert (launch.entry, launch.argv) == ("pretrain_gpt.py", ["--lr", "3e-4", "--seed", "7"])
    assert [s.kind for s in launch.wrappers] == ["srun"] and launch.world_size == 16
    theirs = _bash_launch(tmp_path, "run.sh")
    assert launch.argv == theirs[theirs.index("pretrain_gpt.py") + 1:]


BIND = """#!/bin/bash
# binds each local rank to its CPUs and memory, then runs its arguments
for arg in "$@"; do case $arg in --cpu=*) CPU=${arg#*=}; shift ;; --mem=*) MEM=${arg#*=}; shift ;; esac; done
local_rank="${LOCAL_RANK:=${SLURM_LOCALID:=${OMPI_COMM_WORLD_LOCAL_RANK:-}}}"
if [ -z "${local_rank}" ]; then echo "ERROR: cannot read LOCAL_RANK from env" >&2; exit 1; fi
NODE=$(( local_rank / 4 ))
exec numactl --cpunodebind=$NODE --membind=$NODE "${@}"
"""


def test_a_binding_script_given_the_command_is_kept_as_its_wrapper(tmp_path, monkeypatch):
    """NVIDIA's bind.sh style: `srun ./bind.sh --cpu=... python -u pretrain_gpt.py ...`. Its own text gives no launch
    here (it stops without a local rank, which only the running task has), so it is read as a wrapper running its
    arguments, and kept."""
    _write(tmp_path, {"run.sh": "#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=8\n"
                                "srun ./bind.sh --cpu=exclusive --mem=local python -u pretrain_gpt.py --lr 1\n",
                      "bind.sh": BIND})
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script((tmp_path / "run.sh").read_text(), path="run.sh")
    assert (launch.entry, launch.argv, launch.style, launch.world_size) == (
        "pretrain_gpt.py", ["--lr", "1"], "srun + bind.sh + python", 16)
    assert any("./bind.sh led to no launch by itself: read as a wrapper" in w.message for w in launch.warnings)
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "run.sh")
    assert "srun \\\n    ./bind.sh --cpu=exclusive --mem=local \\\n    python -u \\\n    train_fsdp2.py" in text, text


def test_a_binding_script_that_is_not_here_is_kept_as_its_wrapper(tmp_path, monkeypatch):
    """The same line when bind.sh lives elsewhere on the cluster (the script names it by ${DIR}/bind.sh): its
    arguments still start python, so it is read as a wrapper, said so, and kept in front of the new command."""
    _write(tmp_path, {"run.sh": "#!/bin/bash\n#SBATCH --nodes=2 --ntasks-per-node=8\nDIR=/cluster/tools\n"
                                "run_cmd=\"${DIR}/bind.sh --cpu=exclusive python -u pretrain_gpt.py --lr 1\"\n"
                                "srun -l sh -c \"${run_cmd}\"\n"})
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script((tmp_path / "run.sh").read_text(), path="run.sh")
    assert (launch.entry, launch.argv, launch.world_size) == ("pretrain_gpt.py", ["--lr", "1"], 16)
    assert any("/cluster/tools/bind.sh is not here: read as a wrapper" in w.message for w in launch.warnings)
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "run.sh")
    assert "/cluster/tools/bind.sh --cpu=exclusive" in text and "train_fsdp2.py" in text, text


def test_a_missing_script_whose_arguments_start_no_program_stays_unread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ShellReadError, match="no launch line found"):
        read_launch_script("#!/bin/bash\n./prepare.sh --stage 1 data.json\n", path="run.sh")


def test_bash_script_with_arguments_sees_only_exported_variables(tmp_path, monkeypatch):
    _write(tmp_path, {
        "outer.sh": "HIDDEN=64\nexport LAYERS=2\nbash inner.sh 8\n",
        "inner.sh": "torchrun --nproc_per_node $1 pretrain_gpt.py --num-layers $LAYERS --hidden-size ${HIDDEN:-32}\n"})
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script((tmp_path / "outer.sh").read_text(), path="outer.sh")
    assert launch.nproc_per_node == "8"
    assert launch.argv == ["--num-layers", "2", "--hidden-size", "32"]


def test_files_that_set_up_the_machine_are_kept_not_read(tmp_path, monkeypatch):
    text = ("source /etc/profile.d/modules.sh\nsource .venv/bin/activate\n. ~/.bashrc\n"
            "torchrun pretrain_gpt.py --num-layers 2\n")
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script(text, path="run.sh")
    assert launch.setup_sources == ["source /etc/profile.d/modules.sh", "source .venv/bin/activate", ". ~/.bashrc"]
    new = render_launch_script(launch, "train_fsdp2.py", ["cfg.yaml"], "run.sh")
    head = new.split("set -euo pipefail")[0]
    assert all(line in head for line in launch.setup_sources)


def test_a_missing_file_is_said_and_the_launch_is_not_invented(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script("source conf/args.sh\ntorchrun pretrain_gpt.py $ARGS\n", path="run.sh")
    assert launch.argv == [] and any("no such file here" in w.message for w in launch.warnings)
    with pytest.raises(ShellReadError, match="launch.sh"):
        read_launch_script("bash ./launch.sh\n", path="run.sh")


def test_a_script_that_sources_itself_stops(tmp_path, monkeypatch):
    _write(tmp_path, {"loop.sh": "source loop.sh\ntorchrun pretrain_gpt.py --num-layers 2\n"})
    monkeypatch.chdir(tmp_path)
    launch = read_launch_script((tmp_path / "loop.sh").read_text(), path="loop.sh")
    assert launch.argv == ["--num-layers", "2"]


SUBMIT = """#!/bin/bash
NODES=$1
cat > job.sbatch <<- EOM
\t#!/bin/bash
\t#SBATCH --nodes=$NODES
\t#SBATCH --gpus-per-node=4
\tsrun torchrun --nproc_per_node 4 --nnodes $NODES pretrain_gpt.py --num-layers 2 --hidden-size 64
EOM
echo "Saved the job"
sbatch job.sbatch
"""


def test_job_script_written_then_submitted_is_read(tmp_path):
    """A submit script that writes the job with a here-document, then `sbatch job.sbatch` (Swiss AI's submit.sh):
    the job is read as written, its #SBATCH lines as the job receives them (the submitter's variables expanded)."""
    script = tmp_path / "submit.sh"
    script.write_text(SUBMIT.replace("\\t", "\t"))
    launch = read_launch_script(script.read_text(), ["2"], path=str(script))
    assert (launch.entry, launch.argv, launch.world_size) == (
        "pretrain_gpt.py", ["--num-layers", "2", "--hidden-size", "64"], 8)
    assert "#SBATCH --nodes=2" in launch.directives


def test_job_script_on_disk_is_read_and_a_missing_one_is_named(tmp_path):
    _write(tmp_path, {"jobs/train.slurm": "#SBATCH --nodes=1\ntorchrun --nproc_per_node 8 pretrain_gpt.py --x 1\n"})
    script = tmp_path / "submit.sh"
    script.write_text("sbatch --time 10:00 --job-name big jobs/train.slurm\n")
    launch = read_launch_script(script.read_text(), path=str(script))
    assert (launch.entry, launch.argv, launch.world_size) == ("pretrain_gpt.py", ["--x", "1"], 8)
    script.write_text("qsub -l select=2 jobs/missing.pbs\n")
    with pytest.raises(ShellReadError, match=r"line 1 runs jobs/missing.pbs: convert that script instead"):
        read_launch_script(script.read_text(), path=str(script))


def test_a_submitted_job_whose_flags_come_from_the_environment_is_refused_naming_them(tmp_path, capsys):
    """Megatron-LM's SC21 scripts: SBATCH.sh submits SRUN.sh, which runs `python pretrain_gpt.py ${MEGATRON_PARAMS}`
    with the flags exported by the script that called SBATCH.sh."""
    from tools import convert_args

    _write(tmp_path, {"SRUN.sh": '#SBATCH --ntasks-per-node=8\nCMD="python -u ${CODE}/pretrain_gpt.py ${PARAMS}"\n'
                                 'srun -l sh -c "${CMD}"\n',
                      "SBATCH.sh": "sbatch -p ${SLURM_PARTITION} --nodes=${NNODES} --export=CODE,PARAMS SRUN.sh\n"})
    code = convert_args.main([str(tmp_path / "SBATCH.sh"), "-o", str(tmp_path / "out.yaml")])
    err = capsys.readouterr().err
    assert code == 1 and not (tmp_path / "out.yaml").exists()
    assert "pretrain_gpt.py is launched at line 1 with no arguments: $NNODES, $CODE, $PARAMS expand to nothing" in err


def test_an_absolute_path_of_the_authors_cluster_is_read_from_this_checkout(tmp_path, capsys):
    """`source /scratch/me/Bench/attn_bench/configs/training.sh` after `cd $REPO_ROOT`: the same file of this
    checkout (its last components, below the script's folder or above it) is read, and the warning says where."""
    _write(tmp_path, {"attn_bench/configs/training.sh": "TRAIN=(--num-layers 2 --hidden-size 64)\n",
                      "attn_bench/jobs/run.slurm": "REPO_ROOT=/scratch/me/Bench\ncd $REPO_ROOT\n"
                                                   "source $REPO_ROOT/attn_bench/configs/training.sh\n"
                                                   "torchrun --nproc_per_node 2 pretrain_gpt.py ${TRAIN[@]}\n"})
    script = tmp_path / "attn_bench/jobs/run.slurm"
    launch = read_launch_script(script.read_text(), path=str(script))
    assert launch.argv == ["--num-layers", "2", "--hidden-size", "64"]
    assert any(f"read from {tmp_path}/attn_bench/configs/training.sh" in w.message for w in launch.warnings)
