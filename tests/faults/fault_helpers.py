"""Pieces of the fault-injection tests: damaging files, and runs on spawned gloo ranks.

A spawned run is (name, output dir, config overrides, prepare): `prepare(cfg, rank)` damages the
output directory or the environment before run_training starts (rank 0 alone decides which
checkpoint to load, so damage done by rank 0 before it enters run_training is seen by all).
"""
import errno
import os
import shutil

import numpy as np

from fsdp2_core.testing.spawn import spawn_runs
from fsdp2_core.testing.tiny import datasets, tiny_config


# ---------------------------------------------------------------- damaging files
def flip_byte(path, offset=None):
    """Invert one byte in place (the middle one by default): the size stays, the content does not."""
    size = os.path.getsize(path)
    offset = size // 2 if offset is None else offset
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))
    return path


def write_corpus(prefix, vocab=100, documents=60, dtype=np.uint16):
    """A small Megatron .bin/.idx corpus whose token ids reach vocab - 1."""
    from fsdp2_core.data.megatron import IndexedDatasetBuilder
    rng = np.random.default_rng(0)
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=dtype)
    for d in range(documents):
        n = int(rng.integers(20, 60))
        tokens = (d + np.arange(n)) % vocab
        tokens[-1] = vocab - 1
        builder.add_item(tokens.astype(dtype))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def set_sequence_length(prefix, sequence, value):
    """Write `value` as the int32 length of `sequence` in the .idx (header is 34 bytes)."""
    with open(prefix + ".idx", "r+b") as fh:
        fh.seek(34 + 4 * sequence)
        fh.write(np.int32(value).tobytes())


# ---------------------------------------------------------------- prepare hooks (run on every rank)
def nothing(cfg, rank):
    return None


class CopyThen:
    """Rank 0 copies `source` to the run's output dir, then damages it: DAMAGES[damage](output dir, *args)."""

    def __init__(self, source, damage, *args):
        self.source, self.damage, self.args = source, damage, args

    def __call__(self, cfg, rank):
        if rank == 0:
            shutil.copytree(self.source, cfg.training.output_dir)
            DAMAGES[self.damage](cfg.training.output_dir, *self.args)


def _flip_distcp(out, iteration, name):
    flip_byte(os.path.join(out, f"iter_{iteration:07d}", name))


def _write(out, rel, text):
    with open(os.path.join(out, rel), "w") as fh:
        fh.write(text)


DAMAGES = {"flip": _flip_distcp, "write": _write}


def make_file(cfg, rank):
    """--save names an existing file."""
    if rank == 0:
        with open(cfg.training.output_dir, "w") as fh:
            fh.write("not a directory")


def unwritable_on_rank0(cfg, rank):
    """Rank 0 cannot write in the output dir (a read-only mount; chmod does not stop root, so the probe's
    writes are refused the way the kernel refuses them). Returns the undo."""
    if rank != 0:
        return None
    from fsdp2_core.train import output_dir

    def refuse(path, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
    output_dir.open = refuse
    return lambda: delattr(output_dir, "open")


def read_error_on_rank1(cfg, rank):
    """A disk error while rank 1 reads checkpoint data at resume (EIO from a failing disk)."""
    if rank != 1:
        return None
    from torch.distributed.checkpoint import FileSystemReader
    original = FileSystemReader.read_data

    def read_data(self, plan, planner):
        raise OSError(errno.EIO, os.strerror(errno.EIO), os.path.join(str(self.path), "__1_0.distcp"))
    FileSystemReader.read_data = read_data
    return lambda: setattr(FileSystemReader, "read_data", original)


# ---------------------------------------------------------------- spawned runs
def _run_one(run):
    """One run_training per rank: {'result': summary or 'ErrorType: text', 'lines': what rank 0 printed}."""
    import torch.distributed as dist

    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.train import run_training
    name, out_dir, over, prepare, synthetic = run
    rank = int(os.environ["RANK"])
    cfg = tiny_config(out_dir, **over)
    undo = prepare(cfg, rank)
    lines = []
    try:
        result = run_training(cfg, datasets=datasets() if synthetic else None, checkpoint=Checkpointer(cfg),
                              print_fn=lines.append)
    except Exception as exc:  # noqa: BLE001  (the test inspects the type and text)
        result = f"{type(exc).__name__}: {exc}"
        if dist.is_initialized():
            dist.destroy_process_group()
    finally:
        if undo is not None:
            undo()
    return {"name": name, "result": result, "lines": lines}


def spawn_cases(world, runs, timeout=400):
    """runs: [(name, output dir, overrides, prepare, synthetic data)] in order; {name: [per-rank outcome]}."""
    per_rank = spawn_runs(world, _run_one, runs, timeout=timeout)
    return {run[0]: [per_rank[r][i] for r in range(world)] for i, run in enumerate(runs)}
