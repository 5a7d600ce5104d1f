"""Ranks from the launcher's environment (fsdp2_core/rank_env.py): one test per scheme, the precedence between
them, where rank 0's address comes from, and two plain `python pretrain_gpt.py` processes that only have
Open MPI's variables training together."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from fsdp2_core.rank_env import (
    DEFAULT_MASTER_PORT,
    RankDiscoveryError,
    discover_ranks,
    export_torchrun_variables,
    first_host,
)
from fsdp2_core.testing.spawn import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("env,scheme,ranks", [
    ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "h0",
      "MASTER_PORT": "7000"}, "torchrun", (3, 8, 3, 4, "h0", "7000")),
    ({"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_RANK": "5",
      "OMPI_COMM_WORLD_LOCAL_SIZE": "8", "MASTER_ADDR": "n1"}, "Open MPI (mpirun)", (5, 16, 5, 8, "n1", "29500")),
    ({"PMI_RANK": "2", "PMI_SIZE": "4", "MPI_LOCALRANKID": "2", "MPI_LOCALNRANKS": "4"},
     "PMI (MPICH / Intel MPI / Cray PALS mpiexec)", (2, 4, 2, 4, "127.0.0.1", "29500")),
    ({"PMI_RANK": "1", "PMI_SIZE": "2", "PMI_LOCAL_RANK": "1", "PMI_LOCAL_SIZE": "2"},
     "PMI (MPICH / Intel MPI / Cray PALS mpiexec)", (1, 2, 1, 2, "127.0.0.1", "29500")),
    ({"JSM_NAMESPACE_RANK": "7", "JSM_NAMESPACE_SIZE": "12", "JSM_NAMESPACE_LOCAL_RANK": "1",
      "JSM_NAMESPACE_LOCAL_SIZE": "6", "MASTER_ADDR": "h2"}, "IBM jsrun (LSF)", (7, 12, 1, 6, "h2", "29500")),
    ({"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_STEP_NUM_TASKS": "16", "SLURM_STEP_ID": "0",
      "SLURM_LOCALID": "1", "SLURM_NODEID": "1", "SLURM_STEP_TASKS_PER_NODE": "8(x2)",
      "SLURM_STEP_NODELIST": "gpu[007-008]", "SLURM_JOB_NODELIST": "gpu[007-008]"},
     "Slurm (srun)", (9, 16, 1, 8, "gpu007", "29500")),
])
def test_each_scheme(env, scheme, ranks):
    found = discover_ranks(env)
    assert found.scheme == scheme
    assert (found.rank, found.world_size, found.local_rank, found.local_world_size, found.master_addr,
            found.master_port) == ranks


def test_torchrun_variables_win_and_mpi_wins_over_the_slurm_allocation():
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}
    ompi = {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}
    slurm_batch = {"SLURM_PROCID": "0", "SLURM_NTASKS": "32", "SLURM_LOCALID": "0"}  # mpirun inside sbatch
    assert discover_ranks({**torchrun, **ompi, **slurm_batch}).scheme == "torchrun"
    assert discover_ranks({**ompi, **slurm_batch}).rank == 3


def test_slurm_batch_shell_is_not_a_step():
    """The batch shell has SLURM_PROCID=0 and the job's SLURM_NTASKS while one process runs: no ranks there."""
    assert discover_ranks({"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0",
                           "SLURM_JOB_NODELIST": "n[1-2]"}) is None
    assert discover_ranks({}) is None


