"""Our `lf` data path against LLaMA-Factory's own `get_dataset`, token for token.

    python -m tests.lf.lf_parity                       # every case: templates x datasets x settings
    python -m tests.lf.lf_parity --templates qwen3 llama3 --datasets identity --settings base packing
    python -m tests.lf.lf_parity --max-samples 40      # the first 40 records of each dataset

Needs `llamafactory` importable (an optional extra, installed with --no-deps beside this project's
transformers; docs/lf_data.md gives the recipe) and LLaMA-Factory's demo data (its repository's or
sdist's `data/` folder: found beside an editable install, or named by LLAMAFACTORY_DATA_DIR).
Nothing of LLaMA-Factory is copied here: its data is read where it lies, and the datasets this module
adds (multi-turn sharegpt, openai, reasoning with tools) are written from that data at run time.

Both pipelines get the same dataset_info entries, the same locally trained tokenizer (the chat
special tokens of the families) and the same settings. Per case it prints `identical/total` rows
(input ids and labels; packed rows also their position ids and neat-packing segments). Rows that
differ are explained by the deliberate differences of docs/lf_data.md when one applies to the record
(`deliberate`), else counted as `unexplained`. A case LLaMA-Factory refuses or fails on is reported
with its error.
"""
import argparse
import contextlib
import importlib.machinery
import importlib.util
import io
import json
import logging
import os
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from typing import Dict, List, Optional

TEMPLATES = ["qwen3", "qwen3_nothink", "qwen", "llama3", "default", "empty", "gpt_oss"]
SETTINGS = {
    "base": {},
    "cutoff64": {"cutoff_len": 64},
    "train_on_prompt": {"train_on_prompt": True},
    "mask_history": {"mask_history": True},
    "think_false": {"enable_thinking": False},
    "think_none": {"enable_thinking": None},
    "packing": {"packing": True},
    "neat_packing": {"neat_packing": True},
}
DATASETS = ["alpaca_en_demo", "identity", "sharegpt_multi", "glaive_toolcall_en_demo", "glaive_system",
            "reason_sharegpt", "reason_openai", "reason_openai_nosys", "openai_chat"]
DEFAULT_CUTOFF = 1024
LLAMA31_DATE = "26 Jul 2024"  # Llama 3.1's template default; LLaMA-Factory writes today's date


# ------------------------------------------------------------------------------------------ LLaMA-Factory
def _torchaudio_stand_in() -> None:
    """LLaMA-Factory's multimodal plugin imports torchaudio at module level; text SFT never calls it, and no
    torchaudio wheel matches a CPU torch 2.13, so an empty module stands in when the real one cannot load."""
    try:
        import torchaudio  # noqa: F401
    except Exception:
        stand_in = types.ModuleType("torchaudio")
        stand_in.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stand_in


def llamafactory_available() -> bool:
    if importlib.util.find_spec("llamafactory") is None:
        return False
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    _torchaudio_stand_in()
    try:
        from llamafactory.data import get_dataset  # noqa: F401
    except Exception:
        return False
    return lf_data_dir() is not None


def lf_data_dir() -> Optional[str]:
    given = os.environ.get("LLAMAFACTORY_DATA_DIR")
    if given:
        return given if os.path.isfile(os.path.join(given, "dataset_info.json")) else None
    try:
        import llamafactory
    except Exception:
        return None
    here = os.path.dirname(os.path.abspath(llamafactory.__file__))  # <repo>/src/llamafactory
    candidate = os.path.join(os.path.dirname(os.path.dirname(here)), "data")
    return candidate if os.path.isfile(os.path.join(candidate, "dataset_info.json")) else None


def _fix_llama3_date() -> None:
    """LLaMA-Factory's llama3 tool prompt carries today's date; Llama 3.1's fixed default is compared."""
    from llamafactory.data import tool_utils

    class FixedDate:
        @staticmethod
        def now():
            import datetime
            return datetime.datetime.strptime(LLAMA31_DATE, "%d %b %Y")

    tool_utils.datetime = FixedDate


