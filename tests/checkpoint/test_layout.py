"""One process, no training: the directory layout, completeness, which checkpoint a resume picks,
rotation, the streamed safetensors writer against the safetensors library, and when saves happen."""
import json
import os

import pytest
import torch
import torch.distributed.checkpoint as dcp

from fsdp2_core.checkpoint.hf_export import StreamingSafetensorsWriter, plan_shards
from fsdp2_core.checkpoint.layout import (
    INFO,
    METADATA,
    TRACKER,
    CheckpointError,
    completeness,
    iter_dir,
    latest_complete,
    read_tracker,
    resolve_explicit,
    write_tracker,
)
from fsdp2_core.checkpoint.rotation import prune

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")


def fake_checkpoint(save_dir, iteration, track=True):
    """A real DCP checkpoint (single process) with the engine's info file, like a save leaves it."""
    path = iter_dir(str(save_dir), iteration)
    dcp.save({"model": {"w": torch.full((4, 4), float(iteration))}, "train_state": {"iteration": iteration}},
             checkpoint_id=path, no_dist=True)
    with open(os.path.join(path, INFO), "w") as fh:
        json.dump({"iteration": iteration, "world_size": 1}, fh)
    if track:
        write_tracker(str(save_dir), iteration)
    return path


def test_megatron_names_and_tracker(tmp_path):
    assert os.path.basename(iter_dir(str(tmp_path), 100)) == "iter_0000100"
    assert read_tracker(str(tmp_path)) is None
    write_tracker(str(tmp_path), 100)
    assert open(tmp_path / TRACKER).read() == "100" and read_tracker(str(tmp_path)) == 100
    assert not (tmp_path / (TRACKER + ".tmp")).exists()


def test_completeness_names_what_is_missing(tmp_path):
    path = fake_checkpoint(tmp_path, 2)
    assert completeness(path) == (True, "")
    data = [f for f in os.listdir(path) if f.endswith(".distcp")][0]
    with open(os.path.join(path, data), "r+b") as fh:  # truncated data file
        fh.truncate(10)
    ok, why = completeness(path)
    assert not ok and "truncated" in why and data in why
    os.remove(os.path.join(path, data))
    assert "missing data file" in completeness(path)[1]
    os.remove(os.path.join(path, METADATA))
    assert ".metadata" in completeness(path)[1]


def test_latest_skips_incomplete_for_the_previous_one(tmp_path):
    fake_checkpoint(tmp_path, 2)
    fake_checkpoint(tmp_path, 4)
    fake_checkpoint(tmp_path, 6)
    os.makedirs(iter_dir(str(tmp_path), 8))  # a save that crashed before the tracker: ignored
    os.remove(os.path.join(iter_dir(str(tmp_path), 6), METADATA))
    warnings = []
    assert latest_complete(str(tmp_path), warn=warnings.append) == iter_dir(str(tmp_path), 4)
    assert len(warnings) == 1 and "iter_0000006" in warnings[0] and ".metadata" in warnings[0]
    # the same checkpoint asked for by name is an error, not a silent fallback
    with pytest.raises(CheckpointError, match="iter_0000006 is not a complete checkpoint: no .metadata"):
        resolve_explicit(iter_dir(str(tmp_path), 6))
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        resolve_explicit(str(tmp_path))  # the save directory: its tracker's checkpoint (6)
    with pytest.raises(CheckpointError, match="no such file or directory"):
        resolve_explicit(str(tmp_path / "nowhere"))
    assert resolve_explicit(iter_dir(str(tmp_path), 4)) == iter_dir(str(tmp_path), 4)
    assert latest_complete(str(tmp_path / "empty"), warn=warnings.append) is None


def test_rotation_keeps_newest_complete_and_the_tracked_one(tmp_path):
    for it in (1, 2, 3, 4):
        fake_checkpoint(tmp_path, it)
    os.makedirs(str(iter_dir(str(tmp_path), 2)) + ".partial")  # an abandoned save
    removed = prune(str(tmp_path), 2)
    left = sorted(n for n in os.listdir(tmp_path) if n.startswith("iter_"))
    assert left == ["iter_0000003", "iter_0000004"] and len(removed) == 3
    # a run resumed from 3 saved 3 again and tracks it: the abandoned 4 may go, 3 never
    write_tracker(str(tmp_path), 3)
    prune(str(tmp_path), 1)
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("iter_")) == ["iter_0000003"]


def test_streamed_safetensors_match_the_library(tmp_path):
    from safetensors import safe_open
    tensors = {"a": torch.randn(3, 5), "b": torch.arange(7, dtype=torch.int64), "c": torch.randn(2, 2).bfloat16(),
               "d": torch.randn(60, 10), "e": torch.tensor(1.5)}
    entries = [(k, tuple(v.shape), v.dtype) for k, v in tensors.items()]
    assert [len(s) for s in plan_shards(entries, 2000)] == [3, 1, 1]
    for max_bytes, files in ((10 ** 6, ["model.safetensors"]), (2000, ["model-00001-of-00003.safetensors",
                                                                       "model-00002-of-00003.safetensors",
                                                                       "model-00003-of-00003.safetensors"])):
        out = tmp_path / str(max_bytes)
        out.mkdir()
        w = StreamingSafetensorsWriter(str(out), entries, max_bytes)
        for k, v in tensors.items():
            w.write(k, v)
        w.close()
        assert sorted(f for f in os.listdir(out) if f.endswith(".safetensors")) == files
        index = out / "model.safetensors.index.json"
        weight_map = json.load(open(index))["weight_map"] if index.exists() else {k: files[0] for k in tensors}
        for k, v in tensors.items():
            with safe_open(str(out / weight_map[k]), framework="pt") as fh:
                assert torch.equal(fh.get_tensor(k), v) and fh.metadata() == {"format": "pt"}
    w = StreamingSafetensorsWriter(str(tmp_path), entries)
    with pytest.raises(ValueError, match="expected tensor a"):
        w.write("b", tensors["b"])


@pytest.mark.parametrize("over, steps_per_epoch, saves, stop", [
    ({"save_steps": 3}, None, [3, 6], None),
    ({"save_steps": 0, "save_epochs": 2}, 2, [4, 8], None),          # epoch-based run: every 2nd epoch of 2 steps
    ({"save_steps": 0, "save_epochs": 2}, None, [], None),           # iteration-based run: save_epochs unused
    ({"save_steps": 4, "exit_interval": 5}, None, [4, 5], 5),        # exit interval saves and stops
])
def test_when_saves_happen(tmp_path, over, steps_per_epoch, saves, stop):
    from types import SimpleNamespace

    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.testing.tiny import tiny_config
    from fsdp2_core.train import TrainState
    hooks = Checkpointer(tiny_config(tmp_path, **over))
    hooks.setup(device=SimpleNamespace(torch_device=torch.device("cpu")), train_iters=8, global_batch=4,
                steps_per_epoch=steps_per_epoch, print_fn=lambda s: None)
    done = []
    hooks.save = lambda state, *_: done.append(state.iteration)
    state, stopped = TrainState(), None
    for it in range(1, 9):
        state.iteration = it
        if hooks.after_step(state, None, None, None):
            stopped = it
            break
    hooks.signals.restore()
    assert done == saves and stopped == stop
