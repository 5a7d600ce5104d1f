"""Other scripts a launch script reads or runs (`source conf/args.sh`, `. ./env.sh`, `bash launch.sh`,
`srun ./launch.sh`): found on disk, they are read like the script itself, so a launch line or the flags they hold
are seen. Relative names are looked up from the folder the script runs in (bash's rule), then from the script's
own folder and up to four folders above it (a repository's scripts are often run from its root, and convert_args
may run elsewhere). An absolute path that is not here (the author's cluster) is looked for by its last components
in those folders: the same file of this checkout, said in the warning that names where it was read from."""
from __future__ import annotations

import os

_MAX_BYTES = 1 << 20  # a shell script, not a data file
# Files that set up the machine's environment (a virtualenv, conda, modules, the CANN toolkit, a shell profile) rather
# than the job: not read; the new script sources them as the old one did
_SETUP_DIRS = ("/etc/", "/usr/", "/opt/")
_SETUP_NAMES = (".bashrc", ".bash_profile", ".profile", "activate", "conda.sh", "set_env.sh", "modules.sh")


def sets_up_the_machine(name: str) -> bool:
    """Whether `source name` prepares the environment (kept as a line of the new script) rather than the job."""
    base = os.path.basename(name.rstrip("/"))
    return (name.startswith(_SETUP_DIRS) or name.startswith("~") or base in _SETUP_NAMES
            or base.startswith(".") or "/bin/" in name or "$(" in name or "<(" in name)


def find_script(shell, name: str) -> tuple[str, str] | None:
    """(path, text) of the script `name` refers to, or None when it is not a readable text file here."""
    if not name or name.startswith("-"):
        return None
    written = _written_by_the_script(shell, name)
    if written is not None:
        return written
    folders = _folders_up(os.path.dirname(os.path.abspath(top_path(shell))))
    candidates = [name] if os.path.isabs(name) else [os.path.join(shell.cwd, name)] + [
        os.path.join(folder, name) for folder in folders]
    for path in candidates + _in_this_checkout(name, folders):
        text = _read_text(path)
        if text is not None:
            return os.path.normpath(path), text
    return None


def _in_this_checkout(name: str, folders: list[str]) -> list[str]:
    """Where an absolute path of the author's cluster (/scratch/me/Megatron-LM/conf/args.sh) may be in this
    checkout: its last two or more components, below the script's folder or the folders above it (`folders`)."""
    parts = [p for p in name.split("/") if p]
    if not os.path.isabs(name) or len(parts) < 3:
        return []
    return [os.path.join(folder, *parts[k:]) for k in range(1, len(parts) - 1) for folder in folders]


def _written_by_the_script(shell, name: str) -> tuple[str, str] | None:
    """A file the script wrote itself (`cat <<EOT > runner.sh`, then `bash runner.sh`): its text as written then,
    which is what bash would run, rather than a copy left on this disk."""
    def where(path: str) -> str:
        return os.path.normpath(os.path.join(shell.cwd, path))

    for path, text in shell.files.items():
        if where(path) == where(name):
            return path, text
    return None


def _folders_up(folder: str, levels: int = 4) -> list[str]:
    """The script's folder and those above it: a repository's scripts are often run from its root."""
    out = []
    for _ in range(levels + 1):
        out.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return out


def top_path(shell) -> str:
    """The path of the file the outermost shell reads (a `bash -c` child's path is only its name)."""
    while shell.parent is not None and not os.path.isfile(shell.path):
        shell = shell.parent
    return shell.path


def _read_text(path: str) -> str | None:
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > _MAX_BYTES:
            return None
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")
