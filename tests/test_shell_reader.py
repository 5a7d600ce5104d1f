"""Tests for the launch-script reader and the new-script renderer.

Where a construct's meaning is bash's, the test also asks bash itself: `_bash_launches`
runs the script under /bin/bash with PATH emptied and torchrun/python replaced by shell
functions that record their arguments and environment (nothing else can run), and the
reader must agree with what bash would have passed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from megatron_compat.launch_script import kept_exports, render_launch_script
from megatron_compat.shell import LaunchScript, ShellReadError, read_launch_script
from megatron_compat.shell.launchers import PER_RANK, ROLES

CORPUS = Path(__file__).parent / "launch_scripts"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())
BASH = shutil.which("bash")

# ----------------------------------------------------------------------------- bash oracle
_STUBS = r'''
__record() { { printf '%s\0' LAUNCH "$@"; for __n in $(compgen -e); do printf '%s\0' "ENV:$__n=${!__n}"; done
               printf 'END\0'; } >> "$__ORACLE_OUT"; }
__run_rest() {  # a launcher's command: from the first word that names a program
    local __i; for ((__i = 1; __i <= $#; __i++)); do
        case "${!__i##*/}" in
            python*|torchrun|hyperpodrun|deepspeed|msrun|bash|sh|numactl|env|apptainer|singularity|shifter)
                "${@:__i}"; return ;;
        esac
        # a launch.sh that is not here, given a python script: it runs python with its arguments (LUMI)
        [[ "${!__i}" == *.sh && ! -f "${!__i}" && "${@:__i+1:1}" == *.py ]] && { python "${@:__i+1}"; return; }
    done; }
torchrun() { __record torchrun "$@"; }
hyperpodrun() { __record hyperpodrun "$@"; }
python() { __record python "$@"; }
python3() { __record python3 "$@"; }
msrun() { __record msrun "$@"; }
deepspeed() { __record deepspeed "$@"; case " $* " in *" --no_python "*) __run_rest "$@" ;; esac; }
srun() { __record srun "$@"; __run_rest "$@"; }
mpirun() { __record mpirun "$@"; __run_rest "$@"; }
mpiexec() { __record mpiexec "$@"; __run_rest "$@"; }
numactl() { __record numactl "$@"; __run_rest "$@"; }
uv() { __record uv "$@"; __run_rest "$@"; }
aprun() { __record aprun "$@"; __run_rest "$@"; }
jsrun() { __record jsrun "$@"; __run_rest "$@"; }
bcprun() {  # NVIDIA Base Command: the command is its --cmd / -c string, run by a shell on every rank
    __record bcprun "$@"; local __c=""
    while [[ $# -gt 0 ]]; do
        case "$1" in -c|--cmd) __c="$2"; shift 2 ;; --cmd=*) __c="${1#--cmd=}"; shift ;; *) shift ;; esac
    done
    [[ -n "$__c" ]] && "$BASH" -c "$__STUBS"$'\n'"$__c"; }
sbatch() {  # sbatch <<EOF: the job script is its standard input
    [[ $# -eq 0 || "${@: -1}" == -* ]] && "$BASH" -c "$__STUBS"$'\n'"$(< /dev/stdin)"; }  # no PATH: no cat
nsys() { __record nsys "$@"; __run_rest "$@"; }
apptainer() { __record apptainer "$@"; __run_rest "$@"; }
singularity() { __record singularity "$@"; __run_rest "$@"; }
shifter() { __record shifter "$@"; __run_rest "$@"; }
bash() {  # bash -c STRING [NAME ARGS] or bash FILE [ARGS]: a real child shell, with these stubs
    while [[ "$1" == -* ]]; do
        if [[ "$1" != --* && "$1" == *c* ]]; then shift; "$BASH" -c "$__STUBS"$'\n'"$1" "${@:2}"; return; fi
        shift
    done
    [[ -f "$1" ]] && "$BASH" -c "$__STUBS"$'\n'"$(< "$1")" "$@"; }
cat() {  # cat <<EOF > FILE: the here-document is written (a script may run the file it wrote)
    [[ $# -eq 0 ]] && while IFS= read -r __l || [[ -n "$__l" ]]; do printf '%s\n' "$__l"; done; return 0; }
sh() { bash "$@"; }
env() (  # a subshell: the assignments last for the command only
    while [[ $# -gt 0 ]]; do
        case "$1" in -u|--unset) unset "$2"; shift 2 ;; -*) shift ;; *=*) export "$1"; shift ;; *) break ;; esac
    done
    "$@")
exec() { if [[ $# -gt 0 ]]; then "$@"; exit $?; fi; }  # exec CMD: CMD (a stub) then the end; bare exec: nothing
source() { :; }
.() { :; }
cd() { :; }
command_not_found_handle() { return 0; }
PATH=/nonexistent
'''


def _bash_launches(text: str, args=(), env: dict | None = None, cwd: str | None = None) -> list[dict]:
    """Every launcher call bash would make (torchrun, python, srun, mpirun, ...), as {"argv": [...], "env": {...}}."""
    with tempfile.TemporaryDirectory() as d:
        script, out = os.path.join(d, "s.sh"), os.path.join(d, "out")
        Path(script).write_text(text)
        Path(out).write_text("")
        subprocess.run([BASH, "-c", _STUBS + 'builtin source "$__S" "$@"', "script.sh", *args],
                       env={**(env or {}), "__ORACLE_OUT": out, "__S": script, "HOME": d, "__STUBS": _STUBS},
                       cwd=cwd or d, capture_output=True, timeout=30)
        records = Path(out).read_text().split("\0")
    launches, cur = [], None
    for r in records:
        if r == "LAUNCH":
            cur = {"argv": [], "env": {}}
        elif r == "END":
            launches.append(cur)
            cur = None
        elif cur is not None and r.startswith("ENV:"):
            k, _, v = r[4:].partition("=")
            cur["env"][k] = v
        elif cur is not None:
            cur["argv"].append(r)
    return launches


needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")


_REFERENCE = re.compile(r"\$\{?[A-Za-z_]\w*\}?")


def _assert_same_words(ours: list[str], theirs: list[str], prefix: bool = False) -> None:
    """Word for word, except where the reader differs from bash by design: an unevaluated command substitution
    is kept as text, and an option whose variable is empty keeps it as a run-time reference ($SLURM_NNODES)
    where bash passes nothing, or an empty word. prefix: `theirs` may go on after `ours`."""
    j = 0
    for word in ours:
        if _REFERENCE.fullmatch(word) and (j >= len(theirs) or theirs[j] != word):
            j += 1 if j < len(theirs) and theirs[j] == "" else 0
            continue
        assert j < len(theirs), (ours, theirs)
        if "$" not in word and "`" not in word:
            assert word == theirs[j], (ours, theirs)
        j += 1
    assert prefix or j == len(theirs), (ours, theirs)


def _agrees_with_bash(launch: LaunchScript, text: str, args=(), env=None, cwd=None) -> None:
    """The reader's launcher options, entry + argv and exports equal what bash passes to the last call of that
    launcher; each wrapper (srun, mpirun, numactl, uv run) got the options the reader found. cwd: the folder bash
    starts in (the one the reader took for the script's starting folder); a temporary one by default."""
    calls = _bash_launches(text, args, env, cwd)
    assert calls, "bash made no launch call"
    module = launch.launcher.startswith("torch.")
    program = "python" if module else launch.launcher
    mine = [c for c in calls if c["argv"][0].rstrip("0123456789.") == program]
    assert mine, (program, [c["argv"][:2] for c in calls])
    bash_argv = mine[-1]["argv"]
    if "--no_python" in launch.launcher_args:  # deepspeed --no_python CMD: the entry is in CMD's python call
        _assert_same_words(launch.launcher_args, bash_argv[1:], prefix=True)
        python = [c for c in calls if c["argv"][0].startswith("python")][-1]["argv"]
        ours = [launch.entry] + launch.argv
        assert python[-len(ours):] == ours, (ours, python)
        return
    if module:
        assert "-m" in bash_argv and bash_argv[bash_argv.index("-m") + 1] == launch.launcher, bash_argv
        bash_argv = bash_argv[bash_argv.index("-m") + 2:]
    else:
        bash_argv = bash_argv[1:]
    _assert_same_words(launch.launcher_args + [launch.entry] + launch.argv, bash_argv)
    for stage in launch.wrappers:
        theirs = next(c["argv"] for c in calls if c["argv"][0] == stage.program[0])
        _assert_same_words(stage.program + stage.args, theirs, prefix=True)
    for name, value in launch.exports.items():
        if "$(" not in value and "`" not in value:
            assert mine[-1]["env"].get(name) == value, name


def read(text: str, args=()) -> LaunchScript:
    return read_launch_script(text, list(args), path="test.sh")


def warn_lines(launch: LaunchScript) -> list[int]:
    return [w.line for w in launch.warnings]


# ----------------------------------------------------------------------------- constructs
def test_assignments_and_exports_in_order_with_lines():
    text = ("A=1\n"
            "export CUDA_DEVICE_MAX_CONNECTIONS=1\n"
            "export B=\"x y\" C=$A\n"
            "D=4; export D\n"
            "declare -x E=5\n"
            "B=changed\n"
            "F=6\n"
            "torchrun --nproc_per_node 2 pretrain_gpt.py\n")
    launch = read(text)
    assert list(launch.exports) == ["CUDA_DEVICE_MAX_CONNECTIONS", "B", "C", "D", "E"]
    assert launch.exports == {"CUDA_DEVICE_MAX_CONNECTIONS": "1", "B": "changed", "C": "1", "D": "4", "E": "5"}
    assert launch.export_lines == {"CUDA_DEVICE_MAX_CONNECTIONS": 2, "B": 3, "C": 3, "D": 4, "E": 5}
    assert launch.warnings == []


def test_export_value_is_not_word_split():
    launch = read('X="a  b"\nexport Y=$X\ntorchrun t.py\n')
    assert launch.exports["Y"] == "a  b"


def test_prefix_assignment_on_launch_becomes_environment():
    launch = read("CUDA_VISIBLE_DEVICES=0,1 torchrun --nproc_per_node 2 pretrain_gpt.py --x\n")
    assert launch.exports == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert launch.argv == ["--x"]


@pytest.mark.parametrize("expr,expected", [
    ("$V", "set"), ("${V}", "set"), ("x${V}y", "xsety"),
    ("${U:-dflt}", "dflt"), ("${E:-dflt}", "dflt"), ("${E-dflt}", ""), ("${V:-dflt}", "set"),
    ("${U:+alt}", ""), ("${V:+alt}", "alt"),
    ("${P%/}", "/ckpt/run"), ("${Q##*/}", "tok.model"), ("${Q%.*}", "/m/tok"), ("${Q%%/*}", ""),
    ("${P#/}", "ckpt/run/"), ("${P/ckpt/data}", "/data/run/"),
    ("${V^^}", "SET"), ("${#V}", "3"), ("${V:1}", "et"), ("${V:$N-1:N}", "et"), ("${V: -2}", "et"),
    ("${!R+x}", "x"), ("${!R:-dflt}", "set"), ("${!W+x}", ""), ("${!W:-dflt}", "dflt"),
    ("${L[$(( N % ${#L[*]} ))]}", "c"),  # Fugaku's dataset per rank: an index with brackets inside
])
def test_parameter_expansion(expr, expected):
    text = f'V=set\nE=\nP=/ckpt/run/\nQ=/m/tok.model\nN=2\nR=V\nW=U\nL=(a b c)\ntorchrun t.py "{expr}"\n'
    launch = read(text)
    assert launch.argv == [expected]
    assert launch.warnings == []
    if BASH:
        _agrees_with_bash(launch, text)


def test_assign_default_sets_the_variable():
    launch = read('echo "${NNODES:=4}"\n: ${GPUS:=8}\ntorchrun --nnodes $NNODES --nproc_per_node $GPUS t.py\n')
    assert (launch.nnodes, launch.nproc_per_node, launch.world_size) == ("4", "8", 32)


def test_unknown_variable_expands_empty_with_warning_on_its_line():
    launch = read('A=1\ntorchrun t.py --a $A \\\n  --b "$MISSING" --c $ALSO_MISSING\n')
    assert launch.argv == ["--a", "1", "--b", "", "--c"]
    assert warn_lines(launch) == [3, 3]
    assert "MISSING" in launch.warnings[0].message


def test_default_does_not_warn_for_unset_variable():
    assert read("X=${NOT_SET:-1}\ntorchrun t.py $X\n").warnings == []


def test_positional_arguments_and_defaults():
    text = ('RANK=${1:-0}\nADDR=${2:-localhost}\nPORT=$3\n'
            'torchrun --node_rank $RANK --master_addr $ADDR t.py $PORT "$#"\n')
    launch = read(text, ["3", "10.0.0.2"])
    assert (launch.node_rank, launch.master_addr) == ("3", "10.0.0.2")
    assert launch.argv == ["2"]  # $3 is unset: empty and unquoted, so no field
    assert warn_lines(launch) == [3]
    assert read(text).node_rank == "0"


def test_shift_and_set_positionals():
    launch = read('shift\nset -- "$@" extra\ntorchrun t.py "$@" "$1"\n', ["a", "b c"])
    assert launch.argv == ["b c", "extra", "b c"]


@needs_bash
def test_arrays_with_comments_append_and_quoted_at():
    text = ("ARGS=(\n"
            "  --num-layers 2   # comment inside\n"
            "  # a whole comment line\n"
            "  --name \"my run\" ''\n"
            ")\n"
            "ARGS+=( --bf16 )\n"
            "ARGS+=(--lr 1e-4)\n"
            "torchrun t.py \"${ARGS[@]}\" ${ARGS[@]} ${ARGS[1]} ${#ARGS[@]}\n")
    launch = read(text)
    quoted = ["--num-layers", "2", "--name", "my run", "", "--bf16", "--lr", "1e-4"]
    unquoted = ["--num-layers", "2", "--name", "my", "run", "--bf16", "--lr", "1e-4"]
    assert launch.argv == quoted + unquoted + ["2", "8"]
    _agrees_with_bash(launch, text)


def test_empty_array_in_quotes_gives_no_argument():
    assert read('A=()\ntorchrun t.py "${A[@]}" "pre${A[@]}"\n').argv == ["pre"]


@needs_bash
def test_string_holding_several_flags_splits_only_unquoted():
    text = ("GPT_ARGS=\"--num-layers 24 \\\n    --hidden-size 1024\"\n"
            "DATA_ARGS=\"--split '99,1,0' --data-path /data/x\"\n"
            "torchrun t.py $GPT_ARGS $DATA_ARGS \"$GPT_ARGS\"\n")
    launch = read(text)
    assert launch.argv == ["--num-layers", "24", "--hidden-size", "1024",
                           "--split", "'99,1,0'", "--data-path", "/data/x",
                           "--num-layers 24     --hidden-size 1024"]
    _agrees_with_bash(launch, text)


@needs_bash
def test_quoting_rules():
    text = ("V='a b'\n"
            "torchrun t.py 'single $V' \"double $V\" es\\ caped \\$V a\"b\"'c' \"\\$V \\\\ \\x\" $'tab\\there' \"\"\n")
    launch = read(text)
    assert launch.argv == ["single $V", "double a b", "es caped", "$V", "abc", "$V \\ \\x", "tab\there", ""]
    _agrees_with_bash(launch, text)


def test_comments_and_continuations():
    text = ("# header comment\n"
            "X=1 # trailing comment\n"
            "torchrun t.py \\\n"
            "  --a \"#not a comment\" \\\n"
            "  --b x#y \\\n"
            "  --c $X # done\n")
    launch = read(text)
    assert launch.argv == ["--a", "#not a comment", "--b", "x#y", "--c", "1"]
    assert launch.entry_line == 3


@pytest.mark.parametrize("expr,expected", [
    ("NPUS * NNODES", "16"), ("$NPUS*$NNODES", "16"), ("(NPUS + 2) * 3", "30"), ("7 / 2", "3"),
    ("-7 / 2", "-3"), ("7 % 3", "1"), ("2 ** 10", "1024"), ("NPUS > 4 && NNODES == 2", "1"),
    ("UNSET_VAR + 1", "1"), ("${NPUS} << 1", "16"),
    # bash's signed 64-bit integers (checked with bash 5): wrap-around, exact large quotients, huge powers
    ("2 ** 64", "0"), ("2 ** 63", "-9223372036854775808"), ("9223372036854775807 + 1", "-9223372036854775808"),
    ("1000000000000000001 / 3", "333333333333333333"), ("-7 % 3", "-1"), ("1 << 65", "2"),
    ("3 ** 99999", "-1221727684135366613"),
])
def test_arithmetic(expr, expected):
    launch = read(f"NPUS=8\nNNODES=2\ntorchrun t.py $(( {expr} ))\n")
    assert launch.argv == [expected]
    assert launch.warnings == []


def test_arithmetic_it_cannot_evaluate_is_reported():
    launch = read("N=4\ntorchrun t.py $(( N > 1 ? N : 1 ))\n")
    assert launch.argv == ["$(( N > 1 ? N : 1 ))"]
    assert warn_lines(launch) == [2]


@pytest.mark.parametrize("size,expected_tp", [("7B", "1"), ("13B", "2"), ("70B", "8"), ("1T", "0")])
def test_if_elif_else_on_string_tests(size, expected_tp):
    text = ("SIZE=${SIZE:-%s}\n"
            "if [[ $SIZE == 7B ]]; then\n  TP=1\n"
            "elif [ \"$SIZE\" = \"13B\" ]\nthen\n  TP=2\n"
            "elif [[ $SIZE == 7* || $SIZE == 70B ]]; then TP=8\n"
            "else\n  TP=0\nfi\n"
            "torchrun t.py --tp $TP\n") % size
    assert read(text).argv == ["--tp", expected_tp]


@pytest.mark.parametrize("test,expected", [
    ("[ 8 -gt 4 ]", "yes"), ("[ 8 -lt 4 ]", "no"), ("[[ $N -ge 8 ]]", "yes"), ("[[ $((N/2)) -eq 4 ]]", "yes"),
    ("[ -z \"$EMPTY\" ]", "yes"), ("[ -n \"$EMPTY\" ]", "no"), ("[ ! -z \"$N\" ]", "yes"),
    ("[ \"$N\" != 8 ]", "no"), ("[ $N -eq 8 -a $N -ne 9 ]", "yes"), ("test $N = 8", "yes"),
    ("[[ -v N ]]", "yes"), ("[[ $N =~ ^[0-9]+$ ]]", "yes"), ("! [[ $N == 8 ]]", "no"),
])
def test_condition_forms(test, expected):
    text = f"N=8\nEMPTY=\nif {test}; then R=yes; else R=no; fi\ntorchrun t.py $R\n"
    assert read(text).argv == [expected]


def test_file_test_is_reported_and_assumed_false():
    launch = read("if [ -f /ckpt/latest ]; then\n  L=--load\nfi\ntorchrun t.py $L\n")
    assert launch.argv == []
    assert 1 in warn_lines(launch)


def test_branch_taken_decides_the_launch():
    text = ("MODE=${1:-train}\n"
            "if [ \"$MODE\" = debug ]; then\n"
            "  python pretrain_gpt.py --debug\n"
            "else\n"
            "  torchrun --nproc_per_node 8 pretrain_gpt.py --real\n"
            "fi\n")
    assert read(text).argv == ["--real"]
    debug = read(text, ["debug"])
    assert (debug.launcher, debug.argv, debug.entry_line) == ("python", ["--debug"], 3)


def test_distributed_launch_wins_over_preprocessing_python():
    text = ("python tools/preprocess_data.py --input x.json\n"
            "torchrun --nproc_per_node 8 pretrain_gpt.py --a\n"
            "python tools/plot.py\n")
    launch = read(text)
    assert (launch.entry, launch.entry_line) == ("pretrain_gpt.py", 2)
    assert warn_lines(launch) == [1, 3]


@pytest.mark.parametrize("line,launcher,entry,launcher_args", [
    ("torchrun --nproc_per_node 8 --nnodes 2 pretrain_gpt.py --x", "torchrun", "pretrain_gpt.py",
     ["--nproc_per_node", "8", "--nnodes", "2"]),
    ("python -m torch.distributed.launch --nproc_per_node 8 --nnodes 2 pretrain_gpt.py --x",
     "torch.distributed.launch", "pretrain_gpt.py", ["--nproc_per_node", "8", "--nnodes", "2"]),
    ("python3 -u -m torch.distributed.run --nproc-per-node=8 --nnodes=2 --standalone pretrain_gpt.py --x",
     "torch.distributed.run", "pretrain_gpt.py", ["--nproc-per-node=8", "--nnodes=2", "--standalone"]),
    ("python -u pretrain_gpt.py --x", "python", "pretrain_gpt.py", ["-u"]),
    ("L=\"torchrun --nproc_per_node 8 --nnodes 2\"; $L pretrain_gpt.py --x", "torchrun", "pretrain_gpt.py",
     ["--nproc_per_node", "8", "--nnodes", "2"]),
    ("nohup /opt/conda/bin/torchrun --nproc_per_node=8 --nnodes=2 pretrain_gpt.py --x > out.log 2>&1 &",
     "torchrun", "pretrain_gpt.py", ["--nproc_per_node=8", "--nnodes=2"]),
    ("mkdir -p logs && torchrun --nproc_per_node 8 --nnodes 2 pretrain_gpt.py --x 2>&1 | tee logs/a.log",
     "torchrun", "pretrain_gpt.py", ["--nproc_per_node", "8", "--nnodes", "2"]),
    # python running the launcher's own console script (a patched DeepSpeed in a folder of its own)
    ("python /opt/ds/bin/deepspeed --num_gpus=8 --num_nodes=2 pretrain_gpt.py --x", "deepspeed", "pretrain_gpt.py",
     ["--num_gpus=8", "--num_nodes=2"]),
    ("python3 -u /usr/local/bin/torchrun --nproc_per_node 8 --nnodes 2 pretrain_gpt.py --x", "torchrun",
     "pretrain_gpt.py", ["--nproc_per_node", "8", "--nnodes", "2"]),
])
def test_launchers(line, launcher, entry, launcher_args):
    launch = read(line + "\n")
    assert (launch.launcher, launch.entry, launch.launcher_args, launch.argv) == (
        launcher, entry, launcher_args, ["--x"])
    if launcher not in ("python", "deepspeed"):
        assert (launch.nproc_per_node, launch.nnodes) == ("8", "2")
    if launcher != "python":
        assert launch.world_size == 16
        assert launch.world_size == 16
    else:
        assert launch.world_size == 1


def test_env_wrapper_and_case_statement():
    text = ("case $1 in\n  a) X=1 ;;\n  *) X=2 ;;\nesac\n"
            "env NCCL_DEBUG=INFO -u FOO torchrun --nproc_per_node 2 t.py $X\n")
    launch = read(text, ["a"])
    assert launch.exports == {"NCCL_DEBUG": "INFO"}
    assert (launch.entry, launch.argv) == ("t.py", ["1"])
    assert read(text, ["b"]).argv == ["2"]


CASE_SCRIPT = """SCALE=${1:-800M}
case "${SCALE}" in
    "800M")
        TP=1
        LAYERS=48 ;;
    8B|16B) TP=4; LAYERS=56 ;;
    (2.7B) TP=2
           LAYERS=32
           ;&
    *)
        echo "unknown scale $SCALE"
        exit 1
        ;;
esac
case $TP in 1) KIND=small ;; [2-4]) KIND=large ;; esac
torchrun --nproc_per_node 8 pretrain_gpt.py --tensor-model-parallel-size $TP --num-layers $LAYERS --kind $KIND
"""


@needs_bash
@pytest.mark.parametrize("scale", ["800M", "8B", "16B"])
def test_case_statement_takes_the_branch_bash_takes(scale):
    launch = read(CASE_SCRIPT, [scale])
    with pytest.raises(ShellReadError, match="exits at line 12"):  # 2.7B falls through (;&) to the exit
        read(CASE_SCRIPT, ["2.7B"])
    assert launch.argv[:4] == ["--tensor-model-parallel-size", {"800M": "1"}.get(scale, "4"), "--num-layers",
                               {"800M": "48"}.get(scale, "56")]
    _agrees_with_bash(launch, CASE_SCRIPT, [scale])


def test_case_on_a_value_known_only_when_the_job_runs_takes_no_branch():
    launch = read("case $SLURM_PROCID in 0) X=a ;; *) X=b ;; esac\ntorchrun t.py --x ${X:-none}\n")
    assert launch.argv == ["--x", "none"]
    assert any("'case' on $SLURM_PROCID" in w.message for w in launch.warnings)


def test_case_without_esac_names_its_line():
    with pytest.raises(ShellReadError, match=r":2: 'case' is not closed by 'esac'"):
        read("X=1\ncase $X in 1) Y=2 ;;\n")


def test_distributed_settings_both_spellings_and_rdzv():
    a = read("torchrun --nproc-per-node=4 --nnodes=2 --node-rank=1 --master-addr=h --master-port=7 t.py\n")
    b = read("torchrun --nproc_per_node 4 --nnodes 2 --node_rank 1 --master_addr h --master_port 7 t.py\n")
    for launch in (a, b):
        assert (launch.nproc_per_node, launch.nnodes, launch.node_rank, launch.master_addr,
                launch.master_port, launch.world_size) == ("4", "2", "1", "h", "7", 8)
    c = read("torchrun --nproc_per_node=gpu --rdzv_endpoint=host1:29400 t.py\n")
    assert (c.master_addr, c.master_port, c.world_size, c.node_rank) == ("host1", "29400", None, None)


def test_semicolons_and_and_or_chains():
    text = ("A=1; B=2 ; C=$((A+B))\n"
            "[ -z \"$D\" ] && D=default\n"
            "[ -n \"$A\" ] || A=never\n"
            "true || E=never\n"
            "torchrun t.py $A $B $C $D $E\n")
    launch = read(text)
    assert launch.argv == ["1", "2", "3", "default"]


def test_command_substitution_backticks_and_source_are_reported_and_kept():
    text = ("source /etc/profile.d/env.sh\n"
            ". ./other.sh\n"
            "TS=$(date +'%Y %m')\n"
            "N=`nproc`\n"
            "torchrun t.py --save /ckpt/run_$TS --n \"$N\"\n")
    launch = read(text)
    assert launch.argv == ["--save", "/ckpt/run_$(date +'%Y %m')", "--n", "`nproc`"]
    assert warn_lines(launch) == [1, 2, 3, 4]
    assert "date" in launch.warnings[2].message


def test_heredoc_is_skipped_with_a_warning():
    text = ("sbatch <<EOF\n"
            "torchrun fake.py --not-this\n"
            "EOF\n"
            "python - <<-'END'\n"
            "\tpython other.py\n"
            "\tEND\n"
            "torchrun real.py --this\n")
    launch = read(text)
    assert (launch.entry, launch.argv, launch.entry_line) == ("real.py", ["--this"], 7)
    assert warn_lines(launch) == [1, 4] and launch.files == {}


HEREDOC_FILES = r"""GBS=256; ZERO=1; NAME="a b"
DS_CONFIG=ds_config_$GBS.json
cat <<EOT > $DS_CONFIG
{ "train_batch_size": $GBS, "zero_optimization": { "stage": ${ZERO} },
  "name": "$NAME", "cost": "\$5", "sum": $(( GBS * 2 )) }
EOT
cat > literal.json <<'EOF'
{"kept": "$GBS ${ZERO}"}
EOF
cat >> $DS_CONFIG <<-EOF
	{"appended": $ZERO}
	EOF
echo ignored | tee -a teed.txt <<EOF
teed $GBS
EOF
torchrun --nproc_per_node 2 pretrain_gpt.py --deepspeed_config $DS_CONFIG
"""


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_heredoc_written_to_a_file_agrees_with_bash(tmp_path):
    launch = read(HEREDOC_FILES)
    assert launch.argv == ["--deepspeed_config", "ds_config_256.json"] and warn_lines(launch) == []
    script = tmp_path / "s.sh"
    script.write_text("torchrun() { :; }\n" + HEREDOC_FILES)
    subprocess.run([BASH, str(script)], cwd=tmp_path, check=True, capture_output=True, timeout=30)
    assert sorted(launch.files) == ["ds_config_256.json", "literal.json", "teed.txt"]
    assert launch.files == {name: (tmp_path / name).read_text() for name in launch.files}


def test_for_loops_run_and_other_loops_are_reported_and_skipped():
    text = "for i in 1 2; do\n  X=$i\ndone\nwhile false; do :; done\ntorchrun t.py $X\n"
    launch = read(text)
    assert launch.argv == ["2"]
    assert warn_lines(launch) == []
    assert warn_lines(read("for ((i = 0; i < 2; i++)); do X=$i; done\ntorchrun t.py $X\n")) == [1, 2]


WHILE_LOOPS = """\
NODES=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --nodes) NODES=$2; shift 2;;
    --lr) LR=$2; shift 2;;
    --debug) DEBUG=--debug; shift;;
    *) echo "unknown $1"; exit 1;;
  esac
done
i=0
until [ $i -ge 3 ]; do i=$((i+1)); done
while true; do J=x; break; done
while [ $i -lt 10 ]; do i=$((i+1)); if [ $i -lt 9 ]; then continue; fi; K=$i; done
torchrun --nnodes $NODES t.py --lr $LR $DEBUG $i $J $K
"""


@needs_bash
def test_while_and_until_loops_run_as_bash_runs_them():
    """The argument loop of cluster submit scripts (`while [[ $# -gt 0 ]]; do case $1 in ... shift 2`), counters,
    break and continue; a condition known only at run time (`read`) stops the loop with a warning."""
    args = ["--nodes", "4", "--lr", "3e-4", "--debug"]
    launch = read(WHILE_LOOPS, args)
    assert launch.argv == ["--lr", "3e-4", "--debug", "10", "x", "10"] and launch.nnodes == "4"
    assert launch.warnings == []
    _agrees_with_bash(launch, WHILE_LOOPS, args)
    launch = read("while read -r host; do H=$host; done < hosts\ntorchrun t.py\n")
    assert any("'while' condition not evaluated" in w.message for w in launch.warnings)
    launch = read("while true; do X=1; done\ntorchrun t.py $X\n")
    assert launch.argv == ["1"] and any("still going after" in w.message for w in launch.warnings)
    with pytest.raises(ShellReadError, match="launched 4 times by the loop of line 2"):
        read("i=0\nwhile [ $i -lt 4 ]; do CUDA_VISIBLE_DEVICES=$i python pretrain_gpt.py & i=$((i+1)); done\n")


# The argument loop of HPC launch scripts: KEY=VALUE arguments read by a for loop over $* / "$@", with break and
# continue, and a loop with no `in` (the positional parameters)
ARGUMENT_LOOP = """\
for para in $*
do
    if [[ $para == --data_path* ]]; then
        data_path=${para#*=}
    elif [[ $para == --skip* ]]; then
        continue
    elif [[ $para == --stop ]]; then
        break
    fi
    seen="$seen $para"
done
for word; do last=$word; done
for n in 4 8; do for m in 1 2; do NPROC=$((n * m)); [ $m = 2 ] && break; done; done
torchrun --nproc_per_node $NPROC pretrain_gpt.py --data-path $data_path --seen $seen --last $last
"""


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("args", [("--data_path=/d/a", "--skip=1", "x"), ("--data_path=/d/b", "--stop", "y"), ()])
def test_for_loops_over_the_arguments_agree_with_bash(args):
    launch = read(ARGUMENT_LOOP, args)
    assert launch.world_size == 16
    _agrees_with_bash(launch, ARGUMENT_LOOP, args)


BRACE_LOOPS = """\
for g in gpu{0,1} {6..2..2} {1..3}x; do HOSTS="$HOSTS $g"; done
torchrun --nproc_per_node 2 pretrain_gpt.py --hosts $HOSTS
"""


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_brace_expansion_in_a_for_loop_agrees_with_bash():
    launch = read(BRACE_LOOPS)
    assert launch.argv == ["--hosts", "gpu0", "gpu1", "6", "4", "2", "1x", "2x", "3x"]
    _agrees_with_bash(launch, BRACE_LOOPS)


def test_processes_started_by_hand_in_a_loop_are_refused_and_a_loop_over_a_command_is_skipped():
    with pytest.raises(ShellReadError, match="launched 4 times by the loop of line 1"):
        read("for i in {0..3}; do CUDA_VISIBLE_DEVICES=$i python pretrain_gpt.py --local_rank $i & done\n")
    text = "for i in $(seq 0 3); do X=$i; done\ntorchrun --nproc_per_node 2 pretrain_gpt.py --x $X\n"
    assert read(text).argv == ["--x", "3"]  # seq is computed, as bash computes it
    text = "for h in $(cat hosts); do X=$h; done\ntorchrun --nproc_per_node 2 pretrain_gpt.py --x $X\n"
    launch = read(text)
    assert launch.argv == ["--x"] and any("'for' loop over the output of $(cat hosts) not evaluated" in w.message
                                          for w in launch.warnings)


def test_a_launch_repeated_by_a_for_loop_is_refused_naming_the_loop():
    """A sweep (one run per learning rate) is several configurations: one of them must be chosen."""
    with pytest.raises(ShellReadError, match="launched 2 times by the loop of line 1"):
        read("for lr in 1e-4 3e-4; do\n  torchrun --nproc_per_node 2 pretrain_gpt.py --lr $lr\ndone\n")
    assert read("for lr in 1e-4; do torchrun --nproc_per_node 2 pretrain_gpt.py --lr $lr; done\n").argv == [
        "--lr", "1e-4"]


def test_read_is_reported():
    launch = read("read -r Y < f\ntorchrun t.py $Y\n")
    assert warn_lines(launch) == [1, 2]


def test_function_wrapping_the_launch_is_followed():
    text = ("run() {\n  local n=$1\n  shift\n  torchrun --nproc_per_node $n t.py \"$@\"\n}\n"
            "run 4 --a \"b c\"\n")
    launch = read(text)
    assert (launch.nproc_per_node, launch.argv, launch.entry_line) == ("4", ["--a", "b c"], 4)


def test_exit_before_launch_means_no_launch():
    text = "if [ -z \"$1\" ]; then\n  echo usage; exit 1\nfi\ntorchrun t.py $1\n"
    with pytest.raises(ShellReadError, match="no launch line"):
        read(text)
    assert read(text, ["x"]).argv == ["x"]


def test_no_launch_line_names_the_file():
    with pytest.raises(ShellReadError) as err:
        read_launch_script("echo hello\npython -m pip install x\n", path="/tmp/old.sh")
    assert "/tmp/old.sh" in str(err.value) and "torchrun" in str(err.value)


@pytest.mark.parametrize("text,line", [
    ("A=1\nB=\"unterminated\ntorchrun t.py\n", 2),
    ("if [ 1 = 1 ]; then\n  torchrun t.py\n", 1),
    ("X=(a b\n", 1),
])
def test_syntax_errors_give_file_and_line(text, line):
    with pytest.raises(ShellReadError, match=rf"^f\.sh:{line}: "):
        read_launch_script(text, path="f.sh")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_syntax_error_bash_shares_says_the_script_fails_as_published():
    """`elif [ ... ] then` without its `;`: bash stops at the `fi` too, so the script is broken as published."""
    text = "if [ $A -eq 1 ]; then\n  L=2\nelif [ $A -eq 2 ] then\n  L=4\nfi\ntorchrun t.py --num-layers $L\n"
    with pytest.raises(ShellReadError, match=r"^f\.sh:5: unexpected 'fi': a syntax error that bash reports too "
                                             r"\(line 5: syntax error near unexpected token `fi'\), so the script "
                                             r"fails as published"):
        read_launch_script(text, path="f.sh")


def test_a_syntax_error_bash_does_not_share_is_called_the_readers_limit(monkeypatch):
    import megatron_compat.shell.bash_check as bash_check
    monkeypatch.setattr(bash_check, "bash_verdict", lambda text: "")  # as if bash parsed it
    with pytest.raises(ShellReadError, match=r"bash reads this script, so this is a limit of the reader here"):
        read_launch_script("if [ 1 = 1 ]; then\n  torchrun t.py\n", path="f.sh")


@needs_bash
def test_tricky_word_splitting_agrees_with_bash():
    text = ("A='  lead  and trail  '\n"
            "B=\"x\"\n"
            "C=(\"p q\" r)\n"
            "torchrun t.py $A\"$B\"$A pre$B\"post\" \"${C[@]}\"end ${C[*]} \"${C[*]}\" \\\n"
            "  ${UNSET:-a b} \"${UNSET:-a b}\" ${UNSET:-\"c  d\"}\n")
    launch = read(text)
    assert launch.argv[-4:] == ["a", "b", "a b", "c  d"]
    _agrees_with_bash(launch, text)


# ----------------------------------------------------------------------------- corpus
def test_corpus_is_complete():
    scripts = sorted(p.name for p in CORPUS.glob("*.sh"))
    assert len(scripts) >= 14
    assert scripts == sorted(EXPECTED)


def _corpus_read(name: str) -> LaunchScript:
    exp = EXPECTED[name]
    return read_launch_script((CORPUS / name).read_text(), exp.get("script_args", []), path=str(CORPUS / name))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_script(name):
    exp, launch = EXPECTED[name], _corpus_read(name)
    assert launch.entry == exp["entry"]
    assert launch.world_size == exp["world_size"]
    assert launch.launcher == exp["launcher"]
    assert launch.style == exp.get("style", launch.style)
    assert launch.world_size_source == exp.get("world_size_source", launch.world_size_source)
    assert len(launch.argv) == exp["argv_len"]
    assert warn_lines(launch) == exp["warnings_lines"], launch.warnings
    for flag, value in exp["argv_contains"]:
        assert flag in launch.argv, flag
        k = launch.argv.index(flag)
        following = launch.argv[k + 1] if k + 1 < len(launch.argv) else None
        if value is None:  # a switch: nothing, or another flag, follows it
            assert following is None or following.startswith("--"), (flag, following)
        else:
            assert following == value, (flag, following)


@needs_bash
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_script_agrees_with_bash(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # bash writes the files the script writes here
    exp = EXPECTED[name]  # bash_env: what the job has when it runs (the reader takes it as known at run time)
    _agrees_with_bash(_corpus_read(name), (CORPUS / name).read_text(), exp.get("script_args", []),
                      exp.get("bash_env"), cwd=str(tmp_path))


# ----------------------------------------------------------------------------- render
def _roundtrip(launch: LaunchScript, entry_args: list[str]) -> LaunchScript:
    text = render_launch_script(launch, "train_fsdp2.py", entry_args, launch.path)
    again = read_launch_script(text, path="new.sh")
    assert (again.entry, again.argv) == ("train_fsdp2.py", entry_args)
    assert again.exports == kept_exports(launch)  # under srun / mpirun / aprun: not the rank variables
    assert list(again.exports) == list(kept_exports(launch))
    assert [s.kind for s in again.wrappers] == [s.kind for s in launch.wrappers]
    assert again.world_size == launch.world_size
    per_node = any(ROLES.get(s.kind) == PER_RANK for s in launch.wrappers) or bool(
        launch.started_by)  # one process per rank, started around the script or by a launcher outside it
    if launch.launcher in ("torchrun", "torch.distributed.run", "torch.distributed.launch", "msrun") or (
            launch.launcher == "python" and not per_node):
        assert again.launcher == "torchrun"
    else:  # deepspeed and hyperpodrun stay; python under srun / mpirun / aprun stays python, one process per rank
        assert again.launcher == launch.launcher
        assert again.started_by == launch.started_by
    if again.launcher in ("torchrun", "hyperpodrun"):
        settings = [("nproc_per_node", "1"), ("nnodes", "1"), ("master_addr", "localhost"), ("master_port", "29500")]
        for attr, default in settings + ([] if per_node else [("node_rank", "0")]):
            given = getattr(launch, attr)  # not given: not passed (torchrun's defaults, or PET_* under Kubernetes)
            assert getattr(again, attr) == (given or (default if given == "" or per_node else None)), attr
    # the log files of the old launch line stay where they were: a name computed at run time stays live
    assert again.outputs == launch.outputs
    live_logs = "$" in repr(launch.outputs)
    if not any("$" in v for v in vars(launch).values() if isinstance(v, str)) and not per_node and not live_logs:
        assert again.warnings == []
    return again


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_render_round_trip_corpus(name):
    launch = _corpus_read(name)
    _roundtrip(launch, ["new.yaml"])


def test_render_round_trip_with_awkward_values():
    launch = read("export A=\"it's \\$HOME and \\\"q\\\" \\\\ x\"\nexport B=''\nexport C='a\nb'\n"
                  "torchrun --nproc_per_node 2 --nnodes 3 --master_addr 'my host' t.py\n")
    assert launch.exports == {"A": "it's $HOME and \"q\" \\ x", "B": "", "C": "a\nb"}
    _roundtrip(launch, ["cfg with space.yaml", "--override", "a=$b", "'q'"])


def test_rank_variables_are_not_exported_under_a_per_rank_launcher():
    """srun starts every rank itself: the old script's RANK=$SLURM_PROCID (per task) or WORLD_SIZE (computed from
    unset scheduler variables, 0 here) would be one wrong value for all; the entry point reads SLURM_PROCID."""
    launch = read("export WORLD_SIZE=$(( SLURM_NNODES * 4 ))\nexport NCCL_DEBUG=INFO\n"
                  "srun bash -c \"RANK=\\$SLURM_PROCID LOCAL_RANK=\\$SLURM_LOCALID python pretrain_gpt.py --x\"\n")
    assert set(launch.exports) == {"WORLD_SIZE", "NCCL_DEBUG", "RANK", "LOCAL_RANK"}
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert "export NCCL_DEBUG=INFO" in text and "export WORLD_SIZE" not in text and "export RANK" not in text
    assert "# Not kept: WORLD_SIZE, RANK, LOCAL_RANK: each process srun starts finds its own rank" in text
    torchrun = read("export WORLD_SIZE=8\ntorchrun --nproc_per_node 8 pretrain_gpt.py --x\n")
    assert "export WORLD_SIZE=8" in render_launch_script(torchrun, "train_fsdp2.py", ["new.yaml"], "old.sh")


def test_render_text():
    launch = read("export CUDA_DEVICE_MAX_CONNECTIONS=1\n"
                  "torchrun --nproc_per_node 8 --nnodes 2 --node_rank 1 --master_addr h --master_port 6000 p.py\n")
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert text.startswith("#!/usr/bin/env bash\n# Generated by tools/convert_args.py from old.sh (launch line 2).\n")
    assert "\nset -euo pipefail\n" in text
    assert "\nexport CUDA_DEVICE_MAX_CONNECTIONS=1\n" in text
    for line in ["NPROC_PER_NODE=${NPROC_PER_NODE:-8}", "NNODES=${NNODES:-2}", "NODE_RANK=${NODE_RANK:-1}",
                 "MASTER_ADDR=${MASTER_ADDR:-h}", "MASTER_PORT=${MASTER_PORT:-6000}"]:
        assert f"\n{line}\n" in text
    assert text.rstrip().endswith("train_fsdp2.py \\\n    new.yaml")


def test_render_marks_unevaluated_values():
    launch = read("export RUN=\"r_$(date +%s)\"\ntorchrun t.py\n")
    text = render_launch_script(launch, "train_fsdp2.py", [], "old.sh")
    assert "# line 1 of old.sh computes this with a command" in text
    assert 'export RUN="r_$(date +%s)"' in text


@needs_bash
def test_rendered_export_runs_the_command_it_was_computed_with():
    """MASTER_ADDR=`hostname -s` (kb-labb's Slurm job): the new script runs the command, as the old one did,
    instead of exporting its text."""
    launch = read("export MASTER_ADDR=`echo node7`\nexport TAG=$(echo a)-b\ntorchrun --nnodes 1 t.py\n")
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    env = _bash_launches(text)[-1]["env"]
    assert (env["MASTER_ADDR"], env["TAG"]) == ("node7", "a-b")


@needs_bash
def test_rendered_script_runs_in_bash_and_takes_overrides():
    launch = read("export X='a b'\ntorchrun --nproc_per_node 8 --nnodes 2 --master_addr h p.py\n")
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    calls = _bash_launches(text, env={"NNODES": "3", "NODE_RANK": "2"})
    assert calls[-1]["argv"] == ["torchrun", "--nproc_per_node", "8", "--nnodes", "3", "--node_rank", "2",
                                 "--master_addr", "h", "train_fsdp2.py", "new.yaml"]
    assert calls[-1]["env"]["X"] == "a b"
    # what the old line did not give stays torchrun's to decide (a Kubernetes PyTorchJob's PET_NODE_RANK, ...)
    calls = _bash_launches(text, env={"PET_NODE_RANK": "1"})
    assert calls[-1]["argv"] == ["torchrun", "--nproc_per_node", "8", "--nnodes", "2", "--master_addr", "h",
                                 "train_fsdp2.py", "new.yaml"]


@needs_bash
def test_the_launchers_other_options_are_kept_as_given():
    """--max_restarts, --tee, --log_dir, --rdzv_id stay on the new torchrun line; the distributed settings are the
    script's variables; torch.distributed.launch's --use_env (how the old program read its rank) is not copied."""
    launch = read("python -m torch.distributed.launch --use_env --nproc_per_node 8 --max_restarts 3 --tee 3 "
                  "--log_dir /logs/run --rdzv_id job7 pretrain_gpt.py --x\n")
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    argv = _bash_launches(text)[-1]["argv"]
    assert argv == ["torchrun", "--nproc_per_node", "8", "--max_restarts", "3", "--tee", "3", "--log_dir", "/logs/run",
                    "--rdzv_id", "job7", "train_fsdp2.py", "new.yaml"]


def test_rendered_script_keeps_variables_inherited_from_the_caller(tmp_path):
    """`export PATH=/x:$PATH` must not become `PATH=/x:` in the new script: the caller's PATH stays."""
    script = ("ASCEND=/usr/local/Ascend\n"
              "export PATH=$ASCEND/bin:$PATH\n"
              'export LD_LIBRARY_PATH="$ASCEND/lib:${LD_LIBRARY_PATH}"\n'
              "export HCCL_CONNECT_TIMEOUT=1200\n"
              "torchrun --nproc_per_node 8 pretrain_gpt.py --lr 1\n")
    launch = read_launch_script(script, (), "old.sh")
    assert launch.exports["PATH"] == "/usr/local/Ascend/bin:"  # as bash with an empty environment
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert 'export PATH="/usr/local/Ascend/bin:${PATH:-}"' in text
    assert 'export LD_LIBRARY_PATH="/usr/local/Ascend/lib:${LD_LIBRARY_PATH:-}"' in text
    assert "export HCCL_CONNECT_TIMEOUT=1200" in text
    exports = tmp_path / "exports.sh"
    exports.write_text("\n".join(line for line in text.splitlines() if line.startswith("export ")) + "\n")
    if shutil.which("bash"):
        out = subprocess.run([shutil.which("bash"), "-c", f'source {exports}; echo "$PATH"'], capture_output=True,
                             text=True, env={"PATH": "/caller/bin"}).stdout.strip()
        assert out == "/usr/local/Ascend/bin:/caller/bin"


# ----------------------------------------------------------------------------- eval, bash -c
@needs_bash
def test_eval_reads_the_string_again_in_this_shell():
    text = ("opts=\"--name \\\"my run\\\" --x\"\n"
            "eval \"A=1; B=\\$A\"\n"
            "cmd=\"torchrun --nproc_per_node 2 t.py $opts\"\n"
            "eval $cmd '$A' \"\\$B\"\n")
    launch = read(text)
    assert launch.argv == ["--name", "my run", "--x", "1", "1"]  # quotes inside the string count; A, B set here
    assert (launch.entry_line, launch.world_size) == (4, 2)
    _agrees_with_bash(launch, text)


def test_eval_of_a_commands_output_is_reported():
    launch = read('eval "$(conda shell.bash hook)"\ntorchrun t.py\n')
    assert warn_lines(launch) == [1, 1] and "eval of a command's output" in launch.warnings[1].message


@needs_bash
def test_bash_c_runs_in_a_child_that_sees_only_exported_variables():
    text = ("export A=1\nB=2\n"
            "bash -c 'torchrun t.py \"$A\" \"${B:-unset}\" \"$0\" \"$1\"; C=3' name arg\n"
            "sh -c \"torchrun t.py ${C:-none} \\$A\"\n")
    first = read(text.rsplit("sh -c", 1)[0])
    assert first.argv == ["1", "unset", "name", "arg"]
    _agrees_with_bash(first, text.rsplit("sh -c", 1)[0])
    launch = read(text)
    assert launch.argv == ["none", "1"]  # C was set in the child only
    _agrees_with_bash(launch, text)


def test_another_script_is_named_when_no_launch_is_found():
    with pytest.raises(ShellReadError, match=r"line 2 runs train_inner\.sh: convert that script instead"):
        read("export X=1\nbash train_inner.sh --nodes 2\n")
    with pytest.raises(ShellReadError, match=r"line 1 runs \./run\.sh"):
        read("./run.sh\n")


# ----------------------------------------------------------------------------- launchers and world sizes
@needs_bash
@pytest.mark.parametrize("line,style,world,source", [
    ("mpirun -np 16 python pretrain_gpt.py --x", "mpirun + python", 16, "mpirun -np 16"),
    ("mpirun -n 4 --allow-run-as-root -x PATH --mca btl tcp python3 -u pretrain_gpt.py --x", "mpirun + python", 4,
     "mpirun -np 4"),
    ("mpiexec -N 8 -H a,b python pretrain_gpt.py --x", "mpirun + python", 16, "mpirun -npernode 8 × 2 hosts"),
    ("mpirun --npernode 8 --hostfile hosts python pretrain_gpt.py --x", "mpirun + python", None, "hostfile"),
    ("mpiexec -n 8 -ppn 4 -genv NCCL_DEBUG INFO python pretrain_gpt.py --x", "mpirun + python", 8, "mpirun -np 8"),
    ("srun -n16 -l python pretrain_gpt.py --x", "srun + python", 16, "srun --ntasks 16"),
    ("srun -N 2 --ntasks-per-node=8 --container-image img:1 python pretrain_gpt.py --x", "srun + python", 16,
     "srun --nodes 2 × srun --ntasks-per-node 8"),
    ("srun --nodes 3 python pretrain_gpt.py --x", "srun + python", 3, "one task per node"),
    ("srun python pretrain_gpt.py --x", "srun + python", None, "$SLURM_NTASKS"),
    ("srun -N 2 --ntasks-per-node 1 torchrun --nproc_per_node 8 --nnodes 2 pretrain_gpt.py --x", "srun + torchrun",
     16, "torchrun --nproc_per_node 8 × --nnodes 2"),
    ("deepspeed --num_gpus 8 pretrain_gpt.py --x", "deepspeed", 8, "deepspeed --num_gpus 8 on one node"),
    ("deepspeed --num_gpus=4 --num_nodes=2 --master_port 29700 pretrain_gpt.py --x", "deepspeed", 8,
     "deepspeed --num_gpus 4 × --num_nodes 2"),
    ("deepspeed -i localhost:0,1,2 pretrain_gpt.py --x", "deepspeed", 3, "deepspeed --include localhost:0,1,2"),
    ("deepspeed --hostfile h pretrain_gpt.py --x", "deepspeed", None, "without --num_gpus"),
    ("deepspeed --num_gpus 2 --no_python --no_local_rank bash -c 'python -u pretrain_gpt.py --x'", "deepspeed", 2,
     "deepspeed --num_gpus 2"),
    ("numactl --cpunodebind=0 --membind=0 torchrun --nproc_per_node 4 pretrain_gpt.py --x", "numactl + torchrun", 4,
     "torchrun --nproc_per_node 4 on one node"),
    ("numactl -N 0 -m 0 python pretrain_gpt.py --x", "numactl + python", 1, "a single python process"),
    ("uv run --no-sync python -m torch.distributed.run --nproc-per-node 2 pretrain_gpt.py --x",
     "uv run + torch.distributed.run", 2, "torch.distributed.run --nproc_per_node 2"),
    ("uv run --with numpy torchrun --nproc_per_node 2 pretrain_gpt.py --x", "uv run + torchrun", 2, "torchrun"),
    ("srun -n 2 bash -c 'numactl -m 0 python pretrain_gpt.py --x'", "srun + numactl + python", 2, "srun --ntasks 2"),
    ("NCCL_DEBUG=INFO srun -n 2 env A=1 python pretrain_gpt.py --x", "srun + python", 2, "srun --ntasks 2"),
    ("msrun --worker_num 8 --local_worker_num 8 --log_dir=msrun_log pretrain_gpt.py --x", "msrun", 8,
     "msrun --worker_num 8"),
    ("aprun -n 16 -N 4 --cc depth -d 8 python pretrain_gpt.py --x", "aprun + python", 16, "aprun -n 16"),
    ("jsrun -n 8 -a 2 -g 1 --smpiargs '-gpu' python pretrain_gpt.py --x", "jsrun + python", 16,
     "jsrun --nrs 8 × --tasks_per_rs 2"),
    ("jsrun --np 12 --rs_per_host 6 python pretrain_gpt.py --x", "jsrun + python", 12, "jsrun --np 12"),
    ("jsrun -r 6 -g 1 python pretrain_gpt.py --x", "jsrun + python", None, "every resource set of the LSF allocation"),
    ("nsys profile -t cuda,nvtx -o prof --stats=true torchrun --nproc_per_node 2 pretrain_gpt.py --x",
     "nsys profile + torchrun", 2, "torchrun --nproc_per_node 2 on one node"),
    ("apptainer exec --nv -B /data:/data image.sif torchrun --nproc_per_node 4 pretrain_gpt.py --x",
     "apptainer exec + torchrun", 4, "torchrun --nproc_per_node 4"),
    ("torchrun --nproc_per_node 2 --no-python /opt/venv/bin/pretrain_gpt.py --x", "torchrun", 2,
     "torchrun --nproc_per_node 2"),
])
def test_launchers_and_their_world_sizes(line, style, world, source):
    launch = read(line + "\n")
    assert (launch.style, launch.entry_name, launch.argv, launch.world_size) == (style, "pretrain_gpt.py", ["--x"],
                                                                                 world)
    assert source in launch.world_size_source
    assert not [w for w in launch.warnings if "has no value" in w.message]
    _agrees_with_bash(launch, line + "\n")


def test_scheduler_counts_are_read_from_sbatch_lines():
    """torchrun --nnodes $SLURM_NNODES in a batch script: #SBATCH --nodes is the count; the reference stays."""
    text = ("#SBATCH --nodes=3\n#SBATCH --gres=gpu:a100:4\n"
            "srun --ntasks-per-node=1 torchrun --nproc_per_node $SLURM_GPUS_ON_NODE --nnodes $SLURM_NNODES "
            "pretrain_gpt.py\n")
    launch = read(text)
    assert (launch.world_size, launch.nnodes, launch.nproc_per_node) == (12, "$SLURM_NNODES", "$SLURM_GPUS_ON_NODE")
    assert launch.world_size_source == ("torchrun --nproc_per_node $SLURM_GPUS_ON_NODE (#SBATCH --gpus-per-node 4) "
                                        "× --nnodes $SLURM_NNODES (#SBATCH --nodes 3)")
    assert read(text.replace("#SBATCH --nodes=3\n", "")).world_size is None


def test_placeholder_split_into_the_entry_is_kept_as_one_value():
    """MASTER_ADDR="your master node IP": bash hands torchrun `--master_addr your master node IP pretrain_gpt.py`;
    the example's placeholder is kept as one value (warned), any other value with blanks is refused by name."""
    launch = read('MASTER_ADDR="your master node IP"\ntorchrun --nproc_per_node 8 --master_addr $MASTER_ADDR '
                  'pretrain_gpt.py --x\n')
    assert (launch.entry, launch.argv, launch.master_addr) == ("pretrain_gpt.py", ["--x"], "your master node IP")
    assert launch.world_size == 8
    assert any(w.line == 2 and "--master_addr is given $MASTER_ADDR='your master node IP', the example's "
               "placeholder, which bash splits into 4 words; kept as one value: set MASTER_ADDR" in w.message
               for w in launch.warnings)
    with pytest.raises(ShellReadError, match=r"test\.sh:2: torchrun --master_addr is given \$MASTER_ADDR='node01 "
                                             r"node02', which bash splits into 2 words, so the launcher would take "
                                             r"'node02' as the script to run; set MASTER_ADDR to one value"):
        read('MASTER_ADDR="node01 node02"\ntorchrun --nproc_per_node 8 --master_addr $MASTER_ADDR pretrain_gpt.py\n')
    launch = read('ARGS="--nproc_per_node 8 --master_addr h"\nCMD="torchrun $ARGS pretrain_gpt.py --x"\n$CMD\n')
    assert launch.master_addr == "h"  # a whole command kept in one variable is not a split value


def test_angle_bracket_placeholder_assignment_is_read_as_its_text():
    """CHECKPOINT_PATH=<Specify path> (Megatron-LM's older examples): bash would refuse the line; the reader keeps
    the placeholder as the value and says so."""
    launch = read("CHECKPOINT_PATH=<Specify path>\nVOCAB=<Specify path to file>/gpt2-vocab.json  # comment\n"
                  "torchrun pretrain_gpt.py --save $CHECKPOINT_PATH --vocab-file \"$VOCAB\"\n")
    assert launch.argv == ["--save", "<Specify", "path>", "--vocab-file", "<Specify path to file>/gpt2-vocab.json"]
    assert [w.line for w in launch.warnings if "is the example's placeholder" in w.message] == [1, 2]
    assert read("cat <<EOF > x\nA=<b>\nEOF\ntorchrun pretrain_gpt.py\n").files == {"x": "A=<b>\n"}
    # after a flag, also inside an `sh -c` string; `<in >out` stays redirections
    launch = read('OPTS="--save <PATH TO CHECKPOINTS> --split 98,2,0"\nrun_cmd="python pretrain_gpt.py ${OPTS}"\n'
                  'srun -n 2 sh -c "${run_cmd}"\n')
    assert launch.argv == ["--save", "<PATH TO CHECKPOINTS>", "--split", "98,2,0"]
    assert any("--save <PATH TO CHECKPOINTS> is the example's placeholder" in w.message for w in launch.warnings)
    assert read("torchrun pretrain_gpt.py --x <in.txt >out.txt\n").argv == ["--x"]


def test_tests_known_only_at_run_time_are_not_evaluated():
    """[ -z $SLURM_JOB_ID ] is false inside the job, and a command's output is unknown here: both assumed false,
    so `if [ -z $SLURM_JOB_ID ]; then sbatch "$0"; exit; fi` does not end the reading."""
    launch = read('if [ -z $SLURM_JOB_ID ]; then\n  sbatch "$0"\n  exit\nfi\n'
                  'PIDS=$(ps aux | grep pretrain)\nif [ -n "${PIDS}" ]; then exit 1; fi\n'
                  'if [[ "$(hostname)" == login* ]]; then exit 1; fi\ntorchrun pretrain_gpt.py\n')
    assert launch.entry == "pretrain_gpt.py"
    messages = [w.message for w in launch.warnings]
    assert "test on $SLURM_JOB_ID, set by the scheduler at run time: not evaluated" in messages
    assert any(m.startswith("test on the output of $(ps aux") for m in messages)
    assert read("SLURM_JOB_ID=7\nif [ -z $SLURM_JOB_ID ]; then exit; fi\ntorchrun pretrain_gpt.py\n").entry


def test_an_empty_script_variable_is_named():
    with pytest.raises(ShellReadError, match=r"torchrun has no script to run: \$SCRIPT is not set by the script; "
                                             r"give the training script's path \(convert_args.py --set SCRIPT=PATH"):
        read("torchrun --nproc_per_node 2 $SCRIPT --num-layers 2\n")
    with pytest.raises(ShellReadError, match=r"torchrun has no script to run: \$SCRIPT is not set by the script, so "
                                             r"it would run 'args.txt'"):
        read("torchrun --nproc_per_node 2 $SCRIPT args.txt\n")


def test_an_exit_before_the_launch_is_named_with_what_the_script_says():
    with pytest.raises(ShellReadError, match=r"the script exits at line 3 before any launch, saying 'set WORKSPACE': "
                                             r"if it needs arguments"):
        read('if [ -z "$WORKSPACE" ]; then\n  echo "set WORKSPACE"\n  exit 1\nfi\ntorchrun pretrain_gpt.py\n')
    usage = ('TOK=""\nwhile [[ $# -gt 0 ]]; do\n  case $1 in --tok) TOK=$2; shift ;; *) exit 1 ;; esac\n  shift\n'
             'done\nif [[ -z $TOK ]]; then\n  echo "Missing required arguments."\n'
             '  echo "Usage: ${0} --tok <tokenizer_file>"\n  exit 1\nfi\necho "TOK = $TOK"\n'
             'deepspeed pretrain_gpt.py --tokenizer-model $TOK\n')
    with pytest.raises(ShellReadError, match=r"exits at line 9 before any launch, saying 'Missing required "
                                             r"arguments.' / 'Usage: test.sh --tok <tokenizer_file>'"):
        read(usage)
    assert read(usage, ["--tok", "/t.model"]).argv == ["--tokenizer-model", "/t.model"]  # the echo is no launch


def test_prefix_assignments_reach_the_launch_through_wrappers():
    launch = read("NCCL_DEBUG=INFO srun -n 2 env A=1 python pretrain_gpt.py --x\n")
    assert launch.exports == {"NCCL_DEBUG": "INFO", "A": "1"}


def test_sbatch_directives_size_an_srun_without_options():
    text = ("#!/bin/bash\n#SBATCH -N 2  # nodes\n#SBATCH --ntasks-per-node=4\n#SBATCH --job-name x\n"
            "srun python pretrain_gpt.py --x\n")
    launch = read(text)
    assert (launch.world_size, launch.world_size_source) == (8, "#SBATCH --nodes 2 × #SBATCH --ntasks-per-node 4")
    assert launch.directives == ["#SBATCH -N 2  # nodes", "#SBATCH --ntasks-per-node=4", "#SBATCH --job-name x"]
    assert read(text.replace("srun ", "srun -n 6 ")).world_size == 6  # the step's own option wins
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert text.startswith("#!/usr/bin/env bash\n#SBATCH -N 2  # nodes\n#SBATCH --ntasks-per-node=4\n")


# ----------------------------------------------------------------------------- options left without a value
def test_empty_variable_in_a_torchrun_line_is_named():
    """`--nproc_per_node $GPUS` with GPUS unset: bash passes `--nproc_per_node --nnodes 4 pretrain_gpt.py`."""
    launch = read("torchrun --nproc_per_node $GPUS --nnodes 4 pretrain_gpt.py --x\n")
    assert (launch.entry, launch.argv, launch.nnodes) == ("pretrain_gpt.py", ["--x"], "4")  # not an entry "4"
    assert (launch.nproc_per_node, launch.world_size) == ("$GPUS", None)
    assert launch.world_size_source == "torchrun --nproc_per_node $GPUS, known at run time"
    message = next(w.message for w in launch.warnings if "has no value" in w.message)
    assert "torchrun --nproc_per_node (line 1) has no value here: $GPUS is not set by the script" in message
    assert "--set GPUS=VALUE" in message
    assert read_launch_script("torchrun --nproc_per_node $GPUS --nnodes 4 pretrain_gpt.py\n",
                              environ={"GPUS": "8"}).world_size == 32


@pytest.mark.parametrize("text,variable", [
    ('DIST="--nproc_per_node $GPUS --nnodes 2"\neval torchrun $DIST pretrain_gpt.py --x\n', "$GPUS"),
    ('eval torchrun --nproc_per_node 2 --nnodes $N pretrain_gpt.py --x\n', "$N"),
    ('torchrun --nnodes "$N" --nproc_per_node 2 pretrain_gpt.py --x\n', "$N"),
    ('torchrun --nnodes=$N --nproc_per_node 2 pretrain_gpt.py --x\n', "$N"),
    ('L="torchrun --nnodes $N"\nexport L\nbash -c "$L --nproc_per_node 2 pretrain_gpt.py --x"\n', "$N"),
])
def test_empty_variable_is_found_where_the_line_was_built(text, variable):
    launch = read(text)
    assert (launch.entry, launch.argv, launch.world_size) == ("pretrain_gpt.py", ["--x"], None)
    assert any(f"{variable} is not set by the script" in w.message and "--set " + variable[1:] + "=VALUE"
               in w.message for w in launch.warnings), launch.warnings


def test_scheduler_variable_behind_a_variable_is_kept_for_run_time():
    launch = read("NNODES=$SLURM_NNODES\ntorchrun --nnodes $NNODES --nproc_per_node 8 pretrain_gpt.py\n")
    assert launch.nnodes == "$SLURM_NNODES"
    message = next(w.message for w in launch.warnings if "has no value" in w.message)
    assert "$NNODES is empty: it is set from $SLURM_NNODES" in message and "set by the scheduler" in message
    assert "--set SLURM_NNODES=VALUE" in message


def test_variable_set_empty_by_the_script_is_refused_with_its_name():
    with pytest.raises(ShellReadError, match=r"test\.sh:2: torchrun --nproc_per_node \(line 2\) has no value: "
                                             r"\$GPUS is set to an empty value"):
        read("GPUS=\ntorchrun --nproc_per_node $GPUS --nnodes 4 pretrain_gpt.py\n")
    with pytest.raises(ShellReadError, match=r"another option or the program follows it"):
        read("torchrun --nproc_per_node --nnodes 4 pretrain_gpt.py\n")


@pytest.mark.parametrize("text,because", [
    ("NODE_RANK=$1\ntorchrun --nproc_per_node 8 --nnodes 2 --node_rank $NODE_RANK --master_addr h pretrain_gpt.py "
     "--x\n", "$NODE_RANK is set from the script's argument $1, which was not given"),
    ('L="torchrun --nproc_per_node 8 --nnodes 2 --node_rank ${1} --master_addr h"\n$L pretrain_gpt.py --x\n',
     "it is the script's argument $1, which was not given"),
    ("MASTER_ADDR=\ntorchrun --nproc_per_node 8 --nnodes 2 --node_rank 0 --master_addr $MASTER_ADDR pretrain_gpt.py "
     "--x\n", "$MASTER_ADDR is set to an empty value"),
])
def test_an_empty_rendezvous_option_is_left_to_the_environment(text, because):
    """A multi-node script takes its node rank as an argument (NODE_RANK=$1) or leaves MASTER_ADDR for the user to
    fill in: where the ranks meet is set per node and per job, not by the model or the batch, so the conversion goes
    on; the new script reads NODE_RANK / MASTER_ADDR from the environment, as for every node."""
    launch = read(text)
    assert (launch.entry, launch.argv, launch.world_size) == ("pretrain_gpt.py", ["--x"], 16)
    message = next(w.message for w in launch.warnings if "has no value" in w.message)
    assert because in message and "the new launch script takes" in message, message
    rendered = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert "NODE_RANK=${NODE_RANK:-0}" in rendered and 'MASTER_ADDR=${MASTER_ADDR:-' in rendered
    with pytest.raises(ShellReadError, match=r"it is the script's argument \$2, which was not given"):
        read("torchrun --nproc_per_node ${2} --nnodes 2 pretrain_gpt.py --x\n")  # the world size: still refused


def test_wrapper_option_left_empty_is_dropped_or_kept_for_run_time():
    launch = read("srun -n 2 --jobid $SLURM_JOB_ID --partition $P python pretrain_gpt.py\n")
    assert launch.wrappers[0].args == ["-n", "2", "--jobid", "$SLURM_JOB_ID", "--partition", "$P"]
    launch = read("P=\nsrun -n 2 --partition $P python pretrain_gpt.py\n")
    assert launch.wrappers[0].args == ["-n", "2"]
    assert any("srun --partition (line 2) has no value: $P is set to an empty value; the option is left out"
               in w.message for w in launch.warnings)


# ----------------------------------------------------------------------------- the new script keeps the launcher
@needs_bash
def test_rendered_mpirun_script_stays_mpirun():
    launch = read("export MASTER_ADDR=n1\nmpirun -np 16 --npernode 8 -x MASTER_ADDR --mca btl tcp "
                  "python -u pretrain_gpt.py --x\n")
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert "NPROC_PER_NODE" not in text and "OMPI_COMM_WORLD_*" in text
    calls = _bash_launches(text)
    assert [c["argv"] for c in calls] == [
        ["mpirun", "-np", "16", "--npernode", "8", "-x", "MASTER_ADDR", "--mca", "btl", "tcp", "python", "-u",
         "train_fsdp2.py", "new.yaml"],
        ["python", "-u", "train_fsdp2.py", "new.yaml"]]


@needs_bash
def test_rendered_bcprun_script_gives_the_new_command_as_its_cmd_string():
    """bcprun runs the --cmd string on every rank: the new command replaces the old string, not a word after it."""
    launch = read("CFG=base\nbcprun --nnodes 2 -p 8 --env 'A=1' -c \"python pretrain_gpt.py --x $CFG\"\n")
    assert (launch.style, launch.world_size, launch.argv) == ("bcprun + python", 16, ["--x", "base"])
    text = render_launch_script(launch, "train_fsdp2.py", ["my cfg.yaml"], "old.sh")
    assert "RANK / WORLD_SIZE / LOCAL_RANK" in text and "pretrain_gpt.py" not in text
    calls = _bash_launches(text)
    assert [c["argv"] for c in calls] == [
        ["bcprun", "--nnodes", "2", "-p", "8", "--env", "A=1", "--cmd", "python train_fsdp2.py 'my cfg.yaml'"],
        ["python", "train_fsdp2.py", "my cfg.yaml"]]


@needs_bash
def test_rendered_srun_torchrun_script_meets_through_c10d_and_computes_at_run_time():
    launch = read("#SBATCH --nodes=2\n"
                  "MASTER=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n"
                  "srun --ntasks-per-node=1 --jobid $SLURM_JOB_ID bash -c \"torchrun --nproc_per_node 8 "
                  "--nnodes $SLURM_NNODES --node_rank \\$SLURM_PROCID --master_addr $MASTER --master_port 6000 "
                  "pretrain_gpt.py --x\"\n")
    assert launch.style == "srun + torchrun" and launch.nnodes == "$SLURM_NNODES"
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert 'NNODES=${NNODES:-"$SLURM_NNODES"}' in text
    assert 'MASTER_ADDR=${MASTER_ADDR:-"$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"}' in text
    assert "NODE_RANK" not in text and '--rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT"' in text
    calls = _bash_launches(text, env={"SLURM_NNODES": "2", "SLURM_JOB_ID": "77", "MASTER_ADDR": "n1"})
    assert [c["argv"] for c in calls] == [
        ["srun", "--ntasks-per-node=1", "--jobid", "77", "torchrun", "--nproc_per_node", "8", "--nnodes", "2",
         "--rdzv_backend", "c10d", "--rdzv_endpoint", "n1:6000", "train_fsdp2.py", "new.yaml"],
        ["torchrun", "--nproc_per_node", "8", "--nnodes", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint",
         "n1:6000", "train_fsdp2.py", "new.yaml"]]


@needs_bash
def test_rendered_script_defines_the_variables_a_run_time_setting_uses():
    launch = read("GPUS=4\nN=$(wc -l < \"$PE_HOSTFILE\")\nHOSTS=hosts_$JOB_ID\n"
                  "mpirun -np $((GPUS * N)) --hostfile $HOSTS python pretrain_gpt.py\n")
    assert launch.world_size is None
    assert launch.wrappers[0].args == ["-np", "$((GPUS * N))", "--hostfile", "hosts_$JOB_ID"]
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert '\nGPUS=4\nN="$(wc -l < "$PE_HOSTFILE")"\n\n' in text
    assert 'mpirun -np "$((GPUS * N))" --hostfile "hosts_$JOB_ID"' in text
    calls = _bash_launches(text.replace('"$(wc -l < "$PE_HOSTFILE")"', "2"), env={"JOB_ID": "9"})
    assert calls[0]["argv"][:5] == ["mpirun", "-np", "8", "--hostfile", "hosts_9"]


@needs_bash
def test_rendered_deepspeed_script_passes_no_local_rank():
    launch = read("deepspeed --num_gpus 2 --no_python --no_local_rank bash -c 'python -u pretrain_gpt.py --x'\n")
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    calls = _bash_launches(text)
    assert calls[0]["argv"] == ["deepspeed", "--num_gpus", "2", "--no_local_rank", "train_fsdp2.py", "new.yaml"]


def test_a_file_written_by_sed_from_a_template_is_read(tmp_path):
    """Megatron-DeepSpeed's examples: `sed "s/GBSIZE/$gbs/" TEMPLATE | sed ... > ds_config.json`. The template is
    found beside the script or in a folder above it (a path from the repository's root)."""
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "TEMPLATE.json").write_text('{"train_batch_size": GBSIZE,\n "zero": ZERO_STAGE, '
                                                         '"p": "a/b"}\n')
    script = tmp_path / "scripts" / "abci" / "run.sh"
    script.parent.mkdir(parents=True)
    text = ('gbs=64\nconfig_json="ds_config_gbs${gbs}.json"\n'
            'sed "s/GBSIZE/${gbs}/" examples/TEMPLATE.json \\\n  | sed "s/ZERO_STAGE/1/g" | sed "s#a/b#&/\\&#" '
            '> ${config_json}\ndeepspeed pretrain_gpt.py --deepspeed_config ${config_json}\n')
    launch = read_launch_script(text, [], path=str(script))
    assert launch.files == {"ds_config_gbs64.json": '{"train_batch_size": 64,\n "zero": 1, "p": "a/b/&"}\n'}
    launch = read_launch_script(text.replace("examples/TEMPLATE.json", "missing.json"), [], path=str(script))
    assert launch.files == {}
    assert any("ds_config_gbs64.json is written by sed from missing.json, which is not found here" in w.message
               for w in launch.warnings)
    launch = read_launch_script(text.replace('"s/ZERO_STAGE/1/g"', "-n '/x/p'"), [], path=str(script))
    assert launch.files == {} and any("only s/PATTERN/REPLACEMENT/[g] is read" in w.message for w in launch.warnings)


def test_a_job_script_given_on_standard_input_is_read():
    """`sbatch <<EOF ... EOF` submits the here-document as the job: its launch is the script's (variables expanded
    by the submitting shell); `bash FILE <<EOF` reads a file, not the document."""
    text = ('ARGS="--num-layers 2 --hidden-size 8"\nsbatch <<EOF\n#!/bin/bash\n#SBATCH --nodes=2\n'
            'srun torchrun --nproc_per_node 4 pretrain_gpt.py ${ARGS}\nEOF\n')
    launch = read(text)
    assert (launch.entry, launch.argv, launch.launcher) == ("pretrain_gpt.py", ["--num-layers", "2", "--hidden-size",
                                                                                 "8"], "torchrun")
    assert not any("here-document skipped" in w.message for w in launch.warnings)
    with pytest.raises(ShellReadError, match="no launch line found"):
        read("bash run.sh <<EOF\ntorchrun pretrain_gpt.py\nEOF\n")


def test_directives_of_a_job_on_standard_input_are_as_the_job_receives_them():
    """The submitting shell expands the here-document, so the job's #SBATCH lines hold values; sbatch expands
    nothing in them, so the converted script must carry the values, not the references."""
    text = ("N=2\nsbatch <<EOF\n#!/bin/bash\n#SBATCH --nodes=${N}\n#SBATCH --job-name='x'\n"
            "torchrun pretrain_gpt.py\nEOF\n")
    assert read(text).directives == ["#SBATCH --nodes=2", "#SBATCH --job-name='x'"]
    quoted = "N=2\nsbatch <<'EOF'\n#SBATCH --nodes=${N}\ntorchrun pretrain_gpt.py\nEOF\n"
    assert read(quoted).directives == ["#SBATCH --nodes=${N}"]  # a quoted delimiter: the job gets the text as is


def test_a_space_after_the_last_backslash_is_left_out_with_a_warning():
    """MindSpeed's DeepSeek-V3 script: `--load $CKPT_LOAD_DIR \\    ` ends the command there; bash passes the spaces
    as one more argument, which the reader leaves out (saying so) instead of taking it for a value of --load."""
    text = "torchrun pretrain_gpt.py --num-layers 2 \\\n    --load /ckpt \\    \n    --seed 3 | tee log\n"
    if BASH:
        assert _bash_launches(text)[-1]["argv"][-3:] == ["--load", "/ckpt", " "]
    launch = read(text)
    assert launch.argv == ["--num-layers", "2", "--load", "/ckpt"]
    assert any("only of spaces" in w.message for w in launch.warnings)


def test_arithmetic_on_run_time_values_says_so():
    """$(( $SLURM_JOB_NUM_NODES * 8 )): the reader names why it cannot compute it, not Python's parser error."""
    launch = read("N=$SLURM_JOB_NUM_NODES\nT=$(( ${N} * 8 ))\nmpirun -np $T python pretrain_gpt.py --x\n")
    messages = [w.message for w in launch.warnings if w.message.startswith("arithmetic")]
    assert any("known only at run time" in m for m in messages), messages
    assert not any("syntax (<unknown>" in m or "null bytes" in m for m in messages), messages
    assert launch.world_size is None


@pytest.mark.parametrize("job,expected", [
    ("#SBATCH -N 2\n#SBATCH --gres=gpu:a100:4\n", "16"),  # the job's counts, as Slurm sets them
    ("", "$((SLURM_NNODES*SLURM_GPUS_ON_NODE*2))"),            # no #SBATCH: known only at run time
])
def test_a_scheduler_count_in_arithmetic_is_the_jobs_not_zero(job, expected):
    """GBS=$((SLURM_NNODES*SLURM_GPUS_ON_NODE*MBS)): bash reads an unset name as 0, but SLURM_NNODES is unset here
    only because no job runs; inside the job it is what the #SBATCH lines fix (a global batch of 0 crashed)."""
    launch = read(f"#!/bin/bash\n{job}GBS=$((SLURM_NNODES*SLURM_GPUS_ON_NODE*2))\n"
                  "torchrun --nproc_per_node 4 --nnodes 2 pretrain_gpt.py --global-batch-size $GBS\n")
    assert launch.argv == ["--global-batch-size", expected]
    messages = " ".join(w.message for w in launch.warnings)
    assert ("read as 2, from the job's #SBATCH --nodes 2" in messages) == bool(job)
    assert ("$SLURM_NNODES is set by the scheduler at run time" in messages) != bool(job)


@pytest.mark.parametrize("job,expected", [
    ("#SBATCH --nodes=2\n", "16"),
    ("", "$((NODES*8))"),
])
def test_a_variable_set_from_a_scheduler_count_is_that_count_in_arithmetic(job, expected):
    """NODES=$SLURM_NNODES, then $((NODES*8)): NODES is empty here only because no job runs (bash would give 0, a
    global batch of 0); the job's #SBATCH count, or a value known only at run time."""
    launch = read(f"#!/bin/bash\n{job}NODES=$SLURM_NNODES\nGBS=$((NODES*8))\nPORT=$((6000 + JOB % 100))\n"
                  "JOB=$SLURM_JOB_ID\nPORT2=$((6000 + JOB % 100))\n"
                  "torchrun --nproc_per_node 4 pretrain_gpt.py --global-batch-size $GBS --a $PORT --b $PORT2\n")
    assert launch.argv == ["--global-batch-size", expected, "--a", "6000", "--b", "$((6000 + JOB % 100))"]
    messages = " ".join(w.message for w in launch.warnings)
    assert ("$NODES (set from $SLURM_NNODES) in arithmetic read as 2, from the job's #SBATCH --nodes 2"
            in messages) == bool(job)
    assert "$JOB is set from $SLURM_JOB_ID, which only the running job has" in messages


def test_a_per_rank_script_started_outside_stays_per_rank_and_meets_at_its_dist_url():
    """mpirun runs the script once per rank (it reads $OMPI_COMM_WORLD_RANK): the world size is the job's, the new
    script stays `python` with a guard that names the launcher, and --dist-url becomes MASTER_ADDR / MASTER_PORT."""
    name = "mpirun_per_rank_outside.sh"
    launch = _corpus_read(name)
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], name)
    assert (launch.world_size, launch.started_by, launch.rank_variable) == (None, "mpirun", "OMPI_COMM_WORLD_RANK")
    assert "export MASTER_ADDR=node0\n" in text and "export MASTER_PORT=29600\n" in text
    assert ': "${OMPI_COMM_WORLD_RANK:?start this script once per rank with mpirun' in text
    assert text.rstrip().endswith("python -u \\\n    train_fsdp2.py \\\n    new.yaml")
    no_host = read_launch_script((CORPUS / name).read_text(), [], path=name)  # $1 and $2 not given: tcp://:
    assert "FIXME: --dist-url 'tcp://:' names no tcp://HOST:PORT" in render_launch_script(
        no_host, "train_fsdp2.py", ["new.yaml"], name)


