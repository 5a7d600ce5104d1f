"""What the launch script's variables did to the training flags, and what to do about it.

bash splits an unquoted `$VAR` on blanks and drops an empty one. MindSpeed-LLM's examples ship placeholders such
as TOKENIZER_PATH="your tokenizer path", so `--tokenizer-name-or-path ${TOKENIZER_PATH}` passes three words; an
unset `$1` or a variable set in a `source`d file leaves `--load` or `--data-path` with none. The reader tells
which variable the script writes after each option (LaunchScript.option_variables); here:

  a one-value flag followed by the words of one variable's value keeps them as one value, with a warning that
  names the variable (and says when it is still the example's placeholder) — the YAML then shows the value;
  a flag that takes several values is left as bash gives it, with the same warning for a placeholder;
  a flag left without a value gets a message naming the variable, why it is empty, and how to give it one.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .flag_spec import spec_for
from .registry import rule_for
from .shell.launch import outer_launcher
from .shell.launchers import slurm_count
from .shell.placeholders import is_placeholder
from .shell.runtime import SCHEDULER_VARIABLE


@dataclass
class Repaired:
    argv: List[str]
    warnings: List[str] = field(default_factory=list)            # loud: printed, and written into the YAML header
    problems: List[Tuple[str, str]] = field(default_factory=list)  # (flag, message): refuse, naming the variable


def _values_after(argv: List[str], k: int) -> int:
    end = k + 1
    while end < len(argv) and not (argv[end].startswith("--") and len(argv[end]) > 2):
        end += 1
    return end


def _placeholder(value: str) -> str:
    return " — it is still the example's placeholder" if is_placeholder(value) else ""


def repair_argv(argv: List[str], option_variables: Dict[str, object], line: int,
                sbatch: Optional[Dict[str, str]] = None, unread_sources: Sequence[str] = ()) -> Repaired:
    """unread_sources: files the script sources that are not here; a variable it does not set may come from them,
    so it is not taken for the caller's environment."""
    out = Repaired(list(argv))
    outside = lambda use: _from_outside(use, bool(unread_sources))  # noqa: E731
    k = 0
    while k < len(out.argv):
        token = out.argv[k]
        use = option_variables.get(token) if token.startswith("--") and "=" not in token else None
        spec = spec_for(token)
        if use is None and spec is not None and spec.takes_value and spec.nargs is None:
            _join_angle_placeholder(out, k, line)
        if use is None or spec is None or not spec.takes_value:
            k += 1
            continue
        end = _values_after(out.argv, k)
        words = out.argv[k + 1:end]
        value = use.value or ""
        parts = value.split()
        if not words and not value.strip():
            live = _rank_variable(token, use)
            job = _slurm_value(use, sbatch or {})
            if live:  # a per-rank launcher's variable: only the running process has it, and the flag is absorbed
                out.argv.insert(k + 1, live)
            elif job:  # $SLURM_GPUS_PER_NODE: what Slurm sets it to, from the script's own #SBATCH lines
                out.argv.insert(k + 1, str(job[1]))
                out.warnings.append(f"line {line}: {token} is given ${job[0]}, which Slurm sets from {job[2]}: "
                                    f"{job[1]} taken")
            elif token in RUN_TIME_PATH_FLAGS and outside(use):
                out.argv.insert(k + 1, _run_time_reference(use))
                out.warnings.append(_given_at_run_time(token, use, out.argv[k + 1], line))
            else:
                out.problems.append((token, _lost(token, use, line)))
        elif use.value is None and use.bare and words and not SCHEDULER_VARIABLE.fullmatch(use.name):
            if token in RUN_TIME_PATH_FLAGS and outside(use):
                out.argv[k + 1] = _run_time_reference(use) + words[0]
                out.warnings.append(_given_at_run_time(token, use, out.argv[k + 1], line))
            else:
                out.problems.append((token, _start_lost(token, use, words[0], line)))
        elif len(parts) > 1 and words[:len(parts)] == parts:
            if spec.nargs is None or _placeholder(value):  # a placeholder is one value, even for a list flag
                out.argv[k + 1:k + 1 + len(parts)] = [value.strip()]
                out.warnings.append(f"line {line}: {token} is given ${use.name} = {value!r}, which bash splits into "
                                    f"{len(parts)} words; kept as one value{_placeholder(value)}: set {use.name} "
                                    "to the real value")
            elif _placeholder(value):
                out.warnings.append(f"line {line}: {token} is given ${use.name} = {value!r}{_placeholder(value)}; "
                                    f"set {use.name} to the real value")
        k += 1
    return out


# Paths the old script takes from its arguments or its caller's environment (CHECKPOINT_PATH=$1, ${DATA_PATH}):
# the new script passes them to the entry point when it runs (launch_script.run_time_overrides), as the old one did.
RUN_TIME_PATH_FLAGS = frozenset((
    "--data-path", "--train-data-path", "--valid-data-path", "--test-data-path", "--data-cache-path", "--load",
    "--save", "--tokenizer-model", "--tokenizer-name-or-path", "--vocab-file", "--merge-file", "--tensorboard-dir",
    "--wandb-save-dir"))


