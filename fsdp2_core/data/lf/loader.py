"""Reading one dataset's raw records from local files (json, jsonl, csv, parquet, arrow, txt).

A `file_name` is looked up in `dataset_dir` first, then as given (absolute, or relative
to the working directory); the log says which path was used. A folder is read whole
(its files must share one type). Hub entries fail here with a clear error: the run is
offline.

Bad files fail with the file and line named: a JSON-lines line that is not JSON stops the
run (or, with `skip_invalid_lines`, is skipped and counted in one warning); a file with no
records says so.
"""
import glob
import json
import logging
import os
from typing import Iterator, List, Optional, Tuple

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


# --- JSON files: where a bad line is, and reading around it ------------------------------------------------

SHOW_LINES = 10


def is_json_lines(path: str) -> bool:
    """A .json file may hold one JSON document (an array) or JSON lines; .jsonl is always lines."""
    if path.endswith(".jsonl"):
        return True
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return not line.lstrip().startswith("[")
    return True


def json_lines(path: str) -> Iterator[Tuple[int, Optional[dict], str]]:
    """(line number, record, '') for each non-blank line that is one JSON object, else (number, None, why not)."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            if isinstance(value, dict):
                yield number, value, ""
            else:
                yield number, None, f"a JSON {type(value).__name__}, not an object"


def invalid_json_lines(path: str) -> List[Tuple[int, str]]:
    """(line number, reason) of every non-blank line of a JSON-lines file that is not one JSON object."""
    return [(number, why) for number, _, why in json_lines(path) if why]


def json_document_error(path: str) -> str:
    """'' when the file is one valid JSON document, else where and why it is not."""
    with open(path, encoding="utf-8") as f:
        try:
            json.load(f)
        except json.JSONDecodeError as exc:
            return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    return ""


def _valid_records(files: List[str], stamps) -> Iterator[dict]:
    """The JSON objects of the files' valid lines (`stamps`: sizes and times, so a changed file is read anew)."""
    for path in files:
        yield from (value for _, value, why in json_lines(path) if not why)


def _bad_json(name: str, files: List[str]) -> dict:
    """{file: [(line, reason), ...]} of the files that do not read as JSON; a document file gets line 0."""
    found = {}
    for path in files:
        if is_json_lines(path):
            bad = invalid_json_lines(path)
        else:
            where = json_document_error(path)
            bad = [(0, where)] if where else []
        if bad:
            found[path] = bad
    return found


def _describe(bad: dict) -> str:
    parts = []
    for path, lines in bad.items():
        shown = ", ".join(f"line {n}: {why}" for n, why in lines[:SHOW_LINES])
        more = f", and {len(lines) - SHOW_LINES} more" if len(lines) > SHOW_LINES else ""
        parts.append(f"{path} ({shown}{more})")
    return "; ".join(parts)


def _load_json_around_bad_lines(attr: DatasetAttr, files: List[str], skip: bool, failure: Exception):
    """The valid lines of JSON-lines files that datasets could not read; stops (ValueError naming file and
    line) unless `skip` (skip_invalid_lines)."""
    import datasets
    bad = _bad_json(attr.name, files)
    if not bad:
        raise ValueError(f"dataset {attr.name!r}: could not read {', '.join(files)} as JSON: "
                         f"{type(failure).__name__}: {failure}") from failure
    documents = {p: lines for p, lines in bad.items() if lines[0][0] == 0}
    if documents:
        path, lines = next(iter(documents.items()))
        raise ValueError(f"dataset {attr.name!r}: data file {path} is not valid JSON ({lines[0][1]}); "
                         "fix the file (one JSON array, or one JSON object per line)")
    count = sum(len(lines) for lines in bad.values())
    if not skip:
        raise ValueError(f"dataset {attr.name!r}: {count} line{'s' if count > 1 else ''} of its data "
                         f"{'are' if count > 1 else 'is'} not a JSON object: {_describe(bad)}. Fix the "
                         "line, or set data.skip_invalid_lines: true to skip such lines (counted in a warning)")
    log.warning("dataset %s: skipped %d invalid JSON line%s (skip_invalid_lines): %s", attr.name, count,
                "" if count == 1 else "s", _describe(bad))
    stamps = [(p, os.path.getsize(p), os.stat(p).st_mtime_ns) for p in files]
    return datasets.Dataset.from_generator(_valid_records, gen_kwargs={"files": files, "stamps": stamps})


def _stream_json_lines(files: List[str], name: str, skip: bool) -> Iterator[dict]:
    """Streamed JSON lines: a bad line stops the stream naming file and line, or is skipped with a warning."""
    skipped = 0
    for path in files:
        for number, value, why in json_lines(path):
            if not why:
                yield value
                continue
            if not skip:
                raise ValueError(f"dataset {name!r}: {path} line {number} is {why}; fix the line, or set "
                                 "data.skip_invalid_lines: true to skip such lines (counted in a warning)")
            skipped += 1
            log.warning("dataset %s: skipped invalid JSON line %s:%d (%s); %d skipped so far", name, path,
                        number, why, skipped)


def _no_records(attr: DatasetAttr, path: str) -> ValueError:
    return ValueError(f"dataset {attr.name!r}: data file {path} holds no records (it is empty); "
                      "give a file with records, or drop the dataset from data.dataset")


def first_record(raw, attr: DatasetAttr, path: str) -> dict:
    """The first record of a (streamed) dataset; ValueError naming the file when there is none."""
    try:
        return next(iter(raw))
    except StopIteration:
        raise _no_records(attr, path) from None


def load_raw(attr: DatasetAttr, dataset_dir: str, streaming: bool = False, cache_dir=None,
             skip_invalid_lines: bool = False):
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
    if all(os.path.getsize(f) == 0 for f in files):
        raise _no_records(attr, path)
    if builder == "json" and streaming and all(is_json_lines(f) for f in files):
        ds = datasets.IterableDataset.from_generator(
            _stream_json_lines, gen_kwargs={"files": files, "name": attr.name, "skip": skip_invalid_lines})
    elif builder == "arrow" and not streaming:
        ds = datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in files])
    elif builder == "json" and not streaming:
        try:
            ds = datasets.load_dataset(builder, data_files=files, split="train", **kwargs)
        except Exception as exc:  # datasets names neither file nor line: find them
            ds = _load_json_around_bad_lines(attr, files, skip_invalid_lines, exc)
    else:
        ds = datasets.load_dataset(builder, data_files=files, split="train", streaming=streaming, **kwargs)
    if not streaming and len(ds) == 0:
        raise _no_records(attr, path)
    if attr.num_samples and not streaming:
        n = attr.num_samples
        idx = [i % len(ds) for i in range(n)] if n > len(ds) else list(range(n))
        ds = ds.select(idx)
    return ds
