"""Other shells a script starts or reads: eval, bash -c, source, bash SCRIPT, sbatch/qsub JOB, a script given on
standard input, and the files it writes from here-documents or sed templates. A mixin of the pretend Shell."""
from __future__ import annotations

import os
import re

from .control import MAX_DEPTH
from .lex import Lexer, Word
from .other_files import find_script, sets_up_the_machine
from .parse import Parser, Pipeline, Simple
from .result import ShellReadError
from .sed import SedNotUnderstood, find_template, parse_sed, run_sed
from .signals import Exit

SHELLS = {"bash", "sh"}
_JOB_FILE = re.compile(r"\.(sh|bash|slurm|sbatch|pbs|job|lsf)$")


class Subshells:
    """eval, bash -c, source, other scripts and jobs (a mixin of Shell)."""


    def parse_string(self, text: str, line: int) -> list:
        """Lex and parse a command string (eval's, bash -c's); every command in it is reported at `line`."""
        lexer = Lexer(text, f"{self.path}:{line}")
        tokens = lexer.tokenize()
        for tok in tokens:
            tok.line = line
            for element in getattr(tok, "elements", ()):
                element.line = line
        if lexer.skipped_heredocs:
            self.warn(line, "here-document skipped (its text is not read)")
        for _, name, value in lexer.placeholders:
            self.warn(line, f"{name} {value} is the example's placeholder (bash would take its < and > for "
                            f"redirections); read as the value '{value}': put the real value there")
        return Parser(tokens, f"{self.path}:{line}").parse_program()

    def run_eval(self, args: list[str], line: int):
        """eval: the arguments joined by spaces are read again as commands, in this shell's own variables."""
        text = " ".join(args)
        self.source_texts.append(self.words.text(args))
        if text.strip().startswith(("$(", "`")):
            self.warn(line, f"eval of a command's output ({text.strip()[:40]}) not evaluated")
            return None
        if self.depth > MAX_DEPTH:
            self.warn(line, "eval nested too deep; not evaluated")
            return None
        try:
            nodes = self.parse_string(text, line)
        except ShellReadError as exc:
            self.warn(line, f"eval text not understood ({exc}); not evaluated")
            return None
        self.depth += 1
        try:
            return self.run_list(nodes)
        finally:
            self.depth -= 1

    def run_sourced(self, name: str, args: list[str], line: int):
        """source FILE [ARGS]: FILE runs in this shell (its variables stay), read when it is on disk."""
        target = args[0] if args else ""
        if sets_up_the_machine(target):
            self.setup_sources.append(self.words.text([name] + args))
            self.warn(line, f"'{name} {target}' sets up the environment: not read here; the new script runs it too")
            return None
        found = find_script(self, target) if self.depth <= MAX_DEPTH else None
        nodes = self._parsed_file(found, f"'{name} {target}'", line) if found else None
        if nodes is None:
            if not found:
                self.unread_sources.append(target)
                self.warn(line, f"'{name} {target}' not evaluated (no such file here): variables it sets are "
                                f"unknown here")
            return None
        saved = self.positional
        if len(args) > 1:
            self.positional = list(args[1:])
        self.depth += 1
        try:
            return self.run_list(nodes)
        finally:
            self.depth -= 1
            self.positional = saved if len(args) > 1 else self.positional

    def run_other_script(self, written: str, script: str, args: list[str], temp_env: dict, line: int,
                         found: tuple[str, str] | None = None):
        """bash SCRIPT ARGS / ./SCRIPT.sh ARGS: a new shell reads SCRIPT when it is on disk; otherwise reported
        (and named if no launch is found). `found`: SCRIPT's (path, text) when the caller has looked it up."""
        if self.depth > MAX_DEPTH:
            found = None
        elif found is None:
            found = find_script(self, script)
        nodes = self._parsed_file(found, f"'{written}'", line) if found else None
        if nodes is None:
            self.other_scripts.append((line, script))
            if not found:
                self.warn(line, f"'{written}' runs another script, which is not read here (no such file here)")
                seen = self.launches_seen[0]
                if self.on_command is not None:  # srun launch.sh pretrain_gpt.py ...: the launcher may know it
                    self.on_command(self, [script] + list(args), temp_env, line)
                if self.launches_seen[0] == seen and self.on_script_without_launch is not None:
                    self.on_script_without_launch(self, [script] + list(args), temp_env, line, missing=True)
            return None
        child = self.child(found[0], list(args), temp_env, line)
        seen = self.launches_seen[0]
        try:
            child.run_list(nodes)
        except Exit:
            pass
        if self.launches_seen[0] == seen and self.on_script_without_launch is not None:
            self.on_script_without_launch(self, [script] + list(args), temp_env, line)  # bind.sh ... python X.py
        return True

    def _parsed_file(self, found: tuple[str, str], written: str, line: int) -> list | None:
        """The commands of a file another one reads, each reported at the line that reads it (said once)."""
        path, text = found
        try:
            nodes = self.parse_string(text, line)
        except ShellReadError as exc:
            self.warn(line, f"{written} ({path}) not understood ({exc}); not evaluated")
            return None
        self.warn(line, f"{written} read from {path}; what it does is reported at this line")
        return nodes

    def run_shell(self, name: str, args: list[str], temp_env: dict, line: int):
        """bash -c STRING [NAME ARGS...]: the string runs in a new shell that sees only exported variables.
        bash SCRIPT: another file, which is not read here (reported, and named if no launch is found)."""
        k, command = 0, False
        while k < len(args) and args[k][:1] in "-+" and args[k] not in ("-", "--"):
            if args[k].startswith("--"):  # --login, --norc, ...; --rcfile FILE takes a value
                k += 2 if args[k] in ("--rcfile", "--init-file") else 1
                continue
            command = command or (args[k][0] == "-" and "c" in args[k])
            k += 2 if args[k] in ("-o", "+o", "-O", "+O") else 1
        k += 1 if k < len(args) and args[k] == "--" else 0
        if not command:
            script = args[k] if k < len(args) else "(standard input)"
            return self.run_other_script(f"{name} {script}", script, args[k + 1:], temp_env, line)
        if k >= len(args):
            self.warn(line, f"'{name} -c' without a command string")
            return None
        if self.depth > MAX_DEPTH:
            self.warn(line, f"'{name} -c' nested too deep; not evaluated")
            return None
        try:
            nodes = self.parse_string(args[k], line)
        except ShellReadError as exc:
            self.warn(line, f"'{name} -c' text not understood ({exc}); not evaluated")
            return None
        child = self.child(args[k + 1] if k + 1 < len(args) else name, args[k + 2:], temp_env, line)
        child.source_texts.append(self.words.at(args, k)[0] or "")
        try:
            child.run_list(nodes)
        except Exit:
            pass
        return True

    def child(self, path: str, positional: list[str], temp_env: dict, line: int):
        """A new shell process: the exported (and inherited) variables, plus this command's prefix assignments."""
        names = [n for n in list(self.exported) + sorted(self.inherited) if isinstance(self.vars.get(n), str)]
        child = type(self)(path, positional, self.on_command, {n: self.vars[n] for n in names if n in self.inherited})
        for n in names:
            child.vars[n] = self.vars[n]
            if n in self.exported:
                child.exported[n] = self.exported[n]
            if n in self.templates:
                child.templates[n] = self.templates[n]
            if n in self.raw_values:
                child.raw_values[n] = self.raw_values[n]
        for n, value in temp_env.items():
            child.vars[n] = value
            child.exported[n] = line
        child.warnings = self.warnings  # one list: the script's warnings, in the order met
        child.other_scripts = self.other_scripts
        child.files, child.heredocs_read = self.files, self.heredocs_read  # one filesystem
        child.written_docs = self.written_docs
        child.stdin_jobs = self.stdin_jobs
        child.depth = self.depth + 1
        child.cwd, child.cwd_assumed = self.cwd, self.cwd_assumed
        child.start_folder, child.start_folder_reads = self.start_folder, self.start_folder_reads
        child.setup_sources = self.setup_sources
        child.unread_sources = self.unread_sources
        child.job_counts = self.job_counts
        child.launches_seen = self.launches_seen
        child.on_script_without_launch = self.on_script_without_launch
        child.parent = self
        return child

    def write_heredoc(self, fields: list[str], redirects: list, line: int) -> None:
        """`cat <<EOF > FILE` / `cat > FILE <<EOF` / `tee [-a] FILE <<EOF`: remember the text FILE receives."""
        docs = [w.heredoc for op, w in redirects if op.endswith(("<<", "<<-")) and w.heredoc is not None]
        if not docs or os.path.basename(fields[0]) not in ("cat", "tee"):
            return
        doc = docs[-1]
        text = self.join(self.pieces(doc.body, doc.line, in_dq=True)) if doc.expand else doc.body
        targets = [(op.lstrip("0123456789"), self.join(self.pieces(w.raw, w.line))) for op, w in redirects
                   if op.lstrip("0123456789") in (">", ">>", ">|", "&>")]
        if os.path.basename(fields[0]) == "tee":
            append = "-a" in fields[1:] or "--append" in fields[1:]
            targets += [(">>" if append else ">", f) for f in fields[1:] if not f.startswith("-")]
        for op, path in targets:
            self.files[path] = (self.files.get(path, "") if op == ">>" else "") + text
            self.written_docs[path] = (doc.body, text)
        if targets:
            self.heredocs_read.add(doc.line - 1)

    def write_from_sed(self, node: Pipeline) -> bool:
        """`sed EXPR TEMPLATE | sed EXPR ... > FILE` (shell/sed.py): remember the text FILE receives. False when
        the pipeline is not sed commands ending in a `>` redirection."""
        commands = node.commands
        if not commands or not all(isinstance(c, Simple) and c.words and isinstance(c.words[0], Word)
                                   and c.words[0].raw == "sed" for c in commands):
            return False
        targets = [w for op, w in commands[-1].redirects if op.lstrip("0123456789") in (">", ">|")]
        if not targets:
            return False
        out = self.join(self.pieces(targets[-1].raw, targets[-1].line))
        try:
            steps = [parse_sed([f for w in c.words[1:] for f in self.expand_word(w)]) for c in commands]
        except SedNotUnderstood as exc:
            self.warn(node.line, f"{out} is written by sed, which is not read here: {exc}")
            return True
        given = steps[0][1] + [self.join(self.pieces(w.raw, w.line)) for op, w in commands[0].redirects if op == "<"]
        if len(given) != 1 or any(files for _, files in steps[1:]):
            self.warn(node.line, f"{out} is written by sed from {len(given)} inputs; only one template is read")
            return True
        source = self.files.get(given[0])
        if source is None:
            found = find_template(given[0], self.path)
            if found is None:
                self.warn(node.line, f"{out} is written by sed from {given[0]}, which is not found here (looked "
                                     "in this directory, beside the script and above it); its content is unknown")
                return True
            with open(found, encoding="utf-8", errors="replace") as fh:
                source = fh.read()
        for substitutions, _ in steps:
            source = run_sed(substitutions, source)
        self.files[out] = source
        return True

    def run_job_script(self, name: str, args: list[str], temp_env: dict, line: int):
        """`sbatch [OPTIONS] job.sh [ARGS]` / `qsub job.pbs`: the job script runs in a new shell, as the job would,
        when it is here (written by this script, or on disk); otherwise reported like `bash job.sh`.
        `sbatch <<EOF` (the job on standard input) is run_heredoc_script's."""
        files = [k for k, a in enumerate(args) if not a.startswith("-")]
        found = next(((k, hit) for k in files for hit in [find_script(self, args[k])] if hit), None)
        if found is None:
            named = next((args[k] for k in files if _JOB_FILE.search(args[k])), None)
            if named is not None:
                self.other_scripts.append((line, named))
            return None
        k, job = found
        # its #SBATCH lines, as the job receives them (the variables of a here-document expanded)
        self.stdin_jobs.append(self.written_docs.get(args[k]) or (job[1], job[1]))
        return self.run_other_script(f"{name} {args[k]}", args[k], args[k + 1:], temp_env, line, found=job)

    def run_heredoc_script(self, fields: list[str], redirects: list, temp_env: dict, line: int) -> bool:
        """`sbatch <<EOF ... EOF` / `bash <<EOF`: the here-document is the script run (in a new shell, as a job
        or a child shell would run it). False when the command is not one of these."""
        docs = [w.heredoc for op, w in redirects if op.endswith(("<<", "<<-")) and w.heredoc is not None]
        if not docs or os.path.basename(fields[0]) not in SHELLS | {"sbatch"}:
            return False
        if any(not a.startswith("-") for a in fields[1:]) or self.depth > MAX_DEPTH:
            return False  # a script file or a -c string: not its standard input
        doc = docs[-1]
        text = self.join(self.pieces(doc.body, doc.line, in_dq=True)) if doc.expand else doc.body
        try:
            nodes = self.parse_string(text, line)
        except ShellReadError as exc:
            self.warn(line, f"the script given to {fields[0]} on its standard input is not understood ({exc})")
            return True
        self.heredocs_read.add(doc.line - 1)
        self.stdin_jobs.append((doc.body, text))
        child = self.child(fields[0], [], temp_env, line)
        try:
            child.run_list(nodes)
        except Exit:
            pass
        return True
