"""tools/convert_ckpt.py never deletes what it did not create (bad-input issue #20): an output that is or holds a
checkpoint is refused, a user's non-empty folder is refused unless --overwrite, and a failed conversion leaves
nothing behind; a checkpoint whose tensors do not fit its config names the tensor and both shapes."""
import json
import os

from tests.megatron_ckpt.ours import write_our_checkpoint
from tools import convert_ckpt


def listing(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def siblings(path):
    return sorted(n for n in os.listdir(os.path.dirname(str(path))) if ".partial-" in n or ".replaced-" in n)


def test_the_save_directory_as_output_is_refused_and_kept(tmp_path, capsys):
    save = tmp_path / "run"
    write_our_checkpoint(str(save))
    before = listing(save)
    assert convert_ckpt.main(["--load", str(save), "--output", str(save)]) == 2
    assert "is or contains the checkpoint being read" in capsys.readouterr().err
    assert listing(save) == before
    # any directory holding checkpoints, even one not being read, is never replaced
    other = tmp_path / "other"
    write_our_checkpoint(str(other), iteration=5)
    before = listing(other)
    assert convert_ckpt.main(["--load", str(save), "--output", str(other), "--overwrite"]) == 2
    assert "holds checkpoints" in capsys.readouterr().err
    assert listing(other) == before and not siblings(other)


def test_a_users_folder_is_refused_unless_overwrite(tmp_path, capsys):
    save = tmp_path / "run"
    write_our_checkpoint(str(save))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert convert_ckpt.main(["--load", str(save), "--output", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "pass --overwrite" in err
    assert (mine / "notes.txt").read_text() == "keep me" and not siblings(mine)
    assert convert_ckpt.main(["--load", str(save), "--output", str(mine), "--overwrite"]) == 0
    assert not (mine / "notes.txt").exists() and (mine / "config.json").exists() and not siblings(mine)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert convert_ckpt.main(["--load", str(save), "--output", str(empty)]) == 0
    assert (empty / "model.safetensors").exists()


def test_a_shape_that_does_not_fit_names_the_tensor_and_writes_nothing(tmp_path, capsys):
    save = tmp_path / "run"
    path = write_our_checkpoint(str(save))
    with open(os.path.join(path, "config.json")) as fh:
        config = json.load(fh)
    config["intermediate_size"] = 96
    with open(os.path.join(path, "config.json"), "w") as fh:
        json.dump(config, fh)
    out = tmp_path / "hf"
    assert convert_ckpt.main(["--load", str(save), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model.model.layers.0.mlp.gate_proj.weight is stored with shape (64, 32)" in err and "(96, 32)" in err
    assert not out.exists() and not siblings(out)
