"""What bash itself says about a script our parser cannot read: a syntax error bash shares is the script's own
(it fails as published); one bash accepts is a limit of this reader, and the message says so."""
from __future__ import annotations

import re
import shutil
import subprocess

from .result import ShellReadError


def bash_verdict(text: str) -> str | None:
    """bash -n's first complaint about `text` ("" when bash parses it), or None when bash is not at hand."""
    bash = shutil.which("bash")
    if bash is None:
        return None
    try:
        done = subprocess.run([bash, "-n"], input=text, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    return (re.sub(r"^\S*bash: ", "", lines[0]) if lines else "error") if done.returncode else ""


def with_bash_verdict(exc: ShellReadError, text: str) -> ShellReadError:
    """`exc` (a syntax error of ours) with bash's verdict on the same text added."""
    verdict = bash_verdict(text)
    if verdict is None:
        return exc
    if verdict:
        return ShellReadError(f"{exc}: a syntax error that bash reports too ({verdict}), so the script fails as "
                              f"published; fix it (check with bash -n SCRIPT) and convert again")
    return ShellReadError(f"{exc}: bash reads this script, so this is a limit of the reader here; please report it, "
                          f"and meanwhile give the flags directly (pretrain_gpt.py FLAGS or a YAML config)")
