#!/usr/bin/env python
"""Convert a Megatron-LM / MindSpeed-LLM launch script into an FSDP2 YAML and a new launch script.

    python tools/convert_args.py OLD.sh [-o NEW.yaml] [--script-out NEW.sh] [--force] [--set NAME=VALUE ...]
                                 [--allow-unknown-flags[=--foo,--bar]] [-- SCRIPT_ARGS...]
    python tools/convert_args.py --list-flags
    python tools/convert_args.py --to-megatron CONFIG.yaml
    python tools/convert_args.py tests/functional_tests/test_cases/gpt/CASE/model_config.yaml   (Megatron-LM)

The script is read, never executed. Exit 0 when every flag is mapped or absorbed;
exit 1 listing the reasons when any is rejected or unknown (nothing is written unless
--force, which writes the result without them).
"""
import argparse
import os
import shlex
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fsdp2_core.config import ConfigError, config_to_sections, dump_yaml, load_config, write_text_atomic  # noqa: E402
from megatron_compat.entry_points import judge_entry  # noqa: E402
from megatron_compat.functional_tests import launch_text, model_config, training_script  # noqa: E402
from megatron_compat.launch_script import render_launch_script, run_time_overrides  # noqa: E402
from megatron_compat.registry import list_flags_lines  # noqa: E402
from megatron_compat.reverse import to_megatron  # noqa: E402
from megatron_compat.script_values import explained, flags_lost, repair_argv  # noqa: E402
from megatron_compat.shell import ShellReadError, read_launch_script  # noqa: E402
from megatron_compat.shell.launch import sbatch_directives  # noqa: E402
from megatron_compat.translate import translate  # noqa: E402
from megatron_compat.unknown_flags import vouch_from  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", nargs="?", help="the Megatron launch script to convert")
    parser.add_argument("-o", "--output", help="YAML to write (default: beside the script, <name>.fsdp2.yaml)")
    parser.add_argument("--script-out", help="launch script to write (default: beside the script, <name>.fsdp2.sh)")
    parser.add_argument("--force", action="store_true",
                        help="write the result even when flags are rejected or unknown (without them)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a variable the script takes from its environment (e.g. a scheduler's SLURM_NNODES), "
                             "given a value for reading the script; repeatable")
    parser.add_argument("--allow-unknown-flags", nargs="?", const="", default=None, metavar="--FOO,--BAR",
                        help="ignore the unknown flags you vouch for (all, or those named), each listed as a "
                             "WARNING in the report and the YAML's header; rejected flags stay refused")
    parser.add_argument("--list-flags", action="store_true",
                        help="print every known flag: <flag>\\t<status>\\t<target or reason>")
    parser.add_argument("--to-megatron", metavar="CONFIG.yaml", help="print the Megatron flags for a canonical config")
    if "--" in argv:
        cut = argv.index("--")
        args = parser.parse_args(argv[:cut])
        args.script_args = argv[cut + 1:]
    else:
        args = parser.parse_args(argv)
        args.script_args = []
    return parser, args


def list_flags() -> int:
    sys.stdout.write("\n".join(list_flags_lines()) + "\n")
    return 0


def reverse(path: str) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"convert_args: {exc}", file=sys.stderr)
        return 1
    argv, leftover = to_megatron(cfg)
    print(" \\\n    ".join(_flag_lines(argv)))
    if leftover:
        print(f"# kept only in the YAML (no Megatron flag): {', '.join(leftover)}", file=sys.stderr)
    return 0


def _flag_lines(argv):
    """Group each flag with its values, one flag per line."""
    lines, current = [], []
    for token in argv:
        if token.startswith("--") and current:
            lines.append(" ".join(shlex.quote(t) for t in current))
            current = []
        current.append(token)
    if current:
        lines.append(" ".join(shlex.quote(t) for t in current))
    return lines


def _environment(assignments):
    environ = {}
    for item in assignments:
        name, eq, value = item.partition("=")
        if not eq or not name.isidentifier():
            raise ValueError(f"--set {item}: give NAME=VALUE, e.g. --set SLURM_NNODES=4")
        environ[name] = value
    return environ


def read_script_text(path: str) -> str:
    """The launch script's text; a directory or a binary file is refused, naming it.

    Bytes that are not UTF-8 (a comment in GBK or Latin-1) are replaced, with a warning naming the line. A line
    continued with a backslash before Windows line endings is refused: bash itself fails on it."""
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; give the launch script (the .sh file that starts training)")
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file (looked from {os.getcwd()}); give the launch script's path")
    with open(path, "rb") as fh:
        data = fh.read()
    if b"\x00" in data:
        raise ValueError(f"{path} is a binary file, not a shell script (it holds NUL bytes); give the launch script")
    if b"\\\r\n" in data:  # bash does not join a line ending in backslash + CR: the script fails in bash
        line = data[:data.index(b"\\\r\n")].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: the line ends in a backslash and a carriage return (Windows line endings): "
                         "bash does not continue such a line, so the script fails as published (syntax error); "
                         f"convert its line endings (dos2unix {path}, or sed -i 's/\\r$//' {path}) and run it again")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        print(f"{path}:{line}: bytes that are not UTF-8 were replaced by U+FFFD (a comment in another encoding?); "
              "check that line if it carries a flag", file=sys.stderr)
        return data.decode("utf-8", errors="replace")