def lf_rows(case: "Case", tok_dir: str, dataset_dir: str, work: str) -> List[Dict]:
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    from tests.lf.lf_helpers import load_tokenizer
    _fix_llama3_date()
    tokenizer = load_tokenizer(tok_dir)
    data = DataArguments(template=case.template, dataset=case.dataset, dataset_dir=dataset_dir,
                         overwrite_cache=True, max_samples=case.max_samples, **case.options())
    model = ModelArguments(model_name_or_path=tok_dir)
    training = Seq2SeqTrainingArguments(output_dir=os.path.join(work, "lf_out"), report_to=[])
    with contextlib.redirect_stdout(io.StringIO()):
        template = get_template_and_fix_tokenizer(tokenizer, data)
        train = get_dataset(template, model, data, training, stage="sft", tokenizer=tokenizer)["train_dataset"]
    rows = []
    for r in train:
        row = {"input_ids": r["input_ids"], "labels": r["labels"]}
        if case.packed:
            row["position_ids"] = r["position_ids"]
        if case.settings.get("neat_packing"):
            row["boundaries"] = r["packing_params"]["sequence_boundaries"]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ ours
def our_rows(case: "Case", tok_dir: str, dataset_dir: str, work: str) -> List[Dict]:
    from fsdp2_core.data.lf import build_sft_datasets
    from tests.lf.lf_helpers import data_config, load_tokenizer
    tokenizer = load_tokenizer(tok_dir)
    cfg = data_config(work, template=case.template, dataset=case.dataset, dataset_dir=dataset_dir,
                      max_samples=case.max_samples, overwrite_cache=True, **case.options())
    train, _, _ = build_sft_datasets(cfg, tokenizer)
    rows = []
    for i in range(len(train)):
        r = train.data[i]
        row = {"input_ids": r["input_ids"], "labels": r["labels"], "_truncated": r["_truncated"]}
        if case.packed:
            n = len(r["input_ids"])
            batch = train.collate_fn([train[i]])
            row["position_ids"] = batch["position_ids"][0, :n].tolist()
            if case.settings.get("neat_packing"):
                bounds = [0]
                for length in list(r["seq_lens"]) + ([n - sum(r["seq_lens"])] if n > sum(r["seq_lens"]) else []):
                    bounds.append(bounds[-1] + length)
                row["boundaries"] = bounds
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ datasets
def _think(text: str) -> str:
    return f"<think>\n{text}\n</think>\n\n"


def _reason_messages(record: Dict) -> List[Dict]:
    """LLaMA-Factory's reason_tool_use demo (typed parts) → plain messages with thoughts, calls, tool replies."""
    out = []
    for m in record["messages"]:
        parts = {"reasoning": [], "text": [], "tool_call": []}
        for p in m["content"]:
            parts[p["type"]].append(p["value"])
        thought = _think("\n".join(parts["reasoning"])) if parts["reasoning"] else ""
        calls = [json.loads(c) for c in parts["tool_call"]]
        out.append({"role": m["role"], "thought": thought, "text": "\n".join(parts["text"]), "calls": calls})
    return out


def _reason_sharegpt(record: Dict) -> Dict:
    tag = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
    conv = []
    for m in _reason_messages(record):
        if m["calls"]:
            conv.append({"from": "function_call", "value": m["thought"] + json.dumps(m["calls"], ensure_ascii=False)})
        else:
            conv.append({"from": tag[m["role"]], "value": m["thought"] + m["text"]})
    return {"conversations": conv, "tools": record["tools"]}


def _reason_openai(record: Dict) -> Dict:
    msgs = []
    for m in _reason_messages(record):
        if m["calls"]:
            msgs.append({"role": "assistant", "content": m["thought"],
                         "tool_calls": [{"type": "function", "function": c} for c in m["calls"]]})
        else:
            msgs.append({"role": m["role"], "content": m["thought"] + m["text"]})
    return {"messages": msgs, "tools": record["tools"]}


def _multi_turn(alpaca: List[Dict], n: int, openai: bool) -> List[Dict]:
    """Multi-turn chats of three alpaca pairs each, every other one with a system prompt."""
    out = []
    for k in range(n):
        pairs = alpaca[3 * k:3 * k + 3]
        turns = []
        for p in pairs:
            q = p["instruction"] + ("\n" + p["input"] if p["input"] else "")
            turns += [("user", q), ("assistant", p["output"])]
        system = "You are a careful assistant. Answer briefly." if k % 2 == 0 else ""
        if openai:
            msgs = ([{"role": "system", "content": system}] if system else [])
            msgs += [{"role": r, "content": c} for r, c in turns]
            out.append({"messages": msgs})
        else:
            out.append({"conversations": [{"from": "human" if r == "user" else "gpt", "value": c} for r, c in turns],
                        "system": system})
    return out


OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
               "observation_tag": "tool", "system_tag": "system"}  # LLaMA-Factory needs them named; ours defaults


def write_dataset_dir(lf_data: str, path: str) -> str:
    """dataset_info.json naming LLaMA-Factory's demo files where they lie, and the derived datasets."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(lf_data, "dataset_info.json"), encoding="utf-8") as f:
        info = json.load(f)
    entries = {}
    for name in ("alpaca_en_demo", "identity", "glaive_toolcall_en_demo"):
        entries[name] = dict(info[name], file_name=os.path.join(lf_data, info[name]["file_name"]))
    with open(os.path.join(lf_data, "alpaca_en_demo.json"), encoding="utf-8") as f:
        alpaca = json.load(f)
    with open(os.path.join(lf_data, "reason_tool_use_demo_50.jsonl"), encoding="utf-8") as f:
        reason = [json.loads(line) for line in f if line.strip()]
    with open(os.path.join(lf_data, "glaive_toolcall_en_demo.json"), encoding="utf-8") as f:
        glaive = json.load(f)
    # variants that keep clear of the deliberate differences, so the rest of the tool path is compared:
    # glaive chats that have tools, given a system prompt; reasoning chats in openai form without one
    with_tools = [dict(r, system="You are a helpful assistant with tools.") for r in glaive if json.loads(r["tools"])]
    no_system = [{"messages": [m for m in r["messages"] if m["role"] != "system"], "tools": r["tools"]}
                 for r in map(_reason_openai, reason)]
    derived = {
        "sharegpt_multi": (_multi_turn(alpaca, 200, openai=False),
                           {"formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"}}),
        "openai_chat": (_multi_turn(alpaca, 200, openai=True),
                        {"formatting": "openai", "columns": {"messages": "messages"}, "tags": OPENAI_TAGS}),
        "reason_sharegpt": ([_reason_sharegpt(r) for r in reason],
                            {"formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}}),
        "reason_openai": ([_reason_openai(r) for r in reason],
                          {"formatting": "openai", "columns": {"messages": "messages", "tools": "tools"},
                           "tags": OPENAI_TAGS}),
        "reason_openai_nosys": (no_system, {"formatting": "openai", "tags": OPENAI_TAGS,
                                            "columns": {"messages": "messages", "tools": "tools"}}),
        "glaive_system": (with_tools, {"formatting": "sharegpt",
                                       "columns": {"messages": "conversations", "tools": "tools", "system": "system"}}),
    }
    for name, (records, entry) in derived.items():
        file = os.path.join(path, f"{name}.jsonl")
        with open(file, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        entries[name] = dict(entry, file_name=file)
    with open(os.path.join(path, "dataset_info.json"), "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False, indent=1)
    return path


def make_tokenizers(path: str) -> Dict[str, str]:
    """One tokenizer per eos convention: gpt-oss's own ends generation with <|return|>."""
    from tests.lf.lf_helpers import train_tokenizer
    dirs = {"default": os.path.join(path, "tok"), "gpt_oss": os.path.join(path, "tok_gpt_oss")}
    train_tokenizer(dirs["default"])
    train_tokenizer(dirs["gpt_oss"], eos_token="<|return|>", pad_token="<|endoftext|>")
    return dirs


# ------------------------------------------------------------------------------------------ deliberate differences
def _records(case: "Case", dataset_dir: str) -> List[Dict]:
    """Our standard-form records of the case's dataset that its converter keeps, in order."""
    from fsdp2_core.data.lf.converters import convert
    from fsdp2_core.data.lf.dataset_info import parse_datasets
    from fsdp2_core.data.lf.loader import load_raw
    attr = parse_datasets(case.dataset, dataset_dir)[0]
    raw = load_raw(attr, dataset_dir)
    if case.max_samples:
        raw = raw.select(range(min(case.max_samples, len(raw))))
    out = [convert(dict(r), attr) for r in raw]
    return [dict(r, formatting=attr.formatting) for r in out if r["_error"] is None]


