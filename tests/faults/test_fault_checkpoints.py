"""Fault injection on two gloo ranks: damaged checkpoints, unusable save directories, read errors at
resume, data beyond the vocabulary. Every case ends in the same clear error on both ranks, or is
handled as stated (a damaged latest checkpoint falls back to the one before, with a warning)."""
import os

import pytest

from tests.faults.fault_helpers import (
    CopyThen,
    make_file,
    nothing,
    read_error_on_rank1,
    spawn_cases,
    unwritable_on_rank0,
    write_corpus,
)

pytestmark = [pytest.mark.dist, pytest.mark.slow]

BASE = {"max_steps": 4, "save_steps": 2, "save_hf_weights": False}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("faults"))
    p = lambda *parts: os.path.join(tmp, *parts)  # noqa: E731
    corpus = write_corpus(p("corpus_text_document"), vocab=100)
    iter4 = os.path.join("iter_0000004")
    runs = [
        ("base", p("base"), dict(BASE), nothing, True),
        ("base_async", p("async"), dict(BASE, save_async=True), nothing, True),
        # one byte flipped inside rank 1's shard of the newest checkpoint (size unchanged)
        ("flipped_latest", p("flip1"), dict(BASE, resume_from_checkpoint="latest"),
         CopyThen(p("base"), "flip", 4, "__1_0.distcp"), True),
        ("flipped_named", p("flip2"), dict(BASE, resume_from_checkpoint=p("flip2", iter4)),
         CopyThen(p("base"), "flip", 4, "__1_0.distcp"), True),
        ("tracker_negative", p("trk"), dict(BASE, max_steps=5, resume_from_checkpoint="latest"),
         CopyThen(p("base"), "write", "latest_checkpointed_iteration.txt", "-5"), True),
        ("info_garbage", p("info"), dict(BASE, resume_from_checkpoint="latest"),
         CopyThen(p("base"), "write", os.path.join(iter4, "checkpoint_info.json"), "{not json"), True),
        ("save_is_a_file", p("a_file"), dict(BASE), make_file, True),
        ("save_unwritable_on_rank0", p("ro"), dict(BASE), unwritable_on_rank0, True),
        ("read_error_at_resume", p("rerr"), dict(BASE, resume_from_checkpoint=p("base", iter4)),
         read_error_on_rank1, True),
        ("token_ids_beyond_vocab", p("vocab"), dict(BASE, dataset=corpus, split="100,0,0",
                                                    architecture=dict(_llama(), vocab_size=64)), nothing, False),
    ]
    return tmp, spawn_cases(2, runs)


def _llama():
    from fsdp2_core.testing.tiny import LLAMA
    return dict(LLAMA)


def error_on_both_ranks(outcomes, kind, *needles):
    for outcome in outcomes:
        text = outcome["result"]
        assert isinstance(text, str) and text.startswith(f"{kind}: "), text
        for needle in needles:
            assert needle in text, (needle, text)
    return outcomes[0]["result"]


def test_synchronous_and_asynchronous_saves_record_checksums(cases):
    from fsdp2_core.checkpoint import checksums
    tmp, out = cases
    for name, directory in (("base", "base"), ("base_async", "async")):
        assert out[name][0]["result"]["iteration"] == 4, out[name][0]["result"]
        for it in ("iter_0000002", "iter_0000004"):
            path = os.path.join(tmp, directory, it)
            recorded = checksums.read_record(path)
            assert {"__0_0.distcp", "__1_0.distcp", ".metadata", "checkpoint_info.json"} <= set(recorded)
            assert set(recorded) == set(checksums.list_files(path)) and checksums.mismatches(path) == []


def test_flipped_byte_in_latest_falls_back_to_the_previous_checkpoint(cases):
    tmp, out = cases
    base, fell_back = out["base"][0]["result"], out["flipped_latest"][0]
    warned = [line for line in fell_back["lines"] if "skipping checkpoint" in line]
    assert warned and "iter_0000004" in warned[0] and "__1_0.distcp does not match its checksum" in warned[0]
    result = fell_back["result"]
    assert isinstance(result, dict), result
    assert result["losses"] == base["losses"][2:]  # resumed from iteration 2, exactly


def test_flipped_byte_in_a_named_checkpoint_is_an_error_naming_the_file(cases):
    _, out = cases
    error_on_both_ranks(out["flipped_named"], "CheckpointError", "is damaged", "__1_0.distcp does not match")


def test_negative_tracker_does_not_hide_complete_checkpoints(cases):
    _, out = cases
    result = out["tracker_negative"][0]["result"]
    assert isinstance(result, dict), result
    assert result["iteration"] == 5 and len(result["losses"]) == 1  # resumed from iteration 4


def test_garbage_checkpoint_info_is_skipped_with_a_warning(cases):
    _, out = cases
    outcome = out["info_garbage"][0]
    assert isinstance(outcome["result"], dict), outcome["result"]
    assert any("unreadable" in line and "checkpoint_info.json" in line for line in outcome["lines"])
    assert len(outcome["result"]["losses"]) == 2  # from iteration 2


def test_save_dir_that_is_a_file_stops_every_rank(cases):
    _, out = cases
    error_on_both_ranks(out["save_is_a_file"], "ConfigError", "is a file, not a directory", "--save")


def test_save_dir_rank0_cannot_write_stops_every_rank_together(cases):
    _, out = cases
    error_on_both_ranks(out["save_unwritable_on_rank0"], "ConfigError", "is not writable", "EACCES")


def test_read_error_at_resume_names_rank_errno_and_file(cases):
    _, out = cases
    text = error_on_both_ranks(out["read_error_at_resume"], "CheckpointError", "loading checkpoint",
                               "rank 1: OSError EIO", "__1_0.distcp")
    assert "CheckpointException ranks" not in text


def test_token_ids_beyond_the_vocabulary_are_refused_at_start(cases):
    _, out = cases
    error_on_both_ranks(out["token_ids_beyond_vocab"], "ConfigError", "corpus_text_document.bin holds token id 99",
                        "vocabulary of 64 ids")
