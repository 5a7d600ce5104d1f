"""build_sft_datasets(cfg, tokenizer) -> (train, valid, None): the whole fine-tuning data path.

    names / inline dict → DatasetAttr → raw records → converter → drop bad records (counted)
    → mix → template + supervised processor → split validation → packing → SFTDataset

Tokenizing runs once: with `tokenized_path` the result is saved there after the first
run and loaded afterwards (`overwrite_cache` rebuilds). With several ranks one rank
builds (rank 0 when `data_shared_file_system`, else local rank 0 of every node), saves
to a cache named by a hash of the data config, and the others wait, then load it.
"""
import hashlib
import json
import logging
import os
from typing import Dict, List, Optional, Tuple

from .collator import SFTCollator
from .converters import check_columns, convert_indexed
from .dataset_info import DatasetAttr, parse_datasets
from .loader import first_record, load_raw, resolve_path
from .mixing import merge, split_validation
from .packing import pack_batch, sample_budget
from .processor import SupervisedOptions, make_preprocess
from .templates import get_template

log = logging.getLogger(__name__)
SHOW_REASONS = 5
STANDARD_COLUMNS = ["_prompt", "_response", "_system", "_tools", "_error", "_source", "_index"]
BOOKKEEPING = ["_error", "_source", "_index"]  # where a record came from, why it was dropped: gone after tokenizing


def _features(kind: str):
    """Column types of each step's output, stated: inferred ones break when a first write batch holds only
    dropped records (an all-None `_error`, empty token lists) and a later one does not."""
    import datasets
    text, number = datasets.Value("string"), datasets.Value("int64")
    message = {"role": text, "content": text}
    bookkeeping = {"_error": text, "_source": text, "_index": number}
    if kind == "converted":
        return datasets.Features({"_prompt": [message], "_response": [message], "_system": text, "_tools": text,
                                  **bookkeeping})
    tokens = {"input_ids": [number], "labels": [number], "_truncated": number}
    if kind == "tokenized":
        return datasets.Features({**tokens, **bookkeeping})
    return datasets.Features({**tokens, "seq_lens": [number]})  # packed


# --- datasets the engine reads --------------------------------------------------------------------------

class SFTDataset:
    """Map-style view the engine samples from; `collate_fn` builds its micro-batches."""

    def __init__(self, data, collate_fn: SFTCollator, name: str = "train"):
        self.data, self.collate_fn, self.name = data, collate_fn, name

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        row = self.data[int(i)]
        return {k: row[k] for k in ("input_ids", "labels", "seq_lens") if k in row}


class StreamingSFTDataset:
    """A stream read in order; `length` is what the run will draw. Indices must mostly increase (each rank's do);
    a smaller index, or the end of the stream, starts a new pass."""

    def __init__(self, stream, collate_fn: SFTCollator, length: Optional[int] = None, name: str = "train"):
        self.stream, self.collate_fn, self.length, self.name = stream, collate_fn, length, name
        self._it, self._pos, self._row = None, -1, None

    def __len__(self):
        if self.length is None:
            raise TypeError("a streamed dataset has no length; the run's max_steps gives it one")
        return self.length

    def __iter__(self):
        for row in self.stream:
            yield {k: row[k] for k in ("input_ids", "labels", "seq_lens") if k in row}

    def _next(self):
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self)
            return next(self._it)

    def __getitem__(self, i):
        i = int(i)
        if self._it is None or i < self._pos:
            self._it, self._pos = iter(self), -1
        while self._pos < i:
            self._row, self._pos = self._next(), self._pos + 1
        return self._row


# --- steps ---------------------------------------------------------------------------------------------

def _where(example) -> str:
    return f"{example['_source']}#{example['_index']}"


SHOW_INDICES = 50


def _log_dropped(name: str, dropped: List[Dict], total: int, what: str) -> None:
    """One warning line: how many records were dropped, each named by dataset and index (record number
    in its file, from 0), the first ones with their reasons."""
    if not dropped:
        return
    reasons = "; ".join(f"{_where(e)}: {e['_error']}" for e in dropped[:SHOW_REASONS])
    named = ", ".join(_where(e) for e in dropped[:SHOW_INDICES])
    more = f" and {len(dropped) - SHOW_INDICES} more" if len(dropped) > SHOW_INDICES else ""
    log.warning("dataset %s: dropped %d of %d records that do not fit %s: %s%s; reasons: %s", name, len(dropped),
                total, what, named, more, reasons)


