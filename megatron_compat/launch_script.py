"""Write the new launch script that replaces a Megatron / MindSpeed one.

The new script keeps what the old one gave the environment (its exports, in
order, with their evaluated values), its distributed settings (as variables
that the environment may override) and its launchers: an `srun` or `mpirun`
script stays one, `numactl` / `uv run` stay in front, `deepspeed` stays
`deepspeed`; the training script becomes our entry point. Values are quoted
with `shlex.quote`, so `read_launch_script` reads the result back to the same
values (tests/test_shell_reader.py checks this); a distributed setting the old
script computed at run time (`$(scontrol ...)`, a scheduler's `$SLURM_NNODES`)
is written so it is computed at run time again.
"""
from __future__ import annotations

import os
import re
import shlex

from fsdp2_core.config.run_time_values import RUN_TIME_REFERENCE
from megatron_compat.shell import LaunchScript
from megatron_compat.shell.launchers import LAUNCHERS, PER_RANK, ROLES, option_key
from megatron_compat.shell.lex import Unterminated, scan_backtick, scan_brace, scan_paren
from megatron_compat.shell.output import log_files
from megatron_compat.shell.result import Output

__all__ = ["RunTime", "render_launch_script", "run_time_overrides"]

# (variable in the new script, LaunchScript attribute, torchrun flag, default when the old script had none)
_DISTRIBUTED = [
    ("NPROC_PER_NODE", "nproc_per_node", "--nproc_per_node", "1"),
    ("NNODES", "nnodes", "--nnodes", "1"),
    ("NODE_RANK", "node_rank", "--node_rank", "0"),
    ("MASTER_ADDR", "master_addr", "--master_addr", "localhost"),
    ("MASTER_PORT", "master_port", "--master_port", "29500"),
]
# deepspeed switches the new command sets itself: our entry points take no --local_rank and are scripts
_DEEPSPEED_DROPPED = {"--no_python", "--no_local_rank", "--module"}
_LIVE = re.compile(r"\$\(|`|\$\{?[A-Za-z_]")
_REFERENCE = re.compile(r"\$\{?([A-Za-z_]\w*)")
_ARITHMETIC = re.compile(r"\$\(\((.*?)\)\)", re.S)


def _references(text: str) -> list[str]:
    """The variables a run-time value uses: $NAME / ${NAME...}, and the bare names inside $(( ))."""
    names = _REFERENCE.findall(text)
    for expr in _ARITHMETIC.findall(text):
        names += re.findall(r"(?<![\w$])[A-Za-z_]\w*", expr)
    return names
_RANKS_FROM = {"srun": "SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID",
               "mpirun": "OMPI_COMM_WORLD_* (Open MPI) or PMI_RANK / PMI_SIZE (MPICH, Intel MPI)",
               "aprun": "PMI_RANK / PMI_SIZE (Cray PALS)",
               "jsrun": "OMPI_COMM_WORLD_* (IBM Spectrum MPI) or JSM_NAMESPACE_*",
               "bcprun": "RANK / WORLD_SIZE / LOCAL_RANK, or OMPI_COMM_WORLD_* under bcprun's mpirun launcher"}


def _unevaluated(value: str) -> bool:
    """A command substitution, or a ${NAME} the conversion left for the run (script_values.RUN_TIME_PATH_FLAGS)."""
    return "$(" in value or "`" in value or bool(RUN_TIME_REFERENCE.search(value))


class RunTime(str):
    """An argument of the entry point that the new script computes when it runs (written double-quoted, its
    command substitutions and variables live)."""


def run_time_overrides(sections: dict) -> list[str]:
    """`--section.field VALUE` for each text field of the config that holds a command substitution the conversion
    did not run (`--save ckpt-$(date +%F)`): the new script computes it at run time, as the old one did."""
    out: list[str] = []
    for section, fields in sections.items():
        for name, value in fields.items():
            if isinstance(value, str) and _unevaluated(value):
                out += [f"--{section}.{name}", RunTime(value)]
    return out


def _with_inherited(template: str) -> str:
    """Double-quote a value, writing the caller's variables (marked \\x00NAME\\x00) back as ${NAME:-}."""
    parts = template.split("\x00")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append("${" + part + ":-}")
        else:
            out.append(_escape_dquoted(part))
    return '"' + "".join(out) + '"'


def _escape_dquoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")


