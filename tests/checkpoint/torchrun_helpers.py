"""Runs under the real `torchrun` (python -m torch.distributed.run) as a user starts them, with Megatron flags
through pretrain_gpt.py on 2 CPU ranks, in a session of their own so that a test can signal torchrun, every
process of the job (as scancel does), or kill torchrun outright."""
import os
import re
import signal
import subprocess
import sys
import time

from fsdp2_core.testing.spawn import free_port
from tests.checkpoint.ckpt_helpers import ROOT

ENTRY = os.path.join(ROOT, "pretrain_gpt.py")
ITERATION = re.compile(r" iteration +(\d+)/ +(\d+) \|")

# A tiny Llama with Megatron's default attention dropout (0.1): its masks draw from the global generator.
TINY = ("--num-layers 2 --hidden-size 32 --ffn-hidden-size 64 --num-attention-heads 4 --group-query-attention "
        "--num-query-groups 2 --seq-length 16 --max-position-embeddings 32 --position-embedding-type rope --swiglu "
        "--normalization RMSNorm --untie-embeddings-and-output-weights --disable-bias-linear --micro-batch-size 2 "
        "--global-batch-size 4 --lr 3e-3 --min-lr 3e-4 --lr-warmup-iters 2 --tokenizer-type NullTokenizer "
        "--vocab-size 100 --split 100,0,0 --log-interval 1 --seed 3 --exit-signal-handler").split()


def environment():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), FSDP2_DEVICE="cpu",
                OMP_NUM_THREADS="1")


def megatron_flags(corpus, save, iters, workers, *extra):
    return [*TINY, "--data-path", corpus, "--save", save, "--load", save, "--train-iters", str(iters),
            "--num-workers", str(workers), *extra]


def start_torchrun(flags, log_path, log_dir, cwd):
    """torchrun with 2 ranks of pretrain_gpt.py; its stdout and stderr go to `log_path`, its per-rank error
    files under `log_dir`."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
           "--log-dir", log_dir, ENTRY, *flags]
    out = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=cwd, env=environment(), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def children():
    """{pid: parent pid} of every process on this machine."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as fh:
                    out[int(name)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def process_tree(root):
    """`root` and all its descendants (torchrun, its ranks, their loader workers)."""
    parents = children()
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return tree


def alive(pids):
    found = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie has exited; its parent has not reaped it yet
            found.add(pid)
    return found


def signal_job(proc, sig):
    """`sig` to every process of the job at once, as scancel or a container stop does: torchrun's process
    group and each rank's (torchrun starts every rank in a session of its own)."""
    groups = set()
    for pid in process_tree(proc.pid):
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    for group in groups:
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            pass


def wait_for_log(log_path, pattern, proc, timeout=300):
    """The first match of `pattern` in the log; fails when torchrun ends first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path) as fh:
            m = re.search(pattern, fh.read())
        if m:
            return m
        if proc.poll() is not None:
            raise AssertionError(f"torchrun ended ({proc.returncode}) before {pattern!r}:\n{read(log_path)[-3000:]}")
        time.sleep(0.1)
    raise TimeoutError(pattern)


def read(path):
    with open(path) as fh:
        return fh.read()


def rank_error_files(log_dir):
    """Error files torchrun's ranks wrote (one per rank that ended with an exception)."""
    return [os.path.join(d, f) for d, _, files in os.walk(log_dir) for f in files if f == "error.json"]


def stop(proc):
    """Tear down what is left of a job (after a failed assertion)."""
    if proc.poll() is None:
        signal_job(proc, signal.SIGKILL)
        proc.wait(30)
