"""Sequential index loops: blending (a greedy loop that does not vectorise) and sample starts.

The loop is compiled once from `_index_helpers.c` with the system C compiler and loaded through
ctypes (the compiled library is cached under `$FSDP2_CACHE_HOME` or `~/.cache/fsdp2_core`, named by
a hash of the source). Without a compiler the same loop runs in Python: identical results, slower.
Set `FSDP2_DATA_NO_NATIVE=1` to force the Python path.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np

logger = logging.getLogger(__name__)

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_index_helpers.c")
_LIB = None
_LIB_TRIED = False


def _cache_home() -> str:
    root = os.environ.get("FSDP2_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "fsdp2_core"
    )
    return os.path.join(root, "native")


def _compile() -> Optional[str]:
    with open(_SOURCE, "rb") as stream:
        digest = hashlib.sha256(stream.read() + sys.platform.encode()).hexdigest()[:16]
    target_dir = _cache_home()
    target = os.path.join(target_dir, f"index_helpers-{digest}.so")
    if os.path.isfile(target):
        return target
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    os.makedirs(target_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target_dir)
    os.close(fd)
    # -ffp-contract=off: no fused multiply-add, so doubles round as in Megatron's helpers
    cmd = [compiler, "-O2", "-shared", "-fPIC", "-ffp-contract=off", _SOURCE, "-o", tmp]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
        os.replace(tmp, target)  # atomic: concurrent ranks see either nothing or a whole library
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("could not compile %s (%s); using the Python blending loop", _SOURCE, error)
        if os.path.exists(tmp):
            os.remove(tmp)
        return None
    return target


def _library():
    global _LIB, _LIB_TRIED
    if _LIB_TRIED:
        return _LIB
    _LIB_TRIED = True
    if os.environ.get("FSDP2_DATA_NO_NATIVE") == "1":
        return None
    try:
        path = _compile()
        if path is None:
            return None
        lib = ctypes.CDLL(path)
        p = ctypes.c_void_p
        lib.blend_weighted.argtypes = [p, p, p, ctypes.c_int32, ctypes.c_int64, p]
        lib.blend_weighted.restype = None
        lib.blend_exhaustive.argtypes = [p, p, p, ctypes.c_int32, p, p, p]
        lib.blend_exhaustive.restype = None
        for name in ("sample_index_int32", "sample_index_int64"):
            fn = getattr(lib, name)
            fn.argtypes = [p, p, ctypes.c_int64, ctypes.c_int32, ctypes.c_int64, ctypes.c_int32, p]
            fn.restype = None
        _LIB = lib
    except OSError as error:
        logger.warning("could not load the compiled index helpers (%s); using Python", error)
        _LIB = None
    return _LIB


def native_available() -> bool:
    return _library() is not None


def _ptr(array: np.ndarray):
    return array.ctypes.data_as(ctypes.c_void_p)


def build_blending_indices(weights: Sequence[float], size: int) -> Tuple[np.ndarray, np.ndarray]:
    """(dataset_index int16, dataset_sample_index int64) of length `size` for normalised weights."""
    w = np.ascontiguousarray(weights, dtype=np.float64)
    n = len(w)
    dataset_index = np.zeros(size, dtype=np.int16)
    dataset_sample_index = np.zeros(size, dtype=np.int64)
    lib = _library()
    if lib is not None:
        counts = np.zeros(n, dtype=np.int64)
        lib.blend_weighted(
            _ptr(dataset_index), _ptr(dataset_sample_index), _ptr(w), n, size, _ptr(counts)
        )
        return dataset_index, dataset_sample_index
    wl: List[float] = w.tolist()
    counts_l = [0] * n
    rng = range(1, n)
    di, dsi = [0] * size, [0] * size
    for step in range(size):
        x = float(step) if step > 1 else 1.0
        best, best_err = 0, wl[0] * x - float(counts_l[0])
        for d in rng:
            err = wl[d] * x - float(counts_l[d])
            if err > best_err:
                best, best_err = d, err
        di[step] = best
        dsi[step] = counts_l[best]
        counts_l[best] += 1
    dataset_index[:] = di
    dataset_sample_index[:] = dsi
    return dataset_index, dataset_sample_index


def build_exhaustive_blending_indices(sizes: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
    """Indices drawing exactly sizes[d] samples from every dataset d, interleaved by size."""
    s = np.ascontiguousarray(sizes, dtype=np.int64)
    n, total = len(s), int(s.sum())
    dataset_index = np.zeros(total, dtype=np.int16)
    dataset_sample_index = np.zeros(total, dtype=np.int64)
    lib = _library()
    if lib is not None:
        lib.blend_exhaustive(
            _ptr(dataset_index), _ptr(dataset_sample_index), _ptr(s), n,
            _ptr(np.zeros(n, np.int64)), _ptr(np.zeros(n, np.float64)), _ptr(np.zeros(n, np.uint8)),
        )
        return dataset_index, dataset_sample_index
    sl = s.tolist()
    weights = [v / float(total) for v in sl]
    counts = [0] * n
    live = list(range(n))
    step = 0
    while live:
        x = float(step) if step > 1 else 1.0
        best, best_err = -1, 0.0
        for d in live:
            err = weights[d] * x - float(counts[d])
            if best < 0 or err > best_err:
                best, best_err = d, err
        dataset_index[step] = best
        dataset_sample_index[step] = counts[best]
        counts[best] += 1
        if float(sl[best]) - float(counts[best]) == 0.0:
            live.remove(best)
        step += 1
    return dataset_index, dataset_sample_index


def build_sample_index_native(lengths: np.ndarray, document_index: np.ndarray, seq_length: int,
                              num_samples: int, extra_token: int, dtype) -> Optional[np.ndarray]:
    """The sample index by the compiled loop, or None when it is unavailable."""
    lib = _library()
    if lib is None:
        return None
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    document_index = np.ascontiguousarray(document_index, dtype=np.int32)
    out = np.empty((num_samples + 1, 2), dtype=dtype)
    fn = lib.sample_index_int32 if out.dtype == np.int32 else lib.sample_index_int64
    fn(_ptr(lengths), _ptr(document_index), len(document_index), seq_length, num_samples,
       extra_token, _ptr(out))
    return out