PER_RANK_CASE = """\
lrank=$OMPI_COMM_WORLD_LOCAL_RANK
case ${lrank} in
[0]) numactl --cpunodebind=0 --membind=0 python -u pretrain_gpt.py --x ;;
[1]) numactl --cpunodebind=1 --membind=1 python -u pretrain_gpt.py --x ;;
esac
"""


def test_a_branch_on_a_rank_variable_says_which_value_to_give():
    """A per-rank script that picks its NUMA binding by the local rank: no branch is known here, and the refusal
    names the line and the variable; given one, the launch is one rank of the job mpirun starts."""
    with pytest.raises(ShellReadError, match=r"line 2: 'case' on \$lrank \(\$OMPI_COMM_WORLD_LOCAL_RANK\), set by "
                                             r"the scheduler at run time: no branch taken \(give the value with --set"):
        read(PER_RANK_CASE)
    launch = read_launch_script(PER_RANK_CASE, [], path="test.sh", environ={"OMPI_COMM_WORLD_LOCAL_RANK": "1"})
    assert (launch.style, launch.world_size, launch.started_by) == ("numactl + python", None, "mpirun")
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "test.sh")
    assert "numactl --cpunodebind=1 --membind=1 \\\n    python -u" in text


def test_assignments_from_a_variable_are_the_commands_environment():
    """`$ENV_ARGS torchrun ...` (ENV_ARGS="NCCL_DEBUG=INFO ..."): bash would fail ('command not found'); the intent
    is read, and the warning says how to write it."""
    launch = read('ENV_ARGS="WANDB_DISABLED=true NCCL_DEBUG=INFO"\n$ENV_ARGS torchrun --nproc_per_node 2 p.py --x 1\n')
    assert (launch.launcher, launch.entry, launch.argv, launch.world_size) == ("torchrun", "p.py", ["--x", "1"], 2)
    assert launch.exports == {"WANDB_DISABLED": "true", "NCCL_DEBUG": "INFO"}
    assert any("command not found" in w.message and "env " in w.message for w in launch.warnings)


