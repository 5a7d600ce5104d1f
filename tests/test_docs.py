"""Generated docs pages are never stale: the test fails until `python tools/gen_docs.py` is run."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.subprocess
def test_generated_docs_are_fresh():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_migration_guide_lists_every_flag_once():
    from megatron_compat.registry import registry
    text = open(os.path.join(ROOT, "docs", "migration_guide.md"), encoding="utf-8").read()
    for flag in registry():
        assert text.count(f"| `{flag}` |") == 1, flag