def deliberate_reasons(case: "Case", record: Dict) -> List[str]:
    """Which documented deliberate differences (docs/lf_data.md) touch this record under this case."""
    from fsdp2_core.data.lf.tool_formats import parse_calls, parse_tools
    reasons = []
    tools = record["_tools"]
    try:
        tool_list = parse_tools(tools) if tools else []
    except ValueError:
        tool_list = []
    system = record["_system"]
    qwen_tools = case.template in ("qwen3", "qwen3_nothink")  # qwen has a default system prompt
    if qwen_tools and tool_list and not system:
        reasons.append("qwen-tools-no-system")
    if tools and not tool_list:
        reasons.append("empty-tool-list")
    if record["formatting"] == "openai" and (not tool_list or system):
        reasons.append("openai-system-rewrite")
    messages = record["_prompt"] + record["_response"]
    for m in messages:
        if m["role"] == "function":
            try:
                if any(isinstance(a, str) for _, a in parse_calls(_strip_thought(m["content"]))):
                    reasons.append("string-arguments")
            except ValueError:
                pass
    if tool_list and case.template in DEFAULT_TOOL_FORMAT and any(
            "properties" not in (t.get("function", t).get("parameters") or {}) for t in tool_list):
        reasons.append("tool-without-properties")
    if case.template == "empty" and (system or tool_list):
        reasons.append("empty-joined-text")
    if case.template == "gpt_oss":
        if len(messages) > 2:
            reasons.append("gpt-oss-turn-ends")
        if any("<think>" in m["content"] for m in messages):
            reasons.append("gpt-oss-analysis-channel")
        if case.settings.get("train_on_prompt"):
            reasons.append("gpt-oss-train-on-prompt")
    return reasons


DEFAULT_TOOL_FORMAT = ("default", "empty", "gpt_oss")  # the templates that write tools in the ReAct format
# deliberate differences where LLaMA-Factory stops (raises) and we render the records
LF_FAILS = {"tool-without-properties": "KeyError: 'properties'",
            "gpt-oss-analysis-channel": "RuntimeError: Invalid JSON format in function message",
            "gpt-oss-train-on-prompt": "ValueError: Current template does not support `train_on_prompt`"}


def _strip_thought(content: str) -> str:
    if "</think>" in content:
        return content.split("</think>", 1)[1]
    return content


# ------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    template: str
    dataset: str
    setting: str
    max_samples: Optional[int] = None
    settings: Dict = field(default_factory=dict)

    def __post_init__(self):
        self.settings = dict(SETTINGS[self.setting])

    @property
    def packed(self) -> bool:
        return bool(self.settings.get("packing") or self.settings.get("neat_packing"))

    def options(self) -> Dict:
        opts = {"cutoff_len": DEFAULT_CUTOFF}
        opts.update(self.settings)
        return opts

    @property
    def name(self) -> str:
        return f"{self.template:13s} {self.dataset:23s} {self.setting:15s}"


@dataclass
class Result:
    case: Case
    identical: int = 0
    total: int = 0
    deliberate: Dict[str, int] = field(default_factory=dict)
    unexplained: int = 0
    lf_error: str = ""
    ours_error: str = ""
    note: str = ""
    first_diff: str = ""

    @property
    def ok(self) -> bool:
        return not self.unexplained and not self.ours_error

    def line(self) -> str:
        text = f"{self.case.name} {self.identical:5d}/{self.total:<5d}"
        if self.deliberate:
            text += " deliberate " + ",".join(f"{k}:{v}" for k, v in sorted(self.deliberate.items()))
        if self.unexplained:
            text += f" UNEXPLAINED {self.unexplained}"
        if self.lf_error:
            text += f" | LLaMA-Factory fails: {self.lf_error}"
        if self.ours_error:
            text += f" | OURS FAILS: {self.ours_error}"
        if self.note:
            text += f" | {self.note}"
        return text


def _same(a: Dict, b: Dict) -> bool:
    return all(a.get(k) == b.get(k) for k in set(a) | set(b) if not k.startswith("_"))  # "_": ours, not compared


