"""Where the launch line's output goes: its output redirections and the commands it pipes into, expanded."""
from __future__ import annotations

import re

from .result import Output

# Redirections of output; input redirections and here-documents feed the command and are not kept
_OUTPUT_OPERATORS = (">", ">>", ">|", "&>", "&>>", ">&")


def launch_outputs(shell) -> list[Output]:
    """The output plumbing of the command `shell` is running, from the outermost shell (a `bash -c` or `eval`
    runs inside its caller's redirections) to the innermost command."""
    chain = []
    while shell is not None:
        chain.append(shell)
        shell = shell.parent
    outputs = []
    for sh in reversed(chain):
        for frame in sh.output_frames:
            output = _expanded(sh, frame)
            if output.redirects or output.pipe_into:
                outputs.append(output)
    return outputs


def _expanded(shell, frame) -> Output:
    pipe_into = []
    for command in frame.tail:
        words = [field for w in command.words if hasattr(w, "raw") for field in _fields(shell, w)]
        if words:
            pipe_into.append((words, _output_redirects(shell, command.redirects)))
    return Output(_output_redirects(shell, frame.redirects), pipe_into)


def _output_redirects(shell, redirects) -> list[tuple[str, str]]:
    return [(op, " ".join(_fields(shell, word))) for op, word in redirects
            if op.lstrip("0123456789") in _OUTPUT_OPERATORS]


def _fields(shell, word) -> list[str]:
    """The word expanded; a variable the script never set (a scheduler's $SLURM_PROCID) stays a reference, to be
    filled in when the new script runs."""
    template = shell.template_word(word.raw, word.line)
    if template is not None:
        return [re.sub(r"\x00(\w+)\x00", lambda m: "${" + m.group(1) + "}", template)]
    return shell.expand_word(word)


def log_files(outputs: list[Output]) -> list[str]:
    """The files the output is written to (redirection targets and tee's files), in order, once each."""
    files = []
    for output in outputs:
        files += [target for op, target in output.redirects if not op.endswith("&") and target != "/dev/null"]
        for words, redirects in output.pipe_into:
            if words[0].rsplit("/", 1)[-1] == "tee":
                files += [w for w in words[1:] if not w.startswith("-")]
            files += [target for op, target in redirects if not op.endswith("&") and target != "/dev/null"]
    return list(dict.fromkeys(files))