def test_master_addr_across_nodes_from_the_node_list_or_a_clear_error(tmp_path):
    ompi = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
            "OMPI_COMM_WORLD_LOCAL_SIZE": "8"}
    assert discover_ranks({**ompi, "SLURM_JOB_NODELIST": "node[12,14-15],login"}).master_addr == "node12"
    hosts = tmp_path / "nodefile"
    hosts.write_text("x3005c0s13b0n0\nx3005c0s13b0n0\nx3005c0s19b1n0\n")
    pmi = {"PMI_RANK": "4", "PMI_SIZE": "8", "PMI_LOCAL_RANK": "0", "PMI_LOCAL_SIZE": "4"}
    assert discover_ranks({**pmi, "PBS_NODEFILE": str(hosts)}).master_addr == "x3005c0s13b0n0"
    with pytest.raises(RankDiscoveryError, match=r"Open MPI \(mpirun\) started 16 ranks on several hosts and "
                                                 r"MASTER_ADDR is not set: export MASTER_ADDR=.*-x MASTER_ADDR"):
        discover_ranks(ompi)
    with pytest.raises(RankDiscoveryError, match=r"\$PMI_SIZE='four' is not a number"):
        discover_ranks({"PMI_RANK": "0", "PMI_SIZE": "four"})


@pytest.mark.parametrize("node_list,host", [("gpu[003-005,9],login1", "gpu003"), ("n7", "n7"), ("a,b", "a"),
                                            ("rack[1-2]-node[01-04]", "rack1-node01")])
def test_first_host_of_a_slurm_host_list(node_list, host):
    assert first_host(node_list) == host


def test_export_writes_torchrun_variables_and_leaves_torchruns_alone():
    env = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1",
           "OMPI_COMM_WORLD_LOCAL_SIZE": "2"}
    export_torchrun_variables(env)
    assert {k: env[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                "MASTER_PORT")} == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                                                    "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                                    "MASTER_PORT": DEFAULT_MASTER_PORT}
    torchrun = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "h", "MASTER_PORT": "5"}
    assert export_torchrun_variables(dict(torchrun)).scheme == "torchrun"
    plain = {}
    assert export_torchrun_variables(plain) is None and plain == {}


# ----------------------------------------------------------------------------- two ranks started by "mpirun"
_LINE = re.compile(r" iteration +(\d+)/ +2 \| consumed samples: +(\d+) \|.*? lm loss: ([\d.E+-]+) \|")


@pytest.mark.subprocess
@pytest.mark.dist
@pytest.mark.slow
def test_two_python_processes_with_only_open_mpi_variables_train_together(tmp_path):
    """What `mpirun -np 2 python pretrain_gpt.py ...` gives its processes: OMPI_COMM_WORLD_* and nothing of
    torchrun's. Both join one gloo group (rank 0 on this host, the default port overridden to a free one)."""
    from fsdp2_core.data.megatron import IndexedDatasetBuilder
    prefix = str(tmp_path / "corpus_text_document")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
    rng = np.random.default_rng(0)
    for _ in range(64):
        builder.add_item(torch.from_numpy(rng.integers(0, 100, size=int(rng.integers(20, 60))).astype(np.uint16)))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    flags = ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --seq-length 16 --max-position-embeddings 32 "
             "--micro-batch-size 2 --global-batch-size 8 --train-iters 2 --lr 1e-3 --lr-decay-style constant "
             "--split 100,0,0 --tokenizer-type NullTokenizer --vocab-size 100 --log-interval 1 --eval-iters 0 "
             "--num-workers 0").split() + ["--data-path", prefix, "--save", str(tmp_path / "out")]
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("OMPI_", "PMI_", "SLURM_", "RANK", "WORLD_SIZE", "LOCAL_", "MASTER_", "GROUP_"))}
    base.update(PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), FSDP2_DEVICE="cpu",
                OMP_NUM_THREADS="1", MASTER_PORT=str(free_port()))
    procs = [subprocess.Popen([sys.executable, os.path.join(ROOT, "pretrain_gpt.py"), *flags], cwd=tmp_path,
                              env={**base, "OMPI_COMM_WORLD_RANK": str(r), "OMPI_COMM_WORLD_SIZE": "2",
                                   "OMPI_COMM_WORLD_LOCAL_RANK": str(r), "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out[-2000:] + err[-4000:]
    lines = _LINE.findall(outs[0][0])
    assert [(int(i), int(s)) for i, s, _ in lines] == [(1, 8), (2, 16)], outs[0][0][-2000:]
    assert "world 2 = tp 1 × cp 1 × dp 2" in outs[0][1]  # the batch arithmetic saw both ranks: accumulation 2
    assert (tmp_path / "out" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