def _diff_text(a: Dict, b: Dict) -> str:
    for k in ("input_ids", "labels", "position_ids", "boundaries"):
        x, y = a.get(k), b.get(k)
        if x != y:
            at = next((i for i, (p, q) in enumerate(zip(x or [], y or [])) if p != q), min(len(x or []), len(y or [])))
            return f"{k} differ at {at} (ours {len(x or [])}, LLaMA-Factory {len(y or [])} long)"
    return ""


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def run_case(case: Case, toks: Dict[str, str], dataset_dir: str, work: str, base_reasons=None) -> Result:
    res = Result(case)
    tok = toks["gpt_oss" if case.template == "gpt_oss" else "default"]
    try:
        ours = our_rows(case, tok, dataset_dir, work)
    except Exception as exc:
        res.ours_error = _error(exc)
        return res
    try:
        theirs = lf_rows(case, tok, dataset_dir, work)
    except Exception as exc:
        res.lf_error = _error(exc)
        res.total = len(ours)
        expected = [k for k in _case_reasons(case, dataset_dir)
                    if k in LF_FAILS and res.lf_error.startswith(LF_FAILS[k])]
        if expected:
            res.deliberate = {k: res.total for k in expected}
        else:
            res.unexplained = res.total
        return res
    res.total = max(len(ours), len(theirs))
    res.identical = sum(_same(a, b) for a, b in zip(ours, theirs))
    diffs = [i for i, (a, b) in enumerate(zip(ours, theirs)) if not _same(a, b)]
    if diffs:
        res.first_diff = f"row {diffs[0]}: " + _diff_text(ours[diffs[0]], theirs[diffs[0]])
    if len(ours) != len(theirs):
        res.note = f"rows: ours {len(ours)}, LLaMA-Factory {len(theirs)}"
    if case.packed:  # packed rows mix records: the case's records say whether a deliberate difference applies
        reasons = base_reasons if base_reasons is not None else _case_reasons(case, dataset_dir)
        if case.template == "gpt_oss" and any(r["_truncated"] for r in ours):
            reasons = reasons + ["gpt-oss-truncated-end"]
        if res.identical < res.total:
            if reasons:
                res.deliberate = {k: res.total - res.identical for k in reasons}
            else:
                res.unexplained = res.total - res.identical
        return res
    records = _records(case, dataset_dir)
    explained_rows = len(records) == len(theirs)
    for i in diffs:
        reasons = deliberate_reasons(case, records[i]) if explained_rows else []
        if case.template == "gpt_oss" and ours[i]["_truncated"]:
            reasons.append("gpt-oss-truncated-end")
        if reasons:
            for k in reasons:
                res.deliberate[k] = res.deliberate.get(k, 0) + 1
        else:
            res.unexplained += 1
    if len(ours) != len(theirs):
        res.unexplained += abs(len(ours) - len(theirs))
    return res


def _case_reasons(case: Case, dataset_dir: str) -> List[str]:
    found = set()
    for r in _records(case, dataset_dir):
        found.update(deliberate_reasons(case, r))
    return sorted(found)


def all_cases(templates=None, datasets=None, settings=None, max_samples=None) -> List[Case]:
    return [Case(t, d, s, max_samples) for t in templates or TEMPLATES for d in datasets or DATASETS
            for s in settings or SETTINGS]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--templates", nargs="*", choices=TEMPLATES)
    parser.add_argument("--datasets", nargs="*", choices=DATASETS)
    parser.add_argument("--settings", nargs="*", choices=list(SETTINGS))
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--show-diffs", action="store_true", help="print where the first differing row differs")
    args = parser.parse_args(argv)
    if not llamafactory_available():
        print("lf_parity: llamafactory (with its demo data) is not importable here; nothing compared")
        return 0
    logging.disable(logging.WARNING)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    import datasets
    datasets.disable_progress_bars()
    work = tempfile.mkdtemp(prefix="lf_parity_")
    dataset_dir = write_dataset_dir(lf_data_dir(), os.path.join(work, "data"))
    toks = make_tokenizers(work)
    cases = all_cases(args.templates, args.datasets, args.settings, args.max_samples)
    print(f"LLaMA-Factory data: {lf_data_dir()}; {len(cases)} cases; cutoff_len {DEFAULT_CUTOFF} unless named")
    start, failed = time.time(), 0
    for case in cases:
        res = run_case(case, toks, dataset_dir, work)
        failed += not res.ok
        print(res.line() + (f"\n    {res.first_diff}" if args.show_diffs and res.first_diff else ""), flush=True)
    print(f"{len(cases) - failed} of {len(cases)} cases identical outside the deliberate differences "
          f"({time.time() - start:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