def convert(args) -> int:
    try:
        text = read_script_text(args.script)
        environ = _environment(args.set)
        config = model_config(text) if args.script.endswith((".yaml", ".yml")) else None
        if config is not None:  # a Megatron-LM functional test's model_config.yaml: the launch its launcher makes
            text = launch_text(config, training_script(args.script, environ))
            print(f"# {args.script}: a Megatron-LM functional-test config, read as the launch its launcher "
                  "(_run_training.sh) builds from MODEL_ARGS and ENV_VARS")
        launch = read_launch_script(text, args.script_args, path=args.script, environ=environ)
    except (OSError, ShellReadError, ValueError) as exc:
        print(f"convert_args: {exc}", file=sys.stderr)
        return 1
    for warning in launch.warnings:
        print(f"{args.script}:{warning.line}: {warning.message}", file=sys.stderr)
    entry = os.path.basename(launch.entry)
    if entry == "train_fsdp2.py":
        print(f"{args.script}:{launch.entry_line}: already launches train_fsdp2.py with an FSDP2 YAML; "
              "nothing to convert")
        return 0
    lost = flags_lost(launch)
    if lost:
        print(f"convert_args: {args.script}: {lost}", file=sys.stderr)
        return 1
    judged = judge_entry(entry, launch.argv)
    try:
        vouch = vouch_from(args.allow_unknown_flags, environ={})
    except ValueError as exc:
        print(f"convert_args: {exc}", file=sys.stderr)
        return 2
    repaired = repair_argv(launch.argv, launch.option_variables, launch.entry_line,
                           sbatch_directives("\n".join(launch.directives)), launch.unread_sources)
    for warning in repaired.warnings:
        print(f"{args.script}: WARNING: {warning}", file=sys.stderr)
    result = translate(repaired.argv, world_size=launch.world_size, entry=judged.translate_as or "pretrain_gpt.py",
                       force=args.force, vouch=vouch, files=_script_files(launch, args.script))
    result.notes.extend(f"WARNING: {w}" for w in repaired.warnings)
    world = launch.world_size if launch.world_size else "unknown"
    print(f"# {args.script}: {entry} launched at line {launch.entry_line} by {launch.style}, "
          f"world size {world} ({launch.world_size_source})")
    if judged.note:
        print(f"# {judged.note}")
    print(result.report())
    entry_problem = f"{args.script}:{launch.entry_line}: {judged.problem}" if judged.problem else None
    problems = ([entry_problem] if entry_problem else []) + explained(result.problems(), repaired)
    if problems and not args.force:
        print("\nconvert_args: not converted, nothing written:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 1
    if result.config is None:
        print("\nconvert_args: no configuration could be built:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 1
    _write_outputs(args, launch, result, repaired.warnings)
    return 1 if problems else 0


def _script_files(launch, script):
    """Files the translation may read: those the script writes (here-documents), and a --deepspeed_config that
    lies beside the script when the path does not resolve from here."""
    files = dict(launch.files)
    for path in launch_values(launch.argv, "--deepspeed_config") + launch_values(launch.argv, "--deepscale_config"):
        beside = os.path.join(os.path.dirname(os.path.abspath(script)), path)
        if path not in files and not os.path.isfile(path) and os.path.isfile(beside):
            with open(beside, encoding="utf-8") as fh:
                files[path] = fh.read()
    return files


def launch_values(argv, flag):
    """The words after the last `flag` in argv, up to the next option."""
    if flag not in argv:
        return []
    start = len(argv) - argv[::-1].index(flag)
    end = start
    while end < len(argv) and not argv[end].startswith("--"):
        end += 1
    return argv[start:end]


def _write_outputs(args, launch, result, warnings=()):
    stem = os.path.splitext(args.script)[0]
    yaml_path = args.output or f"{stem}.fsdp2.yaml"
    script_path = args.script_out or f"{stem}.fsdp2.sh"
    header = f"# Generated by tools/convert_args.py from {args.script}\n"
    header += "".join(f"# WARNING: {flag} {' '.join(launch_values(launch.argv, flag))}".rstrip() +
                      " was ignored (unknown here; --allow-unknown-flags)\n" for flag in result.ignored)
    header += "".join(f"# WARNING: {warning}\n" for warning in warnings)
    overrides = run_time_overrides(config_to_sections(result.config, only_changed=True))
    header += "".join(f"# {flag[2:]} is known only when the new script runs (a command, or the old script's "
                      f"arguments or caller's environment): {os.path.basename(script_path)} computes it and passes "
                      f"it as {flag}\n" for flag in overrides[::2])
    write_text_atomic(yaml_path, header + dump_yaml(result.config, only_changed=True))
    script = render_launch_script(launch, "train_fsdp2.py", [yaml_path] + overrides, args.script)
    write_text_atomic(script_path, script)
    os.chmod(script_path, os.stat(script_path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"\nwrote {yaml_path}\nwrote {script_path}")


def main(argv=None) -> int:
    parser, args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.list_flags:
        return list_flags()
    if args.to_megatron:
        return reverse(args.to_megatron)
    if not args.script:
        parser.print_usage(sys.stderr)
        print("convert_args: give a launch script, --list-flags or --to-megatron CONFIG.yaml", file=sys.stderr)
        return 2
    return convert(args)


if __name__ == "__main__":
    sys.exit(main())
