"""How an entry point ends on an error (fsdp2_core.train.errors): one message from rank 0 for what the user
can fix, a traceback for a bug, torchrun's error file filled in either way."""
import json

import pytest

from fsdp2_core.checkpoint.layout import CheckpointError
from fsdp2_core.config import ConfigError
from fsdp2_core.errors import UserError
from fsdp2_core.train.errors import run_reporting_errors
from fsdp2_core.train.loop import TrainingDiverged


def fail(exc):
    def fn():
        raise exc
    return fn


def test_user_errors_are_one_of_a_kind():
    for cls in (ConfigError, CheckpointError, TrainingDiverged):
        assert issubclass(cls, UserError)
    assert issubclass(ConfigError, ValueError) and issubclass(CheckpointError, RuntimeError)


@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False)])
def test_a_user_error_is_printed_once_by_rank_0(monkeypatch, capsys, tmp_path, rank, printed):
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "error.json"))
    code = run_reporting_errors("pretrain_gpt.py", fail(ConfigError("ep_size 3 does not divide the 8 experts")))
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("pretrain_gpt.py: error: ep_size 3 does not divide the 8 experts\n" if printed else "")
    record = json.load(open(tmp_path / "error.json"))["message"]  # what torchrun's failure summary shows
    assert record["message"] == "ConfigError: ep_size 3 does not divide the 8 experts"
    assert record["extraInfo"]["py_callstack"] == "pretrain_gpt.py: error: ep_size 3 does not divide the 8 experts"


@pytest.mark.parametrize("rank, error_file, printed", [("0", True, True), ("3", True, False), ("3", False, True)])
def test_a_bug_keeps_its_traceback(monkeypatch, capsys, tmp_path, rank, error_file, printed):
    monkeypatch.setenv("RANK", rank)
    if error_file:
        monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "error.json"))
    else:
        monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    code = run_reporting_errors("train_fsdp2.py", fail(KeyError("layers.0.mlp")))
    err = capsys.readouterr().err
    assert code == 1
    if printed:
        assert err.startswith(f"train_fsdp2.py: rank {rank} failed with an unexpected error:\nTraceback")
        assert "KeyError: 'layers.0.mlp'" in err
    else:  # torchrun shows it from the error file when this rank failed first
        assert err == ""
    if error_file:
        assert "Traceback" in json.load(open(tmp_path / "error.json"))["message"]["extraInfo"]["py_callstack"]


def test_success_and_interrupt(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "0")
    assert run_reporting_errors("pretrain_gpt.py", lambda: {"iteration": 3}) == 0
    assert run_reporting_errors("pretrain_gpt.py", fail(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == "pretrain_gpt.py: interrupted\n"


@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False)])
def test_a_refusal_before_start_is_printed_once_by_rank_0(monkeypatch, capsys, tmp_path, rank, printed):
    """Flags every rank reads alike are refused alike: only rank 0's copy reaches the log; all exit 2."""
    from megatron_compat.cli import main
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", rank)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(tmp_path / "error.json"))
    code = main(["--num-layers", "2", "--hidden-size", "64", "--num-attention-heads", "4", "--seq-length", "32",
                 "--max-position-embeddings", "32", "--micro-batch-size", "1", "--train-iters", "2",
                 "--mock-data", "--tokenizer-type", "NullTokenizer", "--vocab-size", "128", "--lr", "1e-4",
                 "--save", str(tmp_path / "out"), "--no-such-flag"])
    err = capsys.readouterr().err
    assert code == 2
    assert ("refusing to start" in err and "--no-such-flag" in err) if printed else err == ""
    assert "--no-such-flag" in json.load(open(tmp_path / "error.json"))["message"]["extraInfo"]["py_callstack"]
