"""Read a Megatron-LM / MindSpeed-LLM bash launch script without running it.

`read_launch_script(text, script_args)` tokenizes the script, parses it into a
small tree (simple commands, pipelines, `&&`/`||` chains, `if/elif/else`,
`{ }` / `( )` groups, functions) and evaluates that tree in a pretend shell:
assignments, `export`, parameter expansion, `$(( ))` arithmetic, `[ ]`/`[[ ]]`
tests, arrays and bash's word splitting are evaluated; nothing is executed.
What cannot be evaluated without running something (command substitution,
`source`, loops, `eval`, file tests, ...) is left as literal text and reported
in `LaunchScript.warnings` with its line number.

The launch line is the command that starts `torchrun`, `python -m
torch.distributed.launch|run` or `python SCRIPT.py` on the path the script
actually takes. When several run, a distributed launcher wins over plain
python, and among equals the last one wins (a preprocessing step usually comes
before training); the others are reported as warnings.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Sequence

from .evaluate import Exit, Shell
from .lex import Lexer
from .parse import Parser
from .result import LaunchScript, ShellReadError

_BOOLEAN_LAUNCHER_FLAGS = {"standalone", "no_python", "module", "m", "use_env", "run_path", "help", "h"}


@dataclass
class Launch:
    priority: int
    result: LaunchScript


def as_launch(shell: Shell, fields: list[str], temp_env: dict, line: int) -> Launch | None:
    """The launch this command is, if it starts training: torchrun, python -m torch.distributed.*, python X.py."""
    name = os.path.basename(fields[0])
    rest = fields[1:]
    if name == "torchrun":
        kind, priority = "torchrun", 2
    elif re.fullmatch(r"python(\d+(\.\d+)?)?", name):
        python_opts, k = [], 0
        while k < len(rest) and rest[k].startswith("-"):
            opt = rest[k]
            if opt in ("-c", "-"):
                return None
            if opt == "-m":
                module = rest[k + 1] if k + 1 < len(rest) else ""
                if module not in ("torch.distributed.launch", "torch.distributed.run"):
                    return None
                kind, priority, rest = module, 2, rest[k + 2:]
                break
            python_opts.append(opt)
            if opt in ("-W", "-X") and k + 1 < len(rest):
                python_opts.append(rest[k + 1])
                k += 1
            k += 1
        else:
            if k >= len(rest):
                return None
            return Launch(1, make_launch(shell, "python", python_opts, rest[k], rest[k + 1:],
                                               temp_env, line))
    else:
        return None
    k, launcher_args = 0, []
    while k < len(rest) and rest[k].startswith("-"):
        opt = rest[k]
        launcher_args.append(opt)
        key = opt.lstrip("-").replace("-", "_")
        if "=" not in opt and key not in _BOOLEAN_LAUNCHER_FLAGS and k + 1 < len(rest):
            launcher_args.append(rest[k + 1])
            k += 1
        k += 1
    if k >= len(rest):
        shell.warn(line, f"{kind} without a script to run; not taken as the launch line")
        return None
    return Launch(priority, make_launch(shell, kind, launcher_args, rest[k], rest[k + 1:], temp_env, line))

def make_launch(shell: Shell, kind, launcher_args, entry, argv, temp_env, line) -> LaunchScript:
    opts: dict[str, str] = {}
    k = 0
    while k < len(launcher_args):
        opt = launcher_args[k]
        key, eq, value = opt.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if not eq and k + 1 < len(launcher_args) and key not in _BOOLEAN_LAUNCHER_FLAGS:
            value = launcher_args[k + 1]
            k += 1
        opts[key] = value
        k += 1
    master_addr, master_port = opts.get("master_addr"), opts.get("master_port")
    if "rdzv_endpoint" in opts and ":" in opts["rdzv_endpoint"]:
        host, _, port = opts["rdzv_endpoint"].rpartition(":")
        master_addr, master_port = master_addr or host, master_port or port
    exports, export_lines, inherited = {}, {}, {}
    for n, export_line in shell.exported.items():
        value = shell.vars.get(n)
        if isinstance(value, str):
            exports[n], export_lines[n] = value, export_line
            if n in shell.templates:
                inherited[n] = shell.templates[n]
    for n, value in temp_env.items():
        exports[n], export_lines[n] = value, line
    return LaunchScript(
        path=shell.path, entry=entry, entry_line=line, argv=list(argv), launcher=kind,
        launcher_args=list(launcher_args), nproc_per_node=opts.get("nproc_per_node"),
        nnodes=opts.get("nnodes"), node_rank=opts.get("node_rank"),
        master_addr=master_addr, master_port=master_port,
        exports=exports, export_lines=export_lines, export_templates=inherited)


def read_launch_script(text: str, script_args: Sequence[str] = (), path: str = "<script>") -> LaunchScript:
    """Read a bash launch script without executing it; see the module docstring."""
    lexer = Lexer(text, path)
    tokens = lexer.tokenize()
    nodes = Parser(tokens, path).parse_program()
    launches: list[Launch] = []

    def on_command(shell: Shell, fields: list[str], temp_env: dict, line: int) -> None:
        launch = as_launch(shell, fields, temp_env, line)
        if launch is not None:
            launches.append(launch)

    shell = Shell(path, script_args, on_command)
    for line in lexer.skipped_heredocs:
        shell.warn(line, "here-document skipped (its text is not read)")
    try:
        shell.run_list(nodes)
    except Exit:
        pass
    if not launches:
        skipped = sorted({w.line for w in shell.warnings if "not evaluated" in w.message})
        hint = f" (lines not evaluated: {', '.join(map(str, skipped))})" if skipped else ""
        raise ShellReadError(
            f"{path}: no launch line of torchrun, python -m torch.distributed.launch|run or "
            f"python SCRIPT.py was found on the path the script takes{hint}; "
            f"pass the script that starts training, or give the flags directly")
    best = max(range(len(launches)), key=lambda k: (launches[k].priority, k))
    chosen = launches[best].result
    for k, launch in enumerate(launches):
        if k != best:
            shell.warn(launch.result.entry_line,
                       f"another launch ({launch.result.launcher} {launch.result.entry}) ignored; "
                       f"line {chosen.entry_line} is taken as the training launch")
    chosen.warnings = sorted(shell.warnings, key=lambda w: w.line)
    return chosen
