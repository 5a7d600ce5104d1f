"""The launchers a launch line can pass through, as a table: how each is recognised, which of its options take
a value, what it runs, and where the number of training processes (the world size) comes from.

Roles:
  per-rank  starts N copies of the command it runs, each a rank or one launcher per node (srun, mpirun)
  spawner   starts the ranks itself and runs a training script, or with --no_python a command
            (torchrun, python -m torch.distributed.run|launch, deepspeed, msrun, AWS HyperPod's hyperpodrun)
  wrapper   runs its command once, in another setting (numactl, uv run)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable

PER_RANK, SPAWNER, WRAPPER = "per-rank", "spawner", "wrapper"

# Programs that start training themselves; a wrapper script's arguments that start with one are its command.
_TRAINING_PROGRAMS = r"python[\d.]*|torchrun|hyperpodrun|deepspeed"
# Programs a wrapped command may start with: an option followed by one of these takes no value.
_COMMANDS = re.compile(rf"({_TRAINING_PROGRAMS}|msrun|bash|sh|env|numactl|nohup|uv|srun|mpirun|mpiexec|"
                       r"taskset|time|exec|apptainer|singularity|shifter)")
_NUMBER = re.compile(r"-?\d+")
_SCHEDULER_VALUE = re.compile(r"\$\{?[A-Za-z_]\w*\}?")


def starts_training(word: str) -> bool:
    return bool(re.fullmatch(_TRAINING_PROGRAMS, os.path.basename(word)))


def looks_like_command(word: str) -> bool:
    base = os.path.basename(word)
    return bool(_COMMANDS.fullmatch(base)) or base.endswith((".py", ".sh"))


def option_key(token: str) -> str:
    """--nproc-per-node / --nproc_per_node / -np -> nproc_per_node / np (the spelling without dashes)."""
    return token.lstrip("-").partition("=")[0].replace("-", "_")


World = tuple[int | None, str]  # (number of processes or None when only known at run time, where it comes from)


@dataclass(frozen=True)
class LauncherSpec:
    kind: str
    role: str
    valued: frozenset[str]                   # option keys that take the next word
    boolean: frozenset[str] = frozenset()    # option keys that take none
    two_valued: frozenset[str] = frozenset()  # option keys that take two words (mpirun --mca KEY VALUE)
    aliases: dict[str, str] = field(default_factory=dict)  # short key -> canonical key, e.g. n -> ntasks
    world: Callable[[dict, dict], World] | None = None       # (option values, #SBATCH values) -> World
    no_python: str | None = None             # the option that makes a spawner run a command, not a script
    operands: int = 0                        # words after the options before the command (a container image)
    dash_values: frozenset[str] = frozenset()  # option keys whose value may start with "-" (jsrun --smpiargs "-gpu")
    command_option: str | None = None        # the option whose value is the command run, as `bash -c` runs it

    def canonical(self, key: str) -> str:
        return self.aliases.get(key, key)


@dataclass
class ParsedOptions:
    args: list[str]                       # the option words, as given
    values: dict[str, str]                # canonical key -> value ("" for a switch)
    rest: list[str]                       # what the launcher runs
    missing: list[tuple[str, int, int]]   # valued options left empty: (option as written, index of the word
    #                                       just after it, index of the option in args)


def parse_options(spec: LauncherSpec, words: list[str], vanished_after: Callable[[int], bool]) -> ParsedOptions:
    """Split `words` (what follows the launcher's name) into its options and the command it runs.

    vanished_after(k): whether a word expanded to nothing just before words[k]; an option that takes a value
    and is followed by such a gap, by another option or by a program has lost its value (an empty variable)."""
    args, values, missing, k = [], {}, [], 0
    while k < len(words):
        token = words[k]
        if token == "--":
            args.append(token)
            k += 1
            break
        if not token.startswith("-") or token == "-" or _NUMBER.fullmatch(token):
            break
        key = option_key(token)
        attached = _attached_short_value(spec, token)
        if attached is not None:
            args.append(token)
            values[spec.canonical(token[1])] = attached
            k += 1
            continue
        canonical = spec.canonical(key)
        args.append(token)
        k += 1
        if "=" in token:
            values[canonical] = token.partition("=")[2]
            if not values[canonical] and (key in spec.valued or canonical in spec.valued):
                missing.append((token, k, len(args) - 1))
        elif key in spec.two_valued:
            args.extend(words[k:k + 2])
            values[canonical] = " ".join(words[k:k + 2])
            k += 2
        elif key in spec.boolean or key in spec.aliases and spec.aliases[key] in spec.boolean:
            values[canonical] = ""
        elif key in spec.valued or canonical in spec.valued:
            nxt = words[k] if k < len(words) else None
            takes_dash = canonical in spec.dash_values
            if vanished_after(k) or nxt is None or (nxt.startswith("-") and not _NUMBER.fullmatch(nxt)
                                                    and not takes_dash) or looks_like_command(nxt):
                missing.append((token, k, len(args) - 1))
                values[canonical] = ""
            else:
                if nxt == "":  # a quoted empty variable: the value is there, and empty
                    missing.append((token, k, len(args) - 1))
                args.append(nxt)
                values[canonical] = nxt
                k += 1
        else:  # an option this table does not know: it takes a value unless a program or an option follows
            nxt = words[k] if k < len(words) else None
            if nxt is not None and not nxt.startswith("-") and not looks_like_command(nxt) and not vanished_after(k):
                args.append(nxt)
                values[canonical] = nxt
                k += 1
            else:
                values[canonical] = ""
    operands = words[k:k + spec.operands]
    return ParsedOptions(args + operands, values, words[k + len(operands):], missing)


def _attached_short_value(spec: LauncherSpec, token: str) -> str | None:
    """-n8 -> "8" when -n takes a value and -n8 is not itself an option."""
    if token.startswith("--") or len(token) <= 2 or "=" in token:
        return None
    short, whole = token[1], option_key(token)
    if whole in spec.valued or whole in spec.boolean or whole in spec.aliases or whole in spec.two_valued:
        return None
    if short in spec.aliases and spec.canonical(short) in spec.valued or short in spec.valued:
        return token[2:]
    return None


# ----------------------------------------------------------------------------- world sizes
# Slurm variables a batch script's #SBATCH lines decide, and the directive that does
_SLURM_FROM_SBATCH = {"SLURM_NNODES": "nodes", "SLURM_JOB_NUM_NODES": "nodes", "SLURM_NTASKS": "ntasks",
                      "SLURM_NPROCS": "ntasks", "SLURM_NTASKS_PER_NODE": "ntasks_per_node",
                      "SLURM_GPUS_ON_NODE": "gpus_per_node", "SLURM_GPUS_PER_NODE": "gpus_per_node",
                      "SLURM_CPUS_PER_TASK": "cpus_per_task"}


SLURM_COUNT_VARIABLES = tuple(_SLURM_FROM_SBATCH)


def as_int(value: str | None) -> int | None:
    return int(value) if value is not None and re.fullmatch(r"\d+", value) else None


def sbatch_counts(values: dict) -> dict[str, int]:
    """Counts a batch script's #SBATCH options fix: nodes, ntasks, ntasks_per_node, gpus_per_node, cpus_per_task."""
    counts = {k: as_int(values.get(k)) for k in ("nodes", "ntasks", "ntasks_per_node", "gpus_per_node",
                                                 "cpus_per_task")}
    gres = re.fullmatch(r"gpu(?::[\w.-]+)?:(\d+)", values.get("gres") or "")
    counts["gpus_per_node"] = counts["gpus_per_node"] or (int(gres.group(1)) if gres else None)
    if counts["ntasks"] is None and counts["nodes"] and counts["ntasks_per_node"]:
        counts["ntasks"] = counts["nodes"] * counts["ntasks_per_node"]
    return {k: v for k, v in counts.items() if v}


def slurm_count(name: str, sbatch: dict) -> tuple[int, str] | None:
    """What Slurm sets $name to in a job with these #SBATCH options: (8, "#SBATCH --gpus-per-node 8"), or None."""
    key = _SLURM_FROM_SBATCH.get(name)
    counts = sbatch_counts(sbatch)
    if key is None or key not in counts:
        return None
    return counts[key], f"#SBATCH --{key.replace('_', '-')} {counts[key]}"


def count(value: str, sbatch: dict) -> tuple[int | None, str]:
    """A launcher option's number, and how it reads in the report: "8", "$SLURM_NNODES (#SBATCH --nodes 2)",
    "$GPUS, known at run time"."""
    n = as_int(value)
    if n is not None:
        return n, value
    ref = _SCHEDULER_VALUE.fullmatch(value or "")
    key = _SLURM_FROM_SBATCH.get(value.strip("${}")) if ref else None
    if key is not None and key in sbatch_counts(sbatch):
        n = sbatch_counts(sbatch)[key]
        return n, f"{value} (#SBATCH --{key.replace('_', '-')} {n})"
    if ref:
        return None, f"{value}, known at run time"
    return None, f"{value!r}, known at run time" if value else "(empty), known at run time"


def _product(*factors: tuple[str, str | None], sbatch: dict, default_one: bool = False) -> World:
    """Multiply the given options' counts; the source names each: "torchrun --nproc_per_node 8 × --nnodes 2"."""
    total, parts = 1, []
    for name, value in factors:
        n, shown = count(value, sbatch)
        parts.append(f"{name} {shown}")
        if n is None:
            return None, " × ".join(parts)
        total *= n
    return total, " × ".join(parts)


def torchrun_world(kind: str) -> Callable[[dict, dict], World]:
    def world(values: dict, sbatch: dict) -> World:
        nproc, nnodes = values.get("nproc_per_node", "1"), values.get("nnodes")
        if nnodes is None:
            n, source = _product((f"{kind} --nproc_per_node", nproc), sbatch=sbatch)
            return n, source if n is None else source + " on one node"
        return _product((f"{kind} --nproc_per_node", nproc), ("--nnodes", nnodes), sbatch=sbatch)
    return world


def deepspeed_world(values: dict, sbatch: dict) -> World:
    include = values.get("include")
    if include:
        slots = [spec.partition(":")[2] for spec in include.split("@")]
        if all(slots):
            return sum(len(s.split(",")) for s in slots), f"deepspeed --include {include}"
        return None, f"deepspeed --include {include}: every GPU of the hosts named, known at run time"
    gpus, nodes = values.get("num_gpus"), values.get("num_nodes")
    if gpus is None:
        return None, "deepspeed without --num_gpus: every GPU of each host, known at run time"
    if nodes is None and values.get("hostfile") is not None:
        return None, f"deepspeed --num_gpus {gpus} on each host of the hostfile {values['hostfile']}, " \
                     f"known at run time"
    if nodes is None:
        n, source = _product(("deepspeed --num_gpus", gpus), sbatch=sbatch)
        return n, source if n is None else source + " on one node (no --num_nodes or --hostfile)"
    return _product(("deepspeed --num_gpus", gpus), ("--num_nodes", nodes), sbatch=sbatch)


def mpirun_world(values: dict, sbatch: dict) -> World:
    if values.get("np") is not None:
        return _product(("mpirun -np", values["np"]), sbatch=sbatch)
    per_node, hosts = values.get("npernode"), values.get("host")
    if per_node is not None and hosts:
        names = [h.partition(":")[0] for h in hosts.split(",") if h]
        n, source = _product(("mpirun -npernode", per_node), sbatch=sbatch)
        return (None, source) if n is None else (n * len(names), f"{source} × {len(names)} hosts (-H {hosts})")
    if per_node is not None:
        return None, f"mpirun -npernode {per_node} on each host of the hostfile or allocation, known at run time"
    return None, "mpirun without -np: one process per slot of the hostfile or allocation, known at run time"


def srun_world(values: dict, sbatch: dict) -> World:
    """srun's own options, else the #SBATCH lines it inherits; Slurm starts one task per node by default."""
    if values.get("ntasks") is not None:
        return _product(("srun --ntasks", values["ntasks"]), sbatch=sbatch)
    nodes, nodes_from = _first(("srun", values), ("#SBATCH", sbatch), key="nodes")
    per_node, per_from = _first(("srun", values), ("#SBATCH", sbatch), key="ntasks_per_node")
    if nodes is not None and per_node is not None:
        return _product((f"{nodes_from} --nodes", nodes), (f"{per_from} --ntasks-per-node", per_node), sbatch=sbatch)
    if sbatch.get("ntasks") is not None:
        return _product(("#SBATCH --ntasks", sbatch["ntasks"]), sbatch=sbatch)
    if nodes is not None:
        n, source = _product((f"{nodes_from} --nodes", nodes), sbatch=sbatch)
        return n, source if n is None else source + ", one task per node"
    return None, "the Slurm allocation ($SLURM_NTASKS), known at run time"


def _first(*sources, key):
    for name, values in sources:
        if values.get(key) is not None:
            return values[key], name
    return None, None


def aprun_world(values: dict, sbatch: dict) -> World:
    if values.get("n") is not None:
        return _product(("aprun -n", values["n"]), sbatch=sbatch)
    return None, "aprun without -n: the PBS allocation, known at run time"


def jsrun_world(values: dict, sbatch: dict) -> World:
    """IBM LSF's jsrun (Summit, Sierra): --np tasks in all, else --nrs resource sets × --tasks_per_rs (default 1)."""
    if values.get("np") is not None:
        return _product(("jsrun --np", values["np"]), sbatch=sbatch)
    if values.get("nrs") is None:
        return None, "jsrun without --nrs or --np: every resource set of the LSF allocation, known at run time"
    return _product(("jsrun --nrs", values["nrs"]), ("--tasks_per_rs", values.get("tasks_per_rs", "1")),
                    sbatch=sbatch)


def bcprun_world(values: dict, sbatch: dict) -> World:
    """NVIDIA Base Command's bcprun: --npernode processes on each of --nnodes nodes (all the job's, NGC_ARRAY_SIZE,
    when not given)."""
    if values.get("npernode") is None:
        return None, "bcprun without --npernode: the job's GPUs per node, known at run time"
    if values.get("nnodes") is None:
        return None, (f"bcprun --npernode {values['npernode']} on each node of the job (NGC_ARRAY_SIZE), known at "
                      "run time")
    return _product(("bcprun --nnodes", values["nnodes"]), ("--npernode", values["npernode"]), sbatch=sbatch)


def msrun_world(values: dict, sbatch: dict) -> World:
    return _product(("msrun --worker_num", values.get("worker_num", "")), sbatch=sbatch)


# ----------------------------------------------------------------------------- the table
_TORCHRUN_SWITCHES = frozenset({"standalone", "no_python", "module", "m", "run_path", "use_env", "help", "h",
                                "virtual_local_rank"})
_TORCHRUN_VALUED = frozenset({
    "nproc_per_node", "nnodes", "node_rank", "master_addr", "master_port", "rdzv_backend", "rdzv_endpoint",
    "rdzv_id", "rdzv_conf", "max_restarts", "monitor_interval", "start_method", "role", "log_dir", "redirects",
    "r", "tee", "t", "local_ranks_filter", "logs_specs", "local_addr", "numa_binding", "event_log_handler",
    "signals_to_handle", "duplicate_stdout_filters", "duplicate_stderr_filters", "rdzv_timeout"})


def _torchrun(kind: str) -> LauncherSpec:
    return LauncherSpec(kind, SPAWNER, _TORCHRUN_VALUED, _TORCHRUN_SWITCHES, world=torchrun_world(kind),
                        no_python="no_python")


TORCHRUN = _torchrun("torchrun")
DIST_RUN = _torchrun("torch.distributed.run")
DIST_LAUNCH = _torchrun("torch.distributed.launch")
# Launchers that take torchrun's options (their own besides) and set torchrun's rank variables
TORCHRUN_KINDS = frozenset({"torchrun", "torch.distributed.run", "torch.distributed.launch", "hyperpodrun"})
# AWS SageMaker HyperPod's elastic agent: torchrun's options, and its own for the HyperPod training operator
HYPERPOD_OPTIONS = frozenset({"server_host", "server_port", "server_log_level", "pre_train_script", "pre_train_args",
                              "post_train_script", "post_train_args"})
HYPERPODRUN = LauncherSpec("hyperpodrun", SPAWNER, _TORCHRUN_VALUED | HYPERPOD_OPTIONS, _TORCHRUN_SWITCHES,
                           world=torchrun_world("hyperpodrun"), no_python="no_python")

DEEPSPEED = LauncherSpec(
    "deepspeed", SPAWNER,
    valued=frozenset({"hostfile", "include", "exclude", "num_nodes", "min_elastic_nodes", "max_elastic_nodes",
                      "num_gpus", "master_port", "master_addr", "node_rank", "launcher", "launcher_args",
                      "enable_each_rank_log", "autotuning", "comment", "account", "bind_core_list", "ssh_port"}),
    boolean=frozenset({"module", "no_python", "no_local_rank", "no_ssh", "no_ssh_check", "force_multi", "save_pid",
                       "elastic_training", "bind_cores_to_rank"}),
    aliases={"H": "hostfile", "i": "include", "e": "exclude", "num_accelerators": "num_gpus"},
    world=deepspeed_world, no_python="no_python")

MPIRUN = LauncherSpec(
    "mpirun", PER_RANK,
    valued=frozenset({"np", "n", "c", "N", "npernode", "ppn", "perhost", "x", "hostfile", "machinefile", "f",
                      "host", "H", "hosts", "bind_to", "map_by", "rank_by", "wdir", "wd", "prefix", "genvlist",
                      "envlist", "launcher", "bootstrap", "iface", "cpu_bind", "cpu_set", "depth", "d", "rankfile",
                      "output_filename", "path", "preload_files", "tune", "am", "mca_param_file",
                      "report_bindings_file", "default_hostfile", "stdin", "timeout", "cores", "ppr",
                      "display_map_file", "configfile"}),
    boolean=frozenset({"allow_run_as_root", "oversubscribe", "report_bindings", "tag_output", "timestamp_output",
                       "display_map", "display_allocation", "q", "quiet", "v", "verbose", "genvall", "genvnone",
                       "envall", "envnone", "nooversubscribe", "noprefix", "l", "prepend_rank",
                       "merge_stderr_to_stdout", "use_hwthread_cpus", "bind_to_core", "bind_to_socket", "bynode",
                       "byslot", "disable_auto_cleanup", "no_transfer", "enable_recovery"}),
    two_valued=frozenset({"mca", "gmca", "genv", "env"}),
    aliases={"n": "np", "c": "np", "N": "npernode", "ppn": "npernode", "perhost": "npernode", "H": "host",
             "hosts": "host", "machinefile": "hostfile", "f": "hostfile"},
    world=mpirun_world)

SRUN = LauncherSpec(
    "srun", PER_RANK,
    valued=frozenset({"n", "ntasks", "N", "nodes", "ntasks_per_node", "c", "cpus_per_task", "o", "output", "e",
                      "error", "J", "job_name", "p", "partition", "A", "account", "t", "time", "jobid", "mpi",
                      "cpu_bind", "gpus_per_task", "gpus", "G", "gres", "gpu_bind", "export", "w", "nodelist", "x",
                      "exclude", "mem", "mem_per_cpu", "mem_per_gpu", "m", "distribution", "container_image",
                      "container_mounts", "container_workdir", "container_name", "container_env", "hint",
                      "threads_per_core", "ntasks_per_socket", "cpus_per_gpu", "gpus_per_node", "C", "constraint",
                      "D", "chdir", "W", "wait", "q", "qos", "reservation", "network", "i", "input", "het_group",
                      "accel_bind", "begin", "dependency", "d", "comment", "signal", "tasks_per_node", "nodefile",
                      "F", "r", "relative", "T", "threads"}),
    boolean=frozenset({"l", "label", "u", "unbuffered", "exclusive", "overlap", "overcommit", "O", "pty", "v",
                       "verbose", "Q", "quiet", "X", "disable_status", "no_container_mount_home", "container_writable",
                       "container_remap_root", "no_container_remap_root", "no_container_entrypoint", "exact",
                       "whole", "multi_prog", "no_kill", "k", "container_readonly", "no_container_writable",
                       "container_mount_home", "I", "immediate", "propagate", "s", "oversubscribe",
                       "K", "kill_on_bad_exit"}),  # options whose value is optional are given with "=" when at all
    aliases={"n": "ntasks", "N": "nodes", "c": "cpus_per_task", "tasks_per_node": "ntasks_per_node",
             "D": "chdir", "w": "nodelist"},
    world=srun_world)

NUMACTL = LauncherSpec(
    "numactl", WRAPPER,
    valued=frozenset({"interleave", "i", "membind", "m", "cpunodebind", "N", "physcpubind", "C", "preferred", "p",
                      "preferred_many", "P", "weighted_interleave", "w", "offset", "length", "strict", "shmid",
                      "shm", "file", "huge", "touch", "mode", "policy"}),
    boolean=frozenset({"localalloc", "l", "all", "a", "balancing", "b", "show", "s", "hardware", "H"}))

UV_RUN = LauncherSpec(
    "uv run", WRAPPER,
    valued=frozenset({"with", "with_editable", "with_requirements", "python", "p", "project", "directory", "env_file",
                      "extra", "group", "no_group", "only_group", "package", "index", "default_index", "index_url",
                      "extra_index_url", "find_links", "f", "cache_dir", "config_file", "resolution", "prerelease",
                      "link_mode", "exclude_newer", "refresh_package", "reinstall_package", "upgrade_package", "P",
                      "index_strategy", "keyring_provider", "color", "allow_insecure_host", "python_platform"}),
    boolean=frozenset({"no_sync", "frozen", "locked", "isolated", "no_project", "all_extras", "no_dev", "dev",
                       "active", "no_active", "q", "quiet", "v", "verbose", "module", "m", "script", "s", "gui_script",
                       "no_editable", "exact", "inexact", "all_packages", "offline", "no_cache", "n", "refresh",
                       "upgrade", "U", "reinstall", "compile_bytecode", "no_config", "native_tls", "no_env_file",
                       "all_groups", "only_dev", "no_default_groups", "no_build_isolation", "no_build", "no_binary"}))

MSRUN = LauncherSpec(
    "msrun", SPAWNER,
    valued=frozenset({"worker_num", "local_worker_num", "master_addr", "master_port", "node_rank", "log_dir", "join",
                      "cluster_time_out", "bind_core", "sim_level", "sim_rank_id", "rank_table_file",
                      "worker_log_name", "tail_worker_log"}),
    world=msrun_world)

APRUN = LauncherSpec(
    "aprun", PER_RANK,
    valued=frozenset({"n", "N", "d", "cc", "j", "e", "S", "sl", "sn", "m", "p", "r", "L", "E", "F", "a", "t"}),
    boolean=frozenset({"b", "q", "T", "C", "R"}), world=aprun_world)

JSRUN = LauncherSpec(  # IBM Spectrum LSF (Summit): one copy of the command per task
    "jsrun", PER_RANK,
    valued=frozenset({"nrs", "tasks_per_rs", "cpu_per_rs", "gpu_per_rs", "rs_per_host", "rs_per_socket",
                      "latency_priority", "launch_distribution", "bind", "np", "smpiargs", "env", "erf_input",
                      "stdio_mode", "stdio_stdout", "stdio_stderr", "stdio_input", "chdir", "exit_on_error",
                      "progress", "appfile", "use_resources", "immediate", "memory_per_rs", "brs", "tasks_per_host",
                      "E", "D", "U", "o", "k", "h", "X", "P", "f", "i", "M", "S", "e"}),
    aliases={"n": "nrs", "a": "tasks_per_rs", "c": "cpu_per_rs", "g": "gpu_per_rs", "r": "rs_per_host",
             "K": "rs_per_socket", "l": "latency_priority", "d": "launch_distribution", "b": "bind", "p": "np"},
    dash_values=frozenset({"smpiargs"}), world=jsrun_world)

BCPRUN = LauncherSpec(  # NVIDIA Base Command Platform: bcprun --nnodes N --npernode P --cmd "python X.py ..."
    "bcprun", PER_RANK,
    valued=frozenset({"nnodes", "npernode", "cmd", "env", "workdir", "launcher", "binding", "logdir"}),
    boolean=frozenset({"async", "debug", "no_redirect", "version"}),
    aliases={"n": "nnodes", "p": "npernode", "c": "cmd"},
    world=bcprun_world, command_option="cmd")

NSYS = LauncherSpec(  # nsys profile: every option takes a value (-t cuda,nvtx -o FILE --stats=true)
    "nsys profile", WRAPPER,
    valued=frozenset({"t", "trace", "o", "output", "s", "sample", "c", "capture_range", "capture_range_end", "d",
                      "duration", "y", "delay", "f", "force_overwrite", "w", "show_output", "x", "stop_on_exit",
                      "b", "backtrace", "cuda_memory_usage", "cudabacktrace", "gpu_metrics_devices",
                      "gpu_metrics_frequency", "nvtx_capture", "stats", "export", "e", "env_var", "cpuctxsw",
                      "python_sampling", "pytorch", "python_backtrace", "session_new", "wait", "kill"}))

CONTAINER = LauncherSpec(  # singularity|apptainer exec [options] IMAGE COMMAND
    "apptainer exec", WRAPPER,
    valued=frozenset({"B", "bind", "env", "env_file", "H", "home", "pwd", "W", "workdir", "overlay", "S",
                      "scratch", "security", "network", "hostname", "mount", "app", "no_mount", "dns"}),
    boolean=frozenset({"nv", "rocm", "cleanenv", "e", "contain", "c", "containall", "C", "writable", "w",
                       "writable_tmpfs", "no_home", "fakeroot", "f", "nvccli", "u", "userns", "compat", "no_init",
                       "no_privs", "pid", "p", "ipc", "i", "net", "n", "boot", "disable_cache", "no_https",
                       "no_eval", "q", "quiet", "s", "silent", "v", "verbose", "d", "debug"}),
    operands=1)

SHIFTER = LauncherSpec(  # NERSC's containers: shifter --image=IMAGE [options] COMMAND (the image is an option)
    "shifter", WRAPPER,
    valued=frozenset({"image", "i", "volume", "V", "module", "m", "env", "e", "workdir", "w", "env_file"}),
    boolean=frozenset({"verbose", "v", "clearenv", "E", "entrypoint", "help", "h"}))

_BY_NAME = {"torchrun": TORCHRUN, "hyperpodrun": HYPERPODRUN, "deepspeed": DEEPSPEED, "mpirun": MPIRUN,
            "mpiexec": MPIRUN, "orterun": MPIRUN, "mpiexec.hydra": MPIRUN, "prterun": MPIRUN, "srun": SRUN,
            "numactl": NUMACTL, "msrun": MSRUN,
            "aprun": APRUN, "jsrun": JSRUN, "bcprun": BCPRUN, "shifter": SHIFTER}
_BY_TWO_WORDS = {("uv", "run"): UV_RUN, ("nsys", "profile"): NSYS, ("singularity", "exec"): CONTAINER,
                 ("apptainer", "exec"): CONTAINER}
LAUNCHERS = {spec.kind: spec for spec in (TORCHRUN, DIST_RUN, DIST_LAUNCH, HYPERPODRUN, DEEPSPEED, MPIRUN, SRUN,
                                           NUMACTL, UV_RUN, MSRUN, APRUN, JSRUN, BCPRUN, NSYS, CONTAINER,
                                           SHIFTER)}
ROLES = {kind: spec.role for kind, spec in LAUNCHERS.items()}
_DIST_MODULES = {"torch.distributed.run": DIST_RUN, "torch.distributed.launch": DIST_LAUNCH}
PYTHON = re.compile(r"python(\d+(\.\d+)?)?")


def match_launcher(fields: list[str]) -> tuple[LauncherSpec, int] | None:
    """The launcher these fields start with, and how many words name it (uv run: 2; python -u -m X: 4)."""
    name = os.path.basename(fields[0])
    if name in _BY_NAME:
        return _BY_NAME[name], 1
    if (name, fields[1] if len(fields) > 1 else "") in _BY_TWO_WORDS:
        return _BY_TWO_WORDS[(name, fields[1])], 2
    if PYTHON.fullmatch(name):
        k = 1
        while k < len(fields) and fields[k].startswith("-"):
            if fields[k] == "-m":
                spec = _DIST_MODULES.get(fields[k + 1] if k + 1 < len(fields) else "")
                return (spec, k + 2) if spec else None
            if fields[k] in ("-c", "-"):
                return None
            k += 2 if fields[k] in ("-W", "-X") else 1
        console = os.path.basename(fields[k]) if k < len(fields) else ""
        if console in _BY_NAME and _BY_NAME[console].role == SPAWNER:  # python $VENV/bin/deepspeed ...: its script
            return _BY_NAME[console], k + 1
    return None
