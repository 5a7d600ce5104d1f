"""Deterministic mode (training.deterministic; Megatron --deterministic-mode, MindSpeed --npu-deterministic): every
rank runs with torch's deterministic algorithms and the environment the libraries read, a value the user already
exported is kept, and the training is the same run (on CPU, bitwise)."""
import os

import torch

from fsdp2_core.testing.spawn import spawn_runs

from .helpers import run_layout


def _run_and_settings(run):
    summary = run_layout(run)
    return (summary["losses"], torch.are_deterministic_algorithms_enabled(), os.environ.get("NCCL_ALGO"),
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"), os.environ.get("HCCL_DETERMINISTIC"))


def test_deterministic_mode_on_two_ranks_keeps_the_users_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NCCL_ALGO", "Tree")  # the user's choice of a fixed algorithm stays
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.delenv("HCCL_DETERMINISTIC", raising=False)
    runs = [(str(tmp_path / name), dict(max_steps=4, deterministic=on), False)
            for name, on in (("plain", False), ("det1", True), ("det2", True))]
    plain, first, second = spawn_runs(2, _run_and_settings, runs)[0]
    assert plain[1] is False and (plain[3], plain[4]) == (None, None)
    assert first[1:] == (True, "Tree", ":4096:8", "true")
    assert first[0] == second[0] == plain[0]  # the same training, bitwise, run after run
