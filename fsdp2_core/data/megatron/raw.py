"""Raw text files as pretraining data: tokenized once, cached as `.bin/.idx`, reused after.

MindSpeed-LLM's `mg` data path accepts a json/jsonl/parquet file where Megatron wants a prefix.
The tokenized copy is named by a hash of the file (path, size, modification time), the tokenizer
and the json key, so an edited file or another tokenizer gets a fresh copy.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

from ..cache import build_then_share
from .indexed_dataset import IndexedDataset


def _fingerprint(raw_path: str, tokenizer, json_key: str, append_eod: bool) -> str:
    stat = os.stat(raw_path)
    identity = getattr(tokenizer, "identity", None) or type(tokenizer).__name__
    key = {
        "path": os.path.abspath(raw_path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "tokenizer": str(identity), "vocab_size": getattr(tokenizer, "vocab_size", None),
        "json_key": json_key, "append_eod": append_eod,
    }
    return hashlib.md5(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def ensure_indexed_dataset(raw_path: str, tokenizer, cache_dir: Optional[str] = None,
                           json_key: str = "text", append_eod: bool = True,
                           no_shared_storage: bool = False) -> str:
    """Prefix of the tokenized copy of `raw_path`, building it on the first call only.

    With torch.distributed initialised every rank must call this; one rank (per node with
    `no_shared_storage`) tokenizes while the others wait at a barrier.
    """
    if not os.path.isfile(raw_path):
        raise FileNotFoundError(f"raw dataset {raw_path} does not exist")
    directory = cache_dir or os.path.join(os.path.dirname(os.path.abspath(raw_path)), "index-cache")
    name = os.path.splitext(os.path.basename(raw_path))[0]
    base = os.path.join(directory, f"{name}-{_fingerprint(raw_path, tokenizer, json_key, append_eod)}")
    prefix = f"{base}_{json_key}_document"

    def build() -> str:
        if IndexedDataset.exists(prefix):
            return prefix
        from .preprocess import preprocess

        os.makedirs(directory, exist_ok=True)
        preprocess(raw_path, base, lambda: tokenizer, json_keys=[json_key],
                   append_eod=append_eod, workers=1, progress=True)
        return prefix

    return build_then_share(build, no_shared_storage)