def test_rendered_rank_script_and_start_folder(tmp_path, monkeypatch):
    """srun ... launch.sh pretrain_gpt.py (launch.sh not here) stays srun ... launch.sh train_fsdp2.py CONFIG, and
    paths the old script took from the folder it starts in ($PWD, `pwd`) are $PWD again, not this machine's."""
    monkeypatch.chdir(tmp_path)
    launch = _corpus_read("srun_rank_script_not_here.sh")
    assert (launch.rank_script, launch.start_folder) == ("/project/megatron-lm/launch.sh", str(tmp_path))
    text = render_launch_script(launch, "train_fsdp2.py", ["new.yaml"], "old.sh")
    assert '-B "$PWD" -B /project' in text
    assert "/project/megatron-lm/launch.sh \\\n    train_fsdp2.py \\\n    new.yaml" in text
    assert str(tmp_path) not in text


@needs_bash
def test_default_assignment_removes_the_quotes_of_its_word():
    """`: ${CMD_PREFIX:="numactl --membind=0-3"}` (a config file's default): the value has no quotes left."""
    text = ': ${CMD_PREFIX:="numactl --membind=0-3"}\nX=${Y:=\'a b\'}\ntorchrun t.py $CMD_PREFIX "$Y"\n'
    launch = read(text)
    assert launch.argv == ["numactl", "--membind=0-3", "a b"]
    _agrees_with_bash(launch, text)


