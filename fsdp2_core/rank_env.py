"""Which launcher started this process, and its rank, from the environment variables launchers set.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE / MASTER_ADDR / MASTER_PORT. A script that
starts one python process per rank with `mpirun` or `srun` instead gets the MPI library's or Slurm's
variables; `export_torchrun_variables` writes torchrun's from them, so the rest of the engine (and
torch.distributed's env:// rendezvous) sees one scheme. torchrun's own variables always win.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping, MutableMapping

DEFAULT_MASTER_PORT = "29500"  # torchrun's


@dataclass(frozen=True)
class RankScheme:
    name: str
    rank: tuple[str, ...]          # each field: the variables that may hold it, first set wins
    size: tuple[str, ...]
    local_rank: tuple[str, ...]
    local_size: tuple[str, ...]
    inside: tuple[str, ...] = ()   # one of these must be set too: the scheme's own marker


SCHEMES = (
    RankScheme("torchrun", ("RANK",), ("WORLD_SIZE",), ("LOCAL_RANK",), ("LOCAL_WORLD_SIZE",)),
    RankScheme("Open MPI (mpirun)", ("OMPI_COMM_WORLD_RANK",), ("OMPI_COMM_WORLD_SIZE",),
               ("OMPI_COMM_WORLD_LOCAL_RANK",), ("OMPI_COMM_WORLD_LOCAL_SIZE",)),
    RankScheme("PMI (MPICH / Intel MPI / Cray PALS mpiexec)", ("PMI_RANK",), ("PMI_SIZE",),
               ("PMI_LOCAL_RANK", "MPI_LOCALRANKID", "PALS_LOCAL_RANKID"),
               ("PMI_LOCAL_SIZE", "MPI_LOCALNRANKS", "PALS_LOCAL_SIZE")),
    # IBM's jsrun sets these beside Spectrum MPI's OMPI_COMM_WORLD_* (read first, above)
    RankScheme("IBM jsrun (LSF)", ("JSM_NAMESPACE_RANK",), ("JSM_NAMESPACE_SIZE",), ("JSM_NAMESPACE_LOCAL_RANK",),
               ("JSM_NAMESPACE_LOCAL_SIZE",)),
    # Slurm's batch shell also has SLURM_PROCID=0 and SLURM_NTASKS=<the job's tasks> while only one process
    # runs there; srun's step variables tell a task of a step from it.
    RankScheme("Slurm (srun)", ("SLURM_PROCID",), ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"), ("SLURM_LOCALID",),
               (), inside=("SLURM_STEP_ID", "SLURM_STEP_NUM_TASKS")),
)
# Where a multi-node job's first host can be read when MASTER_ADDR is not set
_NODE_LISTS = ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")


@dataclass(frozen=True)
class Ranks:
    scheme: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int | None
    master_addr: str
    master_port: str


class RankDiscoveryError(RuntimeError):
    """The launcher's variables are there but do not say enough to start the process group."""


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        if env.get(name, "") != "":
            return name, env[name]
    return None


def _int(env: Mapping[str, str], found: tuple[str, str]) -> int:
    name, value = found
    if not re.fullmatch(r"\d+", value.strip()):
        raise RankDiscoveryError(f"${name}={value!r} is not a number")
    return int(value)


def discover_ranks(env: Mapping[str, str]) -> Ranks | None:
    """The ranks the launcher gave this process, by the first scheme of SCHEMES whose variables are set;
    None when no launcher set any (a plain `python` run: a world of one)."""
    for scheme in SCHEMES:
        rank, size = _first(env, scheme.rank), _first(env, scheme.size)
        if rank is None or size is None or (scheme.inside and _first(env, scheme.inside) is None):
            continue
        local_rank, local_size = _first(env, scheme.local_rank), _first(env, scheme.local_size)
        world = _int(env, size)
        local_world = _int(env, local_size) if local_size else _slurm_local_size(env)
        addr = env.get("MASTER_ADDR") or _master_addr(env, scheme.name, world, local_world)
        return Ranks(scheme.name, _int(env, rank), world, _int(env, local_rank) if local_rank else 0, local_world,
                     addr, env.get("MASTER_PORT") or DEFAULT_MASTER_PORT)
    return None


def _master_addr(env: Mapping[str, str], scheme: str, world: int, local_world: int | None) -> str:
    """Where rank 0 listens: this host when every rank is on it, else the first host of the scheduler's list."""
    if local_world is not None and local_world == world:
        return "127.0.0.1"
    node_list = _first(env, _NODE_LISTS)
    if node_list is not None:
        return first_host(node_list[1])
    if env.get("PBS_NODEFILE") and os.path.isfile(env["PBS_NODEFILE"]):
        with open(env["PBS_NODEFILE"], encoding="utf-8") as fh:
            hosts = [line.strip() for line in fh if line.strip()]
        if hosts:
            return hosts[0]
    raise RankDiscoveryError(
        f"{scheme} started {world} ranks on several hosts and MASTER_ADDR is not set: export MASTER_ADDR=<the "
        f"host of rank 0> (with mpirun: -x MASTER_ADDR=<host>), and MASTER_PORT if {DEFAULT_MASTER_PORT} is taken")


def first_host(node_list: str) -> str:
    """The first host of a Slurm host list: "gpu[003-005,9],login1" -> "gpu003"."""
    item, depth = [], 0
    for c in node_list.strip():
        if c == "," and depth == 0:
            break
        depth += (c == "[") - (c == "]")
        item.append(c)
    return re.sub(r"\[([^\]\-,]*)[^\]]*\]", r"\1", "".join(item))


def _slurm_local_size(env: Mapping[str, str]) -> int | None:
    """This node's task count from SLURM_STEP_TASKS_PER_NODE ("4(x2),3": 4, 4, 3) and SLURM_NODEID."""
    spec, node = env.get("SLURM_STEP_TASKS_PER_NODE", ""), env.get("SLURM_NODEID", "")
    if not spec or not node.isdigit():
        return None
    counts = []
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not m:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[int(node)] if int(node) < len(counts) else None


def export_torchrun_variables(environ: MutableMapping[str, str] | None = None) -> Ranks | None:
    """Write torchrun's variables from the launcher's when torchrun's are absent; return what was found."""
    env = os.environ if environ is None else environ
    ranks = discover_ranks(env)
    if ranks is None or ranks.scheme == "torchrun":
        return ranks
    env.update(RANK=str(ranks.rank), WORLD_SIZE=str(ranks.world_size), LOCAL_RANK=str(ranks.local_rank),
               MASTER_ADDR=ranks.master_addr, MASTER_PORT=ranks.master_port)
    if ranks.local_world_size is not None:
        env["LOCAL_WORLD_SIZE"] = str(ranks.local_world_size)
    return ranks
