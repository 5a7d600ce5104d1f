"""Command substitutions that only reshape known text or numbers are computed as bash computes them
(megatron_compat/shell/text_commands.py); the oracle is bash itself, with the real echo, cut, tr and python3."""
import json
import shutil
import subprocess
import sys

import pytest

from megatron_compat.shell import read_launch_script

SETUP = ("X=--lr=3e-4\nN=1001\nNAME=Llama-3\n"
         "ARR=(pretrain_gpt.py --data-path '/d a/t' --empty '' --q 'a$b\"c' a,b '~a' '#a' 'x~y#z')\n")

CASES = [
    "$(echo $X | cut -f1 -d=)",
    '$(echo "$X" | cut -d= -f2-)',
    "$(echo $X | cut -d '=' -f 2)",
    "$(echo a:b:c:d | cut -d: -f1,3)",
    "$(echo nodash | cut -d- -f2)",
    '$(echo "$NAME" | tr "[:upper:]" "[:lower:]")',
    "$(echo $NAME | tr a-z A-Z)",
    '$(python3 -c "print(int($N * 0.2))")',
    '$(python3 -c "print($N // 8 + 1)")',
    '$(python3 -c "print(round(2.5e-4 * 4, 6))")',
    "$(echo -n $X)x",
    "$(echo $N)0",
    "$(seq -s, 0 $((4 - 1)))",
    "$(seq 0 2 6)",
    "$(seq -s : 5 -1 3)",
    "$(expr $N \\* 4)",
    "$(expr $N + 2 \\* 3 - 7 / 2)",
    "$(expr -7 / 2 + -7 % 2)",
    "`expr $N % 3`",
    '$(if [ "$N" -gt 1000 ]; then echo big; else echo small; fi)',
    '$([ "$NAME" = Llama-3 ] && echo --swiglu)',
    '$([[ $NAME == GPT* ]] && echo --learned || echo --rope)',
    "$(for i in 1 2 3; do echo -n $i,; done)",
    '$(printf " %q" "${ARR[@]}")',
    "$(printf '%s-%d|' a $N b)",
    "$(printf '%-6s|%4d' ab 7)",
    "$(printf 'x%%y %s\\n' $NAME)",
]


def _bash_value(script: str, name: str, path: str = "/usr/bin:/bin") -> str:
    """$name after real bash ran `script` with this PATH."""
    return subprocess.run(["bash", "-c", script + f'printf %s "${name}"'], capture_output=True, text=True, check=True,
                          env={"PATH": path}).stdout


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("seq") is None, reason="needs bash and coreutils")
@pytest.mark.parametrize("substitution", CASES)
def test_computed_like_bash(substitution, tmp_path):
    script = SETUP + f'A="{substitution}"\n'
    python = tmp_path / "python3"  # the interpreter running the tests, as the script's python3
    python.symlink_to(sys.executable)
    bash = _bash_value(script, "A", f"{tmp_path}:/usr/bin:/bin")
    launch = read_launch_script(script + 'torchrun pretrain_gpt.py --x "$A"\n')
    assert launch.argv == ["--x", bash]
    assert not [w for w in launch.warnings if "not evaluated" in w.message]


@pytest.mark.parametrize("substitution", [
    "$(echo $SLURM_TASKS_PER_NODE | cut -d '(' -f 1)",   # the scheduler's value: known in the job only
    "$(echo $UNSET_HERE | cut -f1 -d=)",                  # a variable the script never sets
    "$(echo $(hostname) | cut -d. -f1)",                  # a command's output
    '$(python3 -c "import torch; print(torch.cuda.device_count())")',  # depends on the machine
    '$(python3 -c "print(open(\'/etc/hostname\').read())")',
    '$(if [ -f /etc/hosts ]; then echo a; fi)',           # a file test: nothing is read from disk
    '$(if [ "$SLURM_PROCID" = 0 ]; then echo a; fi)',     # a test on the scheduler's value
    "$(echo a; hostname)",                                # a program that is not echo
])
def test_run_time_outputs_stay_unevaluated(substitution):
    launch = read_launch_script(SETUP + f'A="{substitution}"\ntorchrun pretrain_gpt.py --x "$A"\n')
    assert launch.argv == ["--x", substitution]
    assert [w for w in launch.warnings if "not evaluated; kept as text" in w.message]