def _dropped(ds) -> List[Dict]:
    return [e for e in ds.select_columns(["_error", "_source", "_index"]) if e["_error"]]


class _StreamDropLog:
    """Counts and logs dropped records of a stream as they pass."""

    def __init__(self, name):
        self.name, self.count = name, 0

    def __call__(self, example) -> bool:
        if example["_error"] is None:
            return True
        self.count += 1
        if self.count <= SHOW_REASONS:
            log.warning("dataset %s: dropped record %s (%d dropped so far): %s", self.name, _where(example), self.count,
                        example["_error"])
        return False


def _map_kwargs(d, streaming: bool, desc: str) -> Dict:
    if streaming:
        return {}
    return {"num_proc": d.preprocessing_num_workers if (d.preprocessing_num_workers or 0) > 1 else None,
            "load_from_cache_file": not d.overwrite_cache, "desc": desc}


def _convert_one(attr: DatasetAttr, d, seed: int):
    streaming = d.streaming
    raw = load_raw(attr, d.dataset_dir, streaming=streaming, skip_invalid_lines=d.skip_invalid_lines)
    if d.max_samples and not streaming:
        raw = raw.select(range(min(d.max_samples, len(raw))))
    where = resolve_path(attr.source, d.dataset_dir)
    columns = raw.column_names or list(first_record(raw, attr, where).keys())
    check_columns(attr, columns, where)
    converted = raw.map(convert_indexed, fn_kwargs={"attr": attr}, with_indices=True, remove_columns=columns,
                        features=_features("converted"),
                        **_map_kwargs(d, streaming, f"converting {attr.name} ({attr.formatting})"))
    if streaming:
        return converted.filter(_StreamDropLog(attr.name))
    dropped = _dropped(converted)
    _log_dropped(attr.name, dropped, len(converted), f"the {attr.formatting} format")
    if dropped and len(dropped) == len(converted):
        first = f"{_where(dropped[0])}: {dropped[0]['_error']}"
        raise ValueError(f"dataset {attr.name!r} ({where}): every one of its {len(converted)} records was dropped as "
                         f"not fitting the {attr.formatting} format, e.g. {first}; "
                         "check its formatting, columns and tags in dataset_info.json")
    return converted.filter(lambda e: e["_error"] is None, **_map_kwargs(d, False, "dropping bad records"))


def _tokenize(ds, template, tokenizer, d, name: str):
    opts = SupervisedOptions(sample_budget(d.cutoff_len, d.packing), d.train_on_prompt, d.mask_history)
    kw = _map_kwargs(d, d.streaming, f"tokenizing {name}")
    columns = STANDARD_COLUMNS if d.streaming else ds.column_names
    out = ds.map(make_preprocess(template, tokenizer, opts), batched=True, batch_size=d.preprocessing_batch_size,
                 remove_columns=columns, features=_features("tokenized"), **kw)
    if d.streaming:
        return out.filter(_StreamDropLog(name)).remove_columns(BOOKKEEPING)
    dropped = _dropped(out)
    _log_dropped(name, dropped, len(out), f"template {template.name}")
    if dropped and len(dropped) == len(out):
        raise ValueError(f"{name}: every one of its {len(out)} records failed template {template.name}, e.g. "
                         f"{_where(dropped[0])}: {dropped[0]['_error']}")
    out = out.filter(lambda e: e["_error"] is None, **_map_kwargs(d, False, "dropping bad records"))
    out = out.remove_columns(BOOKKEEPING)
    truncated = sum(out["_truncated"])
    if truncated:
        log.info("dataset %s: %d of %d samples were longer than %d tokens%s and were truncated", name, truncated,
                 len(out), opts.cutoff_len, " (cutoff_len - 1: packing)" if d.packing else " (cutoff_len)")
    return out


def _pack(ds, d, name: str, pad_id: int):
    if not d.packing:
        return ds
    kw = _map_kwargs(d, d.streaming, f"packing {name}")
    columns = None if d.streaming else ds.column_names
    return ds.map(pack_batch, batched=True, batch_size=d.preprocessing_batch_size,
                  fn_kwargs={"cutoff_len": d.cutoff_len, "pad_id": pad_id}, remove_columns=columns,
                  features=_features("packed"), **kw)


def _load_mixed(attrs, d, seed):
    return merge([_convert_one(a, d, seed) for a in attrs], d.mix_strategy, d.interleave_probs, seed, d.streaming)


