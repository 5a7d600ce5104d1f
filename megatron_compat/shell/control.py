"""Control flow: if, for, while/until, case, function calls, break/continue and exit, run as bash runs them
while their conditions are known here. A mixin of the pretend Shell (evaluate.py)."""
from __future__ import annotations

import fnmatch

from .expansion import _brace_words
from .parse import Case, For, FuncDef, If, While
from .runtime import holds_command_output
from .signals import Exit, LoopBreak, LoopContinue

_MAX_LOOP_VALUES = 256  # a loop over more values than this is not run (its body is skipped, with a warning)


MAX_DEPTH = 20  # nested eval, bash -c, source and function calls followed at most


class ControlFlow:
    """if / for / while / case / functions (a mixin of Shell)."""

    def run_if(self, node: If):
        """The first clause whose condition holds runs. A condition not known here is assumed false, but a branch
        reached only that way does not end the reading: its `exit` (`else echo "unsupported host"; exit 1`) is
        not followed, since the job may well take another branch."""
        assumed = False
        for cond, body in node.clauses:
            status = self.run_list(cond)
            if status is None:
                self.warn(node.line, "'if' condition could not be evaluated; assumed false")
                assumed = True
            elif status:
                return self._run_branch(body, node.line, assumed)
        return self._run_branch(node.else_body, node.line, assumed) if node.else_body is not None else True

    def _run_branch(self, body: list, line: int, assumed: bool):
        if not assumed:
            return self.run_list(body)
        try:
            return self.run_list(body)
        except Exit as stop:
            self.warn(stop.line, f"exit not followed: the branch of the 'if' of line {line} is taken only because a "
                                 f"condition known at run time was assumed false")
            return None

    def run_for(self, node: For):
        """for NAME in WORDS: the body runs once per value, as in bash (an argument loop such as
        `for para in $*; do case $para in --data_path=*) ...`). A launch inside it is recorded with the loop's line
        (Shell.loop_lines), so the reader can say that it runs once per value."""
        values = list(self.positional) if node.words is None else \
            [f for w in node.words for f in (_brace_words(w.raw) or self.expand_word(w))]
        output = next((v for v in values if holds_command_output(v)), None)
        if output is not None:  # for i in $(seq 0 7): how many values the command gives is not known here
            self.warn(node.line, f"'for' loop over the output of {output[:40]} not evaluated (its body is skipped)")
            return None
        if len(values) > _MAX_LOOP_VALUES:
            self.warn(node.line, f"'for' loop over {len(values)} values not evaluated (its body is skipped)")
            return None
        status = True
        self.loop_lines.append(node.line)
        try:
            for value in values:
                self.vars[node.name] = value
                self.templates.pop(node.name, None)
                try:
                    status = self.run_list(node.body)
                except LoopContinue:
                    continue
                except LoopBreak:
                    break
        finally:
            self.loop_lines.pop()
        return status

    def run_while(self, node: While):
        """while/until LIST; do ... done, as bash runs it while its condition is known here (an argument loop:
        `while [[ $# -gt 0 ]]; do case $1 in --nodes) NODES=$2; shift 2;; esac; done`). A condition known only at
        run time (`read`, a command's status) stops it, with a warning; so does a loop that goes on and on."""
        kind = "until" if node.until else "while"
        status = True
        for _ in range(_MAX_LOOP_VALUES):
            holds = self.run_list(node.condition)
            if holds is None:
                self.warn(node.line, f"'{kind}' condition not evaluated (known only at run time); the loop stops "
                                     f"here")
                return None
            if bool(holds) == node.until:
                return status
            self.loop_lines.append(node.line)  # a launch it runs more than once is refused, as a for loop's
            try:
                status = self.run_list(node.body)
            except LoopContinue:
                continue
            except LoopBreak:
                return True
            finally:
                self.loop_lines.pop()
        self.warn(node.line, f"'{kind}' loop still going after {_MAX_LOOP_VALUES} turns; stopped there")
        return None

    def run_case(self, node: Case):
        """The clauses whose patterns match the word run as bash runs them; a word known only when the job runs
        (a scheduler's variable, a command's output) runs no clause, with a warning."""
        value = self.join(self.pieces(node.word.raw, node.line))
        unknowable = self.known_only_at_run_time([(value, False)], [node.word.raw])
        if unknowable:
            self.warn(node.line, f"'case' on {unknowable}: no branch taken")
            return None
        status, fall_through = True, False
        for patterns, body, end in node.clauses:
            if fall_through or any(fnmatch.fnmatchcase(value, self.join(self.pieces(p.raw, p.line)))
                                   for p in patterns):
                status = self.run_list(body)
                if end == ";;":
                    return status
                fall_through = end == ";&"  # ;& runs the next body too, ;;& goes on testing the patterns
        return status

    def call_function(self, fn: FuncDef, args: list[str]):
        if self.depth > MAX_DEPTH:
            self.warn(fn.line, f"function '{fn.name}' recursion too deep; not evaluated")
            return None
        saved, self.positional = self.positional, args
        self.depth += 1
        try:
            return self.run_list(fn.body)
        finally:
            self.depth -= 1
            self.positional = saved