def _from_outside(use, sources_unread: bool) -> bool:
    """The variable is the script's argument, or its caller's: not set by the script (nor set empty by it), and no
    sourced file that is not here could have set it."""
    return bool(use.argument) or (use.value is None and not sources_unread)


def _run_time_reference(use) -> str:
    """${N} for the script's argument N (the new script takes the old one's arguments), else ${NAME}."""
    return "${" + (use.argument or use.name) + "}"


def _given_at_run_time(flag: str, use, value: str, line: int) -> str:
    source = "the script's argument" if use.argument else "the caller's environment"
    return (f"line {line}: {flag} is {value}, from {source} (${use.name}: {use.because}); the new launch script "
            f"passes it to train_fsdp2.py when it runs, as the old one did: give it the same way (the YAML holds "
            f"{value} until then)")


def _slurm_value(use, sbatch: Dict[str, str]):
    """(variable, value, directive) when the empty variable is, or is set from, a Slurm variable that the
    script's #SBATCH lines fix ($SLURM_GPUS_PER_NODE from --gpus-per-node); None otherwise."""
    for name in [use.name] + re.findall(r"\$\{?(\w+)", use.because):
        found = slurm_count(name, sbatch)
        if found:
            return name, found[0], found[1]
    return None


def _rank_variable(flag: str, use) -> str:
    """`--local-rank $LOCAL_RANK` with LOCAL_RANK=$OMPI_COMM_WORLD_LOCAL_RANK: empty here, set in each process by
    the launcher. For a flag the engine absorbs (it reads the rank itself) that is no loss: the reference is kept
    as the value. Returns it, or "" when the flag matters or the variable is no rank variable."""
    rule = rule_for(flag)
    found = outer_launcher(use.because)
    return f"${found[1]}" if found and rule is not None and rule.status == "absorbed" else ""


def _join_angle_placeholder(out: Repaired, k: int, line: int) -> None:
    """`--vocab-file <PATH TO gpt-vocab.json>` written inside an options string (Megatron-LM's older examples): bash
    splits the placeholder into words; they are kept as one value, with a warning."""
    words = out.argv[k + 1:_values_after(out.argv, k)]
    if len(words) < 2 or not words[0].startswith("<") or ">" in words[0]:
        return
    end = next((j for j, word in enumerate(words) if ">" in word), None)
    if end is None:
        return
    value = " ".join(words[:end + 1])
    out.argv[k + 1:k + 2 + end] = [value]
    out.warnings.append(f"line {line}: {out.argv[k]} is given {value!r}, the example's placeholder, which bash splits "
                        f"into {end + 1} words; kept as one value: put the real value in the script")


def _lost(flag: str, use, line: int) -> str:
    if use.argument:
        how = "pass the script's arguments after --: tools/convert_args.py SCRIPT -- ARG1 ARG2 ..."
    else:
        how = f"give it a value: tools/convert_args.py --set {use.name}=VALUE SCRIPT, or set it in the script"
    return f"{flag} has no value (line {line}): it is written {flag} ${use.name}, and {use.because}; {how}"


def _start_lost(flag: str, use, rest: str, line: int) -> str:
    """`--save $HOME/ckpt` with HOME unset here: the path would lose its start and point elsewhere (/ckpt)."""
    if use.argument:
        how = "pass the script's arguments after --: tools/convert_args.py SCRIPT -- ARG1 ARG2 ..."
    else:
        how = (f"give it: tools/convert_args.py --set {use.name}=VALUE SCRIPT (your shell's own value: "
               f"--set {use.name}=\"${use.name}\")")
    return (f"{flag} is written {flag} ${use.name}..., and {use.because}: the value would become {rest!r}, "
            f"without its start (line {line}); {how}")


def explained(problems: List[str], repaired: Repaired) -> List[str]:
    """The translation's problems, with those of flags left without a value replaced by what emptied them."""
    lost = dict(repaired.problems)
    kept = [p for p in problems if not any(p.startswith((f"{flag}:", f"{flag} has no value")) for flag in lost)]
    return list(lost.values()) + kept


def flags_lost(launch) -> Optional[str]:
    """Why a launch carries no training flags at all, when variables the script leaves unset were to carry them
    (`python pretrain_gpt.py ${MEGATRON_PARAMS}` in a job that another script submits with them exported);
    None when it has flags, or nothing explains their absence."""
    if launch.argv:
        return None
    empty = [m.group(1) for w in launch.warnings if w.line <= launch.entry_line  # CMD="python X.py $PARAMS" above
             for m in [re.match(r"variable \$\{?(\w+)\}? is not set", w.message)] if m]
    empty = [n for n in dict.fromkeys(empty) if not SCHEDULER_VARIABLE.fullmatch(n)]
    if not empty:
        return None
    return (f"{launch.entry} is launched at line {launch.entry_line} with no arguments: "
            f"{', '.join('$' + n for n in empty)} expand to nothing here (the script does not set them; they come "
            f"from the environment or from the script that runs this one): convert that script, or give them: "
            f"tools/convert_args.py --set NAME='--num-layers ...' SCRIPT")