def prepare(cfg, tokenizer, template=None) -> Dict[str, object]:
    """{"train": ..., "validation": ... or "validation_<name>": ...} as datasets (not yet wrapped)."""
    d, seed = cfg.data, cfg.training.seed
    template = template or get_template(d, tokenizer)
    out = {}
    attrs = parse_datasets(d.dataset, d.dataset_dir)
    if not attrs:
        raise ValueError("data.dataset is empty: name datasets from dataset_info.json or give one inline")
    if d.eval_dataset and d.val_size:
        raise ValueError("eval_dataset and val_size exclude each other; keep one")
    train = _tokenize(_load_mixed(attrs, d, seed), template, tokenizer, d, "train")
    train, valid = split_validation(train, d.val_size, seed, d.streaming, d.buffer_size)
    pad = tokenizer.pad_token_id
    out["train"] = _pack(train, d, "train", pad)
    if valid is not None:
        out["validation"] = _pack(valid, d, "validation", pad)
    eval_attrs = parse_datasets(d.eval_dataset, d.dataset_dir)
    if eval_attrs and d.eval_on_each_dataset:
        for a in eval_attrs:
            out[f"validation_{a.name}"] = _pack(_tokenize(_convert_one(a, d, seed), template, tokenizer, d, a.name), d,
                                                a.name, pad)
    elif eval_attrs:
        out["validation"] = _pack(_tokenize(_load_mixed(eval_attrs, d, seed), template, tokenizer, d, "eval"), d,
                                  "validation", pad)
    return out


# --- caching and ranks ---------------------------------------------------------------------------------

_HASHED_FIELDS = ("template", "dataset", "eval_dataset", "cutoff_len",
                  "train_on_prompt", "mask_history", "mix_strategy",
                  "interleave_probs", "max_samples", "val_size", "eval_on_each_dataset", "packing", "neat_packing",
                  "tool_format", "default_system", "enable_thinking", "preprocessing_batch_size")


def cache_key(cfg, tokenizer) -> str:
    d = cfg.data
    parts = {k: getattr(d, k) for k in _HASHED_FIELDS}
    parts["seed"] = cfg.training.seed
    parts["tokenizer"] = [getattr(tokenizer, "name_or_path", ""), len(tokenizer), tokenizer.eos_token,
                          tokenizer.pad_token, getattr(tokenizer, "chat_template", None)]
    files = []
    for spec in (d.dataset, d.eval_dataset):
        for a in parse_datasets(spec, d.dataset_dir) if spec else []:
            if a.load_from == "file":
                p = resolve_path(a.source, d.dataset_dir)
                st = os.stat(p)
                files.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
    parts["files"] = files
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _auto_cache_dir(cfg, tokenizer) -> str:
    root = cfg.data.data_cache_path or os.path.join(cfg.training.output_dir or ".", "data_cache")
    return os.path.join(root, f"lf_sft_{cache_key(cfg, tokenizer)}")


def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def _is_builder(dist, shared_fs: bool) -> bool:
    if dist is None:
        return True
    if shared_fs:
        return dist.get_rank() == 0
    return int(os.environ.get("LOCAL_RANK", dist.get_rank())) == 0


def _save(parts: Dict[str, object], path: str) -> None:
    import datasets
    tmp = path + ".tmp"
    datasets.DatasetDict(parts).save_to_disk(tmp)
    if os.path.exists(path):
        import shutil
        shutil.rmtree(path)
    os.replace(tmp, path)


def _load(path: str) -> Dict[str, object]:
    import datasets
    return dict(datasets.load_from_disk(path))


def prepare_once(cfg, tokenizer, template) -> Dict[str, object]:
    """prepare(), run by one rank (per node without a shared file system) and loaded by the others."""
    d = cfg.data
    if d.streaming:
        if d.tokenized_path:
            raise ValueError("tokenized_path needs streaming off: a stream cannot be saved")
        return prepare(cfg, tokenizer, template)
    path = d.tokenized_path
    if path and os.path.isdir(path) and not d.overwrite_cache:
        log.warning("loading the tokenized dataset from %s; the dataset options are not applied again "
                    "(set overwrite_cache to rebuild)", path)
        return _load(path)
    dist = _dist()
    if dist is None and not path:
        return prepare(cfg, tokenizer, template)
    target = path or _auto_cache_dir(cfg, tokenizer)
    if _is_builder(dist, d.data_shared_file_system):
        if d.overwrite_cache or not os.path.isdir(target) or path:
            parts = prepare(cfg, tokenizer, template)
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            _save(parts, target)
            log.info("tokenized dataset saved to %s", target)
    if dist is not None:
        dist.barrier()
    return _load(target)