def _live(value: str) -> str:
    """Double-quote a value whose $(...), `...` and $NAME parts run again when the new script runs."""
    out, i = [], 0
    while i < len(value):
        try:
            if value.startswith("$(", i):
                j = scan_paren(value, i)
            elif value.startswith("${", i):
                j = scan_brace(value, i)
            elif value[i] == "`":
                j = scan_backtick(value, i)
            elif value[i] == "$" and re.match(r"[A-Za-z_]", value[i + 1:i + 2]):
                j = re.match(r"\$[A-Za-z_]\w*", value[i:]).end() + i
            else:
                j = None
        except Unterminated:
            j = None
        if j is None:
            out.append(_escape_dquoted(value[i]))
            i += 1
        else:
            out.append(value[i:j])
            i = j
    return '"' + "".join(out) + '"'


def _from_start_folder(value: str, launch: LaunchScript) -> str:
    """A path in the folder convert_args ran in, which the old script read as its starting folder (`pwd`, $PWD,
    $PBS_O_WORKDIR): written as that again ($PWD), which is the same folder when the new script is started (or its
    job submitted) where the old one was."""
    folder = launch.start_folder
    if not folder or folder == "/":
        return value
    return re.sub(rf"(?<![\w/.-]){re.escape(folder)}(?=/|$|[,:\s])", lambda _: launch.start_folder_as, value)


def _word(value: str) -> str:
    """A value as one word of the new script: run-time parts kept live, everything else quoted."""
    return _live(value) if _LIVE.search(value) else shlex.quote(value)


# What a launcher tells each process about its rank; a per-rank launcher (srun, mpirun, aprun) gives each process
# its own, which the old script copied into these per task (RANK=$SLURM_PROCID) or once for all
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK")


def kept_exports(launch: LaunchScript) -> dict[str, str]:
    """The exports the new script writes: under a per-rank launcher, not the rank variables (one value exported
    for every process is wrong, and the entry point reads each process's rank from the launcher itself); and
    where the ranks meet when --dist-url gave it."""
    kept = dict(launch.exports)
    if launch.started_by or any(ROLES.get(s.kind) == PER_RANK for s in launch.wrappers):
        kept = {n: v for n, v in kept.items() if n not in _RANK_VARIABLES}
    return {**kept, **_dist_url_rendezvous(launch, kept)}


def _dist_url(launch: LaunchScript) -> str | None:
    return launch.argv[launch.argv.index("--dist-url") + 1] if "--dist-url" in launch.argv[:-1] else None


def _dist_url_rendezvous(launch: LaunchScript, exports: dict[str, str]) -> dict[str, str]:
    """HYGON's per-rank scripts name where the ranks meet with --dist-url tcp://HOST:PORT (torch's init_method);
    the entry point meets at MASTER_ADDR:MASTER_PORT, so the new script exports them (unless the old one did)."""
    url = _dist_url(launch)
    if url is None or "MASTER_ADDR" in exports or not url.startswith("tcp://"):
        return {}
    host, _, port = url.removeprefix("tcp://").rpartition(":")
    return {"MASTER_ADDR": host, "MASTER_PORT": port} if host and port else {}


