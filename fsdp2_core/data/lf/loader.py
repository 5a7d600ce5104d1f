"""Reading one dataset's raw records from local files (json, jsonl, csv, parquet, arrow, txt).

A `file_name` is looked up in `dataset_dir` first, then as given (absolute, or relative
to the working directory); the log says which path was used. A folder is read whole
(its files must share one type). Hub entries fail here with a clear error: the run is
offline.
"""
import glob
import logging
import os
from typing import List, Tuple

from .dataset_info import DatasetAttr

log = logging.getLogger(__name__)

EXT_TO_BUILDER = {"json": "json", "jsonl": "json", "csv": "csv", "parquet": "parquet", "arrow": "arrow", "txt": "text"}


def resolve_path(file_name: str, dataset_dir: str) -> str:
    """`dataset_dir/file_name` when it exists, else `file_name` as given; ValueError naming both tries."""
    tried = []
    if dataset_dir:
        candidate = os.path.join(dataset_dir, file_name)
        tried.append(candidate)
        if os.path.exists(candidate):
            return candidate
    tried.append(os.path.abspath(file_name))
    if os.path.exists(file_name):
        return file_name
    raise ValueError(f"data file {file_name!r} not found; tried {' and '.join(tried)}")


def _ext(path: str) -> str:
    return path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""


def data_files(path: str) -> Tuple[str, List[str]]:
    """(datasets builder name, files) for a file or a folder."""
    if os.path.isdir(path):
        files = sorted(f for f in glob.glob(os.path.join(path, "**", "*"), recursive=True)
                       if os.path.isfile(f) and not os.path.basename(f).startswith("."))
        kinds = {EXT_TO_BUILDER.get(_ext(f)) for f in files}
        if not files or None in kinds or len(kinds) != 1:
            raise ValueError(f"folder {path} must hold files of one supported type "
                             f"({', '.join(sorted(EXT_TO_BUILDER))}); found {sorted({_ext(f) for f in files})}")
        return kinds.pop(), files
    builder = EXT_TO_BUILDER.get(_ext(path))
    if builder is None:
        raise ValueError(f"data file {path}: unsupported type {_ext(path)!r}; use one of "
                         f"{', '.join(sorted(EXT_TO_BUILDER))}")
    return builder, [path]


def load_raw(attr: DatasetAttr, dataset_dir: str, streaming: bool = False, cache_dir=None):
    """The raw records of one dataset as a datasets.Dataset (IterableDataset when streaming)."""
    if attr.load_from != "file":
        raise ValueError(f"dataset {attr.name!r} comes from {attr.load_from} ({attr.source}); this run is offline and "
                         "cannot download it: download it once, then point a `file_name` at the local copy")
    path = resolve_path(attr.source, dataset_dir)
    builder, files = data_files(path)
    log.info("dataset %s: reading %s (%d file%s, %s)", attr.name, os.path.abspath(path), len(files),
             "" if len(files) == 1 else "s", builder)
    import datasets
    kwargs = {"cache_dir": cache_dir} if cache_dir else {}
    if builder == "arrow" and not streaming:
        ds = datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in files])
    else:
        ds = datasets.load_dataset(builder, data_files=files, split="train", streaming=streaming, **kwargs)
    if attr.num_samples and not streaming:
        n = attr.num_samples
        idx = [i % len(ds) for i in range(n)] if n > len(ds) else list(range(n))
        ds = ds.select(idx)
    return ds
