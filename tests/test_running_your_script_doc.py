"""docs/running_your_script.md is a claim: each example script on the page, converted as `old.sh`, prints the
messages shown after it, or renders the new script shown after it; every launcher of the table is on the page."""
import os
import re

import pytest

from fsdp2_core.rank_env import RankDiscoveryError, discover_ranks
from megatron_compat.launch_script import render_launch_script
from megatron_compat.shell import read_launch_script
from megatron_compat.shell.launchers import ROLES
from tools.classify_scripts import run_convert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = open(os.path.join(ROOT, "docs", "running_your_script.md"), encoding="utf-8").read()
_EXAMPLE = re.compile(r"```bash\n# example: (?P<name>[^\n]+)\n(?P<script>.*?)```\n```(?P<lang>text|bash)\n"
                      r"(?P<shown>.*?)```", re.S)
EXAMPLES = {m["name"]: (m["script"], m["lang"], m["shown"]) for m in _EXAMPLE.finditer(DOC)}


def test_every_example_on_the_page_is_checked():
    assert len(EXAMPLES) == DOC.count("# example: ") >= 13


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example(name, tmp_path, monkeypatch):
    script, lang, shown = EXAMPLES[name]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.sh").write_text(script)
    if lang == "bash":  # the new script convert_args writes for it
        new = render_launch_script(read_launch_script(script, (), "old.sh"), "train_fsdp2.py", ["new.yaml"], "old.sh")
        assert shown in new, new
        return
    _, out, err = run_convert(["old.sh", "-o", "new.yaml", "--script-out", "new.sh"])
    for line in shown.strip().splitlines():
        assert line in out + err, (line, out[-1500:], err[-3000:])


def test_rank_discovery_message_on_the_page():
    env = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "16", "OMPI_COMM_WORLD_LOCAL_SIZE": "8"}
    with pytest.raises(RankDiscoveryError) as err:
        discover_ranks(env)
    assert f"pretrain_gpt.py: {err.value}\n" in DOC


def test_every_launcher_is_in_the_table():
    table = DOC.split("## Launchers understood", 1)[1].split("\n\n", 2)[1]
    for kind in ROLES:
        assert kind in table, kind