def test_a_command_kept_as_text_is_one_word_when_its_variable_is_split():
    """HOST_IP=$(getent hosts $MASTER_ADDR | awk '{print $1}'), then --rdzv_endpoint ${HOST_IP}:${PORT} unquoted: bash
    splits the command's output (one address), not its text, so the endpoint stays one word, live in the new
    script."""
    launch = read("HOST_IP=$(getent hosts $MASTER_ADDR | awk '{print $1}')\nPORT=6000\n"
                  "torchrun --nnodes 2 --rdzv_endpoint ${HOST_IP}:${PORT} p.py --x 1\n")
    assert launch.argv == ["--x", "1"]
    assert launch.master_addr == "$(getent hosts $MASTER_ADDR | awk '{print $1}')" and launch.master_port == "6000"
    launch = read("HOST_IP=$(getent hosts $MASTER_ADDR | awk '{print $1}')\n"  # the whole command in one variable
                  'CMD="torchrun --nnodes 2 --rdzv_endpoint ${HOST_IP}:6000 p.py --x 1"\nmpirun -np 2 ${CMD}\n')
    assert (launch.style, launch.argv) == ("mpirun + torchrun", ["--x", "1"])


def test_an_exit_reached_only_by_an_assumed_false_condition_does_not_end_the_reading():
    """llm-jp's mpi_variables.sh: settings per cluster chosen by `[[ $HOSTNAME =~ ^a[0-9]{3}$ ]]`, and `else exit 1`
    on a login node. The host is known only when the job runs, so that exit is not followed."""
    text = ('if [[ $HOSTNAME =~ ^a[0-9]{3}$ ]]; then\n  export NCCL_IB_TC=106\nelse\n  echo "unsupported host"\n'
            '  exit 1\nfi\ntorchrun pretrain_gpt.py --x 1\n')
    launch = read(text)
    assert launch.argv == ["--x", "1"]
    assert any("test on $HOSTNAME" in w.message for w in launch.warnings)
    assert any("exit not followed" in w.message for w in launch.warnings)
    with pytest.raises(ShellReadError, match="exits at line 1"):  # a condition known here still ends it
        read('if [[ -z "$DATA" ]]; then exit 1; fi\ntorchrun pretrain_gpt.py\n')