def render_launch_script(launch: LaunchScript, entry: str, entry_args: list[str], source_path: str) -> str:
    """Return the text of a bash script that launches `entry entry_args...` like `launch` did."""
    lines = [
        "#!/usr/bin/env bash",
        *launch.directives,  # the batch scheduler reads these before the first command
        f"# Generated by tools/convert_args.py from {source_path} (launch line {launch.entry_line}).",
        "# The training flags now live in the config this script passes to the entry point.",
    ]
    if launch.setup_sources:  # before `set -u`: a profile or an activate script may read unset variables
        lines += [f"# Environment set up as {source_path} did"] + launch.setup_sources
    lines += ["set -euo pipefail", ""]
    per_rank = next((s.kind for s in launch.wrappers if ROLES.get(s.kind) == PER_RANK), None) or launch.started_by
    exports = kept_exports(launch)
    if exports:
        lines.append(f"# Environment kept from {source_path}")
        for name, value in exports.items():
            line = launch.export_lines.get(name)
            if _unevaluated(value):
                lines.append(f"# line {line} of {source_path} computes this with a command that was not run "
                             f"at conversion; it runs when this script runs")
            if name not in launch.exports:
                lines.append(f"# {name}: where the ranks meet, from --dist-url {_dist_url(launch)}")
            template = launch.export_templates.get(name)
            here = _from_start_folder(value, launch)
            shown = _live(here) if _unevaluated(value) or here != value else shlex.quote(value)
            lines.append(f"export {name}={_with_inherited(template) if template else shown}")
        lines.append("")
    url = _dist_url(launch)
    if url is not None and "MASTER_ADDR" not in exports:
        lines += [f"# FIXME: --dist-url {url!r} names no tcp://HOST:PORT here; export MASTER_ADDR and MASTER_PORT "
                  f"(where rank 0 listens) before running this script", ""]
    dropped = [name for name in launch.exports if name not in exports]
    if dropped:
        lines += [f"# Not kept: {', '.join(dropped)}: each process {per_rank} starts finds its own rank ({entry} "
                  f"reads {_RANKS_FROM[per_rank]}); one value exported for all of them would be wrong", ""]
    command = [" ".join([shlex.quote(w) for w in stage.program] +
                        [_word(_from_start_folder(a, launch)) for a in _without_command(stage)])
               for stage in launch.wrappers]
    settings: list[str] = []
    if launch.launcher == "deepspeed":
        command.append(" ".join(["deepspeed"] + [_word(a) for a in _deepspeed_args(launch.launcher_args)]
                                + ["--no_local_rank"]))
    elif launch.launcher == "python" and per_rank:
        if launch.started_by:  # the guard stops a run started without that launcher, and marks the script per-rank
            settings += [f"# {source_path} is started once per rank by {per_rank} from outside it; so is this script",
                         f': "${{{launch.rank_variable}:?start this script once per rank with {per_rank}, as '
                         f'{os.path.basename(source_path)} was}}"']
        settings += [f"# Each process {per_rank} starts is one rank: {entry} reads {_RANKS_FROM[per_rank]}", ""]
        command.append(_word(_from_start_folder(launch.rank_script, launch)) if launch.rank_script else
                       " ".join(["python"] + [shlex.quote(a) for a in launch.launcher_args]))
    else:
        if launch.launcher == "msrun":
            settings += [f"# {source_path} started MindSpeed-LLM's MindSpore backend with msrun; the engine is "
                         f"PyTorch, so torchrun starts the same processes (msrun --local_worker_num per node, "
                         f"--worker_num in all)"]
        command += _torchrun(launch, settings, source_path, per_node=per_rank) + _kept_launcher_options(launch)
    command.append(shlex.quote(entry))
    command.extend(_live(a) if isinstance(a, RunTime) else shlex.quote(a) for a in entry_args)
    reserved = {var for var, _, _, _ in _DISTRIBUTED} if "# Distributed settings" in "".join(settings) else set()
    definitions = _script_variables(launch, settings + command, reserved)
    if definitions:
        lines += [f"# Variables of {source_path} that the settings below compute from at run time"] + definitions + [""]
    lines += settings
    lines += _log_directories(launch, source_path)
    lines.append(_with_outputs(" \\\n    ".join(_command_into_its_option(launch, command)), launch.outputs))
    return "\n".join(lines) + "\n"


def _option_groups(args: list[str], spec) -> list[tuple[str | None, list[str]]]:
    """A launcher's words, each option with the value it takes: (canonical key, words); (None, [word]) otherwise."""
    groups, k = [], 0
    while k < len(args):
        word = args[k]
        key = spec.canonical(option_key(word)) if word.startswith("-") else None
        takes_value = key is not None and "=" not in word and key in spec.valued and k + 1 < len(args)
        groups.append((key, args[k:k + 2] if takes_value else [word]))
        k += len(groups[-1][1])
    return groups


def _without_command(stage) -> list[str]:
    """A launcher's options without the one that held the old command (bcprun's --cmd / -c): a new one is given."""
    spec = LAUNCHERS.get(stage.kind)
    if spec is None or spec.command_option is None:
        return list(stage.args)
    return [w for key, words in _option_groups(stage.args, spec) if key != spec.command_option for w in words]


