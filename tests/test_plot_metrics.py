"""tools/plot_metrics.py draws several runs from their metrics.jsonl into one PNG."""
import json
import os

import pytest

from tools import plot_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(path, scale):
    path.mkdir()
    with open(path / "metrics.jsonl", "w") as fh:
        for i in range(1, 11):
            fh.write(json.dumps({"kind": "train", "iteration": i, "lm_loss": scale * 5 / i, "learning_rate": 1e-3 * i,
                                 "grad_norm": 1.0 / i, "tokens_per_s_per_device": 100.0 + i}) + "\n")
        fh.write(json.dumps({"kind": "valid", "iteration": 10, "lm_loss": scale * 0.6}) + "\n")


def test_two_runs_on_one_png(tmp_path):
    pytest.importorskip("matplotlib")
    _run(tmp_path / "a", 1.0)
    _run(tmp_path / "b", 2.0)
    out = tmp_path / "cmp.png"
    assert plot_metrics.main([str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_bad_input_names_the_file(tmp_path, capsys):
    assert plot_metrics.main([str(tmp_path)]) == 1
    assert "metrics.jsonl does not exist" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train"}\nnot json\n')
    assert plot_metrics.main([str(tmp_path)]) == 1
    assert "metrics.jsonl:2" in capsys.readouterr().err