def test_argument_loop_splitting_key_value_pairs():
    """Megatron-DeepSpeed's `for ARGUMENT in "$@"; do KEY=$(echo $ARGUMENT | cut -f1 -d=) ...` loop."""
    script = ('for ARGUMENT in "$@"; do\n'
              '    KEY=$(echo $ARGUMENT | cut -f1 -d=)\n'
              '    KEY_LENGTH=${#KEY}\n'
              '    VALUE="${ARGUMENT:$KEY_LENGTH+1}"\n'
              '    export "$KEY"="$VALUE"\n'
              'done\n'
              'torchrun pretrain_gpt.py --tensor-model-parallel-size $TP --data-path $DATA\n')
    launch = read_launch_script(script, ["TP=4", "DATA=/d/web_text_document"])
    assert launch.argv == ["--tensor-model-parallel-size", "4", "--data-path", "/d/web_text_document"]


CONDITIONS = [
    'echo "$SIM_ARGS" | grep -q -- "--is-scaling-mode"',
    'echo "$SIM_ARGS" | grep -q -- "--fake-tp"',
    'echo "$SIM_ARGS" | grep -qi "FAKE"',
    'echo "$SIM_ARGS" | grep -qw "fake"',
    'echo "$SIM_ARGS" | grep -qF -- "--fake-pp 2"',
    '! echo "$SIM_ARGS" | grep -q fake',
    'echo "$SIM_ARGS" | grep -qE "tp [0-9]+"',
]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("grep") is None, reason="needs bash and grep")
@pytest.mark.parametrize("condition", CONDITIONS)
def test_grep_conditions_like_bash(condition):
    """A script testing its own option string (`if echo "$SIM_ARGS" | grep -q -- "--flag"; then`) takes the
    branch bash takes."""
    script = ('SIM_ARGS=" --fake-pp 2 --fake-tp 2 "\n'
              f'if {condition}; then TP=1; else TP=2; fi\n')
    bash = _bash_value(script, "TP")
    launch = read_launch_script(script + "torchrun pretrain_gpt.py --tp $TP\n")
    assert launch.argv == ["--tp", bash]
    assert not [w for w in launch.warnings if "could not be evaluated" in w.message]


BC_PROGRAMS = ["300*1000000000/1", "0.5*1000000000/1", "scale=2; 3/4", "3/4", "2^10", "1.5*3", "0.25*0.5", "7%3",
               "scale=3;10%3.3", "-.5*2", "(1+2)*3-4/3", "1.5^2", "2^-2", "scale=4; 2^-2"]


@pytest.mark.skipif(shutil.which("bc") is None, reason="needs bc")
@pytest.mark.parametrize("program", BC_PROGRAMS)
@pytest.mark.parametrize("options", [[], ["-l"]])
def test_bc_computes_as_bc_does(program, options):
    from megatron_compat.shell.bc import bc
    theirs = subprocess.run(["bc", *options], input=program + "\n", capture_output=True, text=True, check=True).stdout
    assert bc(program, math_library=bool(options)) == theirs


def test_bc_in_a_launch_script():
    """Megatron-DeepSpeed's examples compute token counts with bc (`--lr-decay-tokens`)."""
    script = ('lr_decay_tokens_in_billion=260\n'
              'lr_decay_tokens=$(echo "${lr_decay_tokens_in_billion}*1000000000/1" | bc)\n'
              'torchrun pretrain_gpt.py --lr-decay-tokens $lr_decay_tokens --x $(echo "s(1)" | bc -l)\n')
    launch = read_launch_script(script)
    assert launch.argv == ["--lr-decay-tokens", "260000000000", "--x", '$(echo "s(1)" | bc -l)']


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_function_of_echo_lines_gives_its_output():
    """kungfu-team's `flags() { echo --num-layers 24; ...; echo --data-path $DATA_PATH; }` then
    `torchrun pretrain_gpt.py $(flags)`: the words bash passes."""
    script = ('DATA_PATH=/data/enwiki_text_document\nflags() {\n    echo --num-layers 24\n    echo --fp16\n\n'
              '    echo --data-path $DATA_PATH\n    echo --tag "$1"\n}\n')
    bash = subprocess.run(["bash", "-c", script + 'printf "%s\\n" $(flags t1)'], capture_output=True, text=True,
                          check=True).stdout.split()
    launch = read_launch_script(script + "torchrun ./pretrain_gpt.py $(flags t1)\n")
    assert launch.argv == bash == ["--num-layers", "24", "--fp16", "--data-path", "/data/enwiki_text_document",
                                   "--tag", "t1"]


