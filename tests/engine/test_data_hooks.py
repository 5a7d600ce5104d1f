"""Small pieces of the engine's data wiring."""
import pytest

from fsdp2_core.config import ConfigError
from fsdp2_core.train.data import _mg_data_path, micro_batches


def test_mg_dataset_forms():
    assert _mg_data_path("0.3 /d/a 0.7 /d/b") == ["0.3", "/d/a", "0.7", "/d/b"]
    assert _mg_data_path({"file_name": "./corpus.parquet"}) == ["./corpus.parquet"]  # MindSpeed's raw-file form
    assert _mg_data_path(None) is None
    with pytest.raises(ConfigError, match="give a file_name"):
        _mg_data_path({"formatting": "alpaca"})


def test_eval_split_smaller_than_one_draw_fails_instead_of_spinning():
    dataset = [{"tokens": [1, 2]}]
    with pytest.raises(ConfigError, match="split holds 1 samples, fewer than one draw of micro batch 2"):
        next(micro_batches(dataset, 0, micro=2, rank=0, dp=1, cyclic=True))
    assert list(micro_batches(dataset * 4, 0, micro=2, rank=0, dp=1))[0]["tokens"].shape == (2, 2)


def test_cyclic_reading_repeats_passes_and_resumes_inside_a_later_pass():
    dataset = [{"tokens": [i]} for i in range(5)]  # draws of 2: one pass reads samples 0..3, sample 4 is dropped
    batches = micro_batches(dataset, 0, micro=2, rank=0, dp=1, cyclic=True)
    seen = [next(batches)["tokens"].flatten().tolist() for _ in range(4)]
    assert seen == [[0, 1], [2, 3], [0, 1], [2, 3]]
    resumed = micro_batches(dataset, 6, micro=2, rank=0, dp=1, cyclic=True)  # 6 consumed = pass 2, second draw
    assert next(resumed)["tokens"].flatten().tolist() == [2, 3]
