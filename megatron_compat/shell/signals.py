"""The exceptions that carry bash's control flow through the pretend shell: `break`, `continue` and `exit`."""


class LoopBreak(Exception):
    """`break` inside a loop."""


class LoopContinue(Exception):
    """`continue` inside a loop."""


class Exit(Exception):
    """`exit`: the script (or the subshell running it) stops at `line`."""

    def __init__(self, line: int):
        super().__init__(line)
        self.line = line