def test_an_empty_substitution_does_not_stop_the_reading():
    launch = read_launch_script('X=$()\ntorchrun pretrain_gpt.py --x "$X" --y 1\n')
    assert launch.argv[-2:] == ["--y", "1"]


@pytest.mark.parametrize("offload", ["true", "false"])
def test_a_deepspeed_config_with_an_optional_block_is_written_as_bash_writes_it(offload):
    """Megatron-DeepSpeed's universal-checkpointing example adds a block to its here-document with
    `$(if [ "${CPU_OFFLOAD}" = "true" ]; then echo ',...'; fi)`: the file must be the JSON bash writes."""
    script = (f"CPU_OFFLOAD={offload}\nZERO=1\ncat <<EOT > ds.json\n"
              '{"zero_optimization": {"stage": $ZERO$(if [ "${CPU_OFFLOAD}" = "true" ]; then echo \',\n'
              '    "offload_optimizer": {"device": "cpu"}\'; fi)}}\nEOT\n'
              "deepspeed pretrain_gpt.py --deepspeed_config ds.json\n")
    written = json.loads(read_launch_script(script).files["ds.json"])
    assert written["zero_optimization"] == ({"stage": 1, "offload_optimizer": {"device": "cpu"}}
                                            if offload == "true" else {"stage": 1})


READS = [
    'IFS=, read -ra B <<< "a,b,,c,"; V="${#B[@]}:${B[0]}|${B[1]}|${B[2]}|${B[3]}"',
    'IFS=, read -ra B <<< ",a"; V="${#B[@]}:${B[0]}|${B[1]}"',
    'IFS=", " read -ra B <<< " a , b ,c"; V="${#B[*]}:${B[0]}|${B[1]}|${B[2]}"',
    'read -r X Y <<< "  one  two three "; V="[$X][$Y]"',
    'IFS=: read X Y <<< "a:b:"; V="[$X][$Y]"',
    'IFS=: read X Y <<< "a:b::"; V="[$Y]"',
    'IFS=" :" read X Y <<< "a b c : "; V="[$Y]"',
    'IFS=: read -r X Y Z <<< "a"; V="[$X][$Y][$Z]"',
    'read X <<< "a\\b"; V="[$X]"',
    'read -r X <<< "a\\b"; V="[$X]"',
    'read <<< "  x  "; V="[$REPLY]"',
    'L="$X:7"; IFS=: read -r HOST PORT <<< "$L"; V="$HOST-$PORT"',
    # data blends written as "path:weight,..." turned into "weight path ..." (LLM360's scripts)
    'RAW="/d/a:0.3,/d/b:0.7"; T=""; IFS="," read -ra P <<< "$RAW"; '
    'for i in "${P[@]}"; do T+="${i##*:} ${i%:*} "; done; V="$T"',
    'unset NONE; N=0; for i in "${NONE[@]}"; do N=$((N + 1)); done; V=$N',
]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("snippet", READS)
def test_read_from_a_here_string_like_bash(snippet):
    script = SETUP + snippet + "\n"
    launch = read_launch_script(script + 'torchrun pretrain_gpt.py --x "$V"\n')
    assert launch.argv == ["--x", _bash_value(script, "V")]
    assert not [w for w in launch.warnings if "not evaluated" in w.message], launch.warnings


def test_an_array_passed_through_bash_c_with_printf_q_keeps_each_word():
    """`ARGS_STR=$(printf " %q" "${ARGS[@]}")` then `srun bash -lc 'torchrun '"$ARGS_STR"`: bash -c reads the quoted
    words back, so a path with a blank stays one argument."""
    launch = read_launch_script(
        "#SBATCH --nodes=2\n"
        "ARGS=(--nnodes=2 --nproc_per_node=8 pretrain_gpt.py --num-layers 2 --data-path \"/data/my corpus\")\n"
        "ARGS_STR=$(printf \" %q\" \"${ARGS[@]}\")\n"
        "srun bash -lc 'torchrun '\"$ARGS_STR\"\n")
    assert launch.argv == ["--num-layers", "2", "--data-path", "/data/my corpus"]
    assert launch.world_size == 16
