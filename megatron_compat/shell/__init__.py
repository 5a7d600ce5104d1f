"""Reading bash launch scripts without running them: lex → parse → evaluate → find the launch line."""
from .launch import read_launch_script
from .result import LaunchScript, ShellReadError, ShellWarning

__all__ = ["LaunchScript", "ShellReadError", "ShellWarning", "read_launch_script"]