def build_sft_datasets(cfg, tokenizer, stream_length: Optional[int] = None) -> Tuple[object, object, None]:
    """(train, valid, None). valid is None, an SFTDataset, or {name: SFTDataset} with eval_on_each_dataset."""
    d = cfg.data
    template = get_template(d, tokenizer)
    parts = prepare_once(cfg, tokenizer, template)
    collate = SFTCollator(tokenizer.pad_token_id, neat_packing=d.neat_packing, cp_size=cfg.parallel.cp_size,
                          packing=d.packing)

    def wrap(ds, name, length=None):
        if d.streaming:
            return StreamingSFTDataset(ds, collate, length, name)
        return SFTDataset(ds, collate, name)

    train = wrap(parts["train"], "train", stream_length)
    if "validation" in parts:
        valid = wrap(parts["validation"], "validation", int(d.val_size) if d.streaming and d.val_size else None)
    else:
        valid = {k[len("validation_"):]: wrap(v, k) for k, v in parts.items() if k.startswith("validation_")} or None
    if not d.streaming:
        log.info("sft data: %d train rows%s", len(train),
                 "" if valid is None else f", validation {sizes(valid)}")
    return train, valid, None


def sizes(valid) -> str:
    if isinstance(valid, dict):
        return ", ".join(f"{k}: {len(v)}" for k, v in valid.items())
    return str(len(valid))


class _Concat:
    """Several validation sets read as one (the engine reports one validation loss)."""

    def __init__(self, parts: List[SFTDataset]):
        self.parts, self.collate_fn = parts, parts[0].collate_fn
        self.offsets = [0]
        for p in parts:
            self.offsets.append(self.offsets[-1] + len(p))

    def __len__(self):
        return self.offsets[-1]

    def __getitem__(self, i):
        import bisect
        k = bisect.bisect_right(self.offsets, int(i)) - 1
        return self.parts[k][int(i) - self.offsets[k]]


class EpochView:
    """`num_samples` draws over a dataset read epoch after epoch, each epoch in its own seeded order
    (in file order with `disable_shuffling`), as the engine's sequential sampler expects."""

    def __init__(self, data, num_samples: int, seed: int, shuffle: bool = True):
        import numpy as np
        self.data, self.num_samples, self.collate_fn = data, int(num_samples), data.collate_fn
        self._n, self._seed, self._shuffle, self._np = len(data), seed, shuffle, np
        self._orders = {}

    def __len__(self):
        return self.num_samples

    def _order(self, epoch: int):
        if epoch not in self._orders:
            rng = self._np.random.default_rng([self._seed, epoch])
            self._orders = {epoch: rng.permutation(self._n) if self._shuffle else self._np.arange(self._n)}
        return self._orders[epoch]

    def __getitem__(self, i):
        epoch, j = divmod(int(i), self._n)
        return self.data[int(self._order(epoch)[j])]


def build_engine_datasets(cfg, tokenizer, num_train_samples: Optional[int] = None, global_batch: Optional[int] = None):
    """(train, valid, None) for the engine: the train set read for `num_train_samples` draws (epochs repeat,
    reshuffled), one validation set (per-dataset sets are read as one)."""
    if tokenizer is None:
        raise ValueError("data_manager_type lf needs a tokenizer: set model.tokenizer_name_or_path or "
                         "model_name_or_path")
    train, valid, test = build_sft_datasets(cfg, tokenizer, stream_length=num_train_samples)
    if num_train_samples and not cfg.data.streaming:
        if len(train) == 0:
            raise ValueError("no training samples are left after dropping bad records")
        train = EpochView(train, num_train_samples, cfg.training.seed, not cfg.training.disable_shuffling)
    if isinstance(valid, dict):
        log.warning("eval_on_each_dataset: the engine reports one validation loss over %s", ", ".join(valid))
        valid = _Concat(list(valid.values()))
    if valid is not None and global_batch and not cfg.data.streaming and 0 < len(valid) < global_batch:
        # the engine draws whole global batches; a smaller set (e.g. a packed one) is read round to fill one
        log.warning("validation set has %d rows, fewer than the global batch %d; it is repeated to fill a batch",
                    len(valid), global_batch)
        valid = EpochView(valid, global_batch, cfg.training.seed, shuffle=False)
    return train, valid, test