def _command_into_its_option(launch: LaunchScript, command: list[str]) -> list[str]:
    """bcprun runs the command given as its --cmd string: what follows it becomes that string, its variables
    expanded by this script (double quotes)."""
    for k, stage in enumerate(launch.wrappers):
        spec = LAUNCHERS.get(stage.kind)
        if spec is not None and spec.command_option:
            inner = " ".join(command[k + 1:]).replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`")
            return command[:k + 1] + [f'--{spec.command_option.replace("_", "-")} "{inner}"']
    return command


def _script_variables(launch: LaunchScript, texts: list[str], reserved: set[str]) -> list[str]:
    """Definitions of the old script's own (unexported) variables that run-time parts of `texts` refer to,
    each after the variables it refers to in turn."""
    out, seen = [], set()

    def visit(name: str) -> None:
        if name in seen or name in reserved or name in launch.exports or name not in launch.variables:
            return
        seen.add(name)
        value = re.sub(r"\x00(\w+)\x00", lambda m: "${" + m.group(1) + "}", launch.variables[name])
        for ref in _references(value):
            visit(ref)
        out.append(f"{name}={_word(value)}")

    for text in texts:
        if not text.startswith("#"):
            for ref in _references(text):
                visit(ref)
    return out


def _torchrun(launch: LaunchScript, lines: list[str], source_path: str, per_node: str | None) -> list[str]:
    """torchrun with the distributed settings as overridable variables. Started once per node by srun/mpirun,
    it meets its peers through a c10d rendezvous, so no per-node rank has to be written here."""
    settings = [s for s in _DISTRIBUTED if not (per_node and s[0] == "NODE_RANK")]
    example = "NNODES=2 MASTER_ADDR=10.0.0.1" if per_node else "NODE_RANK=1 MASTER_ADDR=10.0.0.1"
    lines.append(f"# Distributed settings from {source_path}; override one from the environment, "
                 f"e.g. {example} bash THIS.sh")
    absent = set() if per_node else {var for var, attr, _, _ in settings if getattr(launch, attr) is None}
    if absent:
        lines.append(f"# Not given by {source_path}: {', '.join(v for v, _, _, _ in settings if v in absent)}; passed "
                     "only when set, so torchrun's own defaults (and the PET_* variables a Kubernetes PyTorchJob "
                     "sets) apply")
    for var, attr, _, default in settings:
        value = getattr(launch, attr)
        value = "" if var in absent else default if value is None or value == "" else value
        lines.append(f"{var}=${{{var}:-{_word(value) if value else ''}}}")
    lines.append("")
    program = "hyperpodrun" if launch.launcher == "hyperpodrun" else "torchrun"  # HyperPod's operator needs its own
    if per_node:
        return [program, '--nproc_per_node "$NPROC_PER_NODE"', '--nnodes "$NNODES"', "--rdzv_backend c10d",
                '--rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT"']
    return [program] + [f'${{{var}:+{flag} "${var}"}}' if var in absent else f'{flag} "${var}"'
                        for var, _, flag, _ in settings]


# torchrun options the new line writes itself (the distributed settings, the rendezvous) or that concern how the old
# program was run (a module, no python, torch.distributed.launch's --use_env): not copied from the old line
_REWRITTEN = frozenset({"nproc_per_node", "nnodes", "node_rank", "master_addr", "master_port", "rdzv_backend",
                        "rdzv_endpoint", "no_python", "module", "m", "run_path", "use_env"})


def _kept_launcher_options(launch: LaunchScript) -> list[str]:
    """The old torchrun (or hyperpodrun) line's other options, as given: --max_restarts, --tee, --log_dir, --rdzv_id,
    hyperpodrun's server and pre-/post-training scripts, ... (nothing dropped silently)."""
    spec = LAUNCHERS.get(launch.launcher)
    if spec is None or launch.launcher == "msrun":
        return []
    return [" ".join(_word(w) for w in words) for key, words in _option_groups(launch.launcher_args, spec)
            if key is not None and key not in _REWRITTEN]


def _deepspeed_args(args: list[str]) -> list[str]:
    return [a for a in args if a.partition("=")[0] not in _DEEPSPEED_DROPPED]


def _log_directories(launch: LaunchScript, source_path: str) -> list[str]:
    """`mkdir -p` for the folders of the files the old launch line logged to (it created them earlier, and a
    redirection or tee into a missing folder fails)."""
    folders = [os.path.dirname(f) for f in log_files(launch.outputs)]
    folders = list(dict.fromkeys(f for f in folders if f not in ("", ".", "/")))
    if not folders:
        return []
    return [f"# Folders of the files the launch line of {source_path} logged to",
            "mkdir -p " + " ".join(_word(f) for f in folders), ""]


def _redirections(redirects: list[tuple[str, str]]) -> list[str]:
    """`2>&1` stays as written; a file target is one word of the new script."""
    return [op + (target if op.endswith("&") else " " + _word(target)) for op, target in redirects]


def _with_outputs(command: str, outputs: list[Output]) -> str:
    """The command with the old launch line's redirections and pipes, innermost level next to the command; an
    outer level (a redirection around `eval "$CMD"`) applies to the whole inner command, so it is grouped."""
    for k, output in enumerate(reversed(outputs)):
        if k:
            command = "{ " + command + "; }"
        pipes = [" ".join([_word(w) for w in words] + _redirections(redirects))
                 for words, redirects in output.pipe_into]
        command = " ".join([command] + _redirections(output.redirects))
        if pipes:
            command += " | " + " | ".join(pipes)
    return command

