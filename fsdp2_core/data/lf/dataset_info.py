"""Dataset descriptions as LLaMA-Factory's `dataset_info.json` writes them.

`data.dataset` is either names from `<dataset_dir>/dataset_info.json` (a list or a
comma-separated string) or a dict written inline: one entry `{file_name, formatting, ...}`
or several `{name: entry}`.
"""
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

COLUMN_NAMES = ("prompt", "query", "response", "history", "messages", "system", "tools")
TAG_NAMES = ("role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag")
FORMATTINGS = ("alpaca", "sharegpt", "openai")

_DEFAULT_COLUMNS = {
    "alpaca": {"prompt": "instruction", "query": "input", "response": "output"},
    "sharegpt": {"messages": "conversations"},
    "openai": {"messages": "messages"},
}
_DEFAULT_TAGS = {
    "sharegpt": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"},
    "openai": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"},
}


@dataclass
class DatasetAttr:
    name: str
    load_from: str = "file"          # file | hf_hub | ms_hub | om_hub | script | cloud_file
    source: Optional[str] = None     # file_name, hub id or script
    formatting: str = "alpaca"
    subset: Optional[str] = None
    split: str = "train"
    folder: Optional[str] = None
    num_samples: Optional[int] = None
    ranking: bool = False
    columns: Dict[str, str] = field(default_factory=dict)
    tags: Dict[str, str] = field(default_factory=dict)

    def column(self, key: str) -> Optional[str]:
        return self.columns.get(key)

    def tag(self, key: str) -> Optional[str]:
        return self.tags.get(key)


def _entry_to_attr(name: str, entry: Dict[str, Any]) -> DatasetAttr:
    if not isinstance(entry, dict):
        raise ValueError(f"dataset {name!r}: its entry must be a mapping, got {type(entry).__name__}")
    for key, kind in (("hf_hub_url", "hf_hub"), ("ms_hub_url", "ms_hub"), ("om_hub_url", "om_hub"),
                      ("script_url", "script"), ("cloud_file_name", "cloud_file"), ("file_name", "file")):
        if entry.get(key):
            load_from, source = kind, entry[key]
            if kind != "file" and entry.get("file_name"):
                load_from, source = "file", entry["file_name"]  # a local copy wins offline
            break
    else:
        raise ValueError(f"dataset {name!r} has none of file_name, hf_hub_url, ms_hub_url, om_hub_url, script_url")
    formatting = entry.get("formatting", "alpaca")
    if formatting not in FORMATTINGS:
        raise ValueError(f"dataset {name!r}: formatting {formatting!r} is not one of {', '.join(FORMATTINGS)}")
    columns = dict(_DEFAULT_COLUMNS[formatting])
    unknown = set(entry.get("columns", {}) or {}) - set(COLUMN_NAMES) - {"images", "videos", "audios", "chosen",
                                                                         "rejected", "kto_tag"}
    if unknown:
        raise ValueError(f"dataset {name!r}: unknown columns {sorted(unknown)}; known: {', '.join(COLUMN_NAMES)}")
    columns.update({k: v for k, v in (entry.get("columns") or {}).items() if v})
    tags = dict(_DEFAULT_TAGS.get(formatting, {}))
    tags.update({k: v for k, v in (entry.get("tags") or {}).items() if k in TAG_NAMES and v})
    return DatasetAttr(name=name, load_from=load_from, source=source, formatting=formatting,
                       subset=entry.get("subset"), split=entry.get("split", "train"), folder=entry.get("folder"),
                       num_samples=entry.get("num_samples"), ranking=bool(entry.get("ranking", False)),
                       columns=columns, tags=tags)


def read_dataset_info(dataset_dir: str) -> Dict[str, Any]:
    path = os.path.join(dataset_dir, "dataset_info.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path} not found: set data.dataset_dir to the folder holding dataset_info.json, "
                         "or give data.dataset inline as a dict") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


def dataset_names(spec: Union[str, List[str], None]) -> List[str]:
    if spec is None:
        return []
    items = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    return [s.strip() for s in items if str(s).strip()]


def _is_single_entry(d: Dict[str, Any]) -> bool:
    return any(k in d for k in ("file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name"))


def parse_datasets(spec: Union[str, List[str], Dict[str, Any], None], dataset_dir: str) -> List[DatasetAttr]:
    """DatasetAttr per dataset named in (or written inline as) `spec`."""
    if spec is None:
        return []
    if isinstance(spec, dict):
        if _is_single_entry(spec):
            return [_entry_to_attr("inline", spec)]
        return [_entry_to_attr(str(name), entry) for name, entry in spec.items()]
    names = dataset_names(spec)
    info = read_dataset_info(dataset_dir)
    missing = [n for n in names if n not in info]
    if missing:
        raise ValueError(f"dataset {', '.join(missing)} not found in {os.path.join(dataset_dir, 'dataset_info.json')}; "
                         f"the datasets there are: {', '.join(sorted(info)) or '(none)'}")
    return [_entry_to_attr(n, info[n]) for n in names]
