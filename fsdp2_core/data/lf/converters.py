"""Converters: one raw record (alpaca, sharegpt or openai form) → the standard form.

Standard form: {"_prompt": [messages], "_response": [one message], "_system": str,
"_tools": str, "_error": None | reason}. Messages are {"role", "content"} with roles
user, assistant, observation, function. A record that does not fit its format keeps
empty prompt/response and says why in `_error`; the caller drops it and counts.
"""
import json
from typing import Any, Callable, Dict, List

from .dataset_info import DatasetAttr
from .templates import ASSISTANT, FUNCTION, OBSERVATION, USER

PROMPT_SIDE = (USER, OBSERVATION)
RESPONSE_SIDE = (ASSISTANT, FUNCTION)


def _out(prompt, response, system="", tools="", error=None) -> Dict[str, Any]:
    if tools and not isinstance(tools, str):
        tools = json.dumps(tools, ensure_ascii=False)
    return {"_prompt": prompt, "_response": response, "_system": system or "", "_tools": tools or "", "_error": error}


def _bad(reason: str) -> Dict[str, Any]:
    return _out([], [], error=reason)


def _get(example: Dict[str, Any], column, name: str):
    if column is None:
        return None
    if column not in example:
        raise KeyError(f"missing column {column!r} ({name})")
    return example[column]


def convert_alpaca(example: Dict[str, Any], attr: DatasetAttr) -> Dict[str, Any]:
    try:
        prompt: List[Dict[str, str]] = []
        history = _get(example, attr.column("history"), "history")
        if isinstance(history, list):
            for pair in history:
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    return _bad(f"history entry is not a [prompt, response] pair: {str(pair)[:60]}")
                prompt += [{"role": USER, "content": str(pair[0])}, {"role": ASSISTANT, "content": str(pair[1])}]
        parts = [example[c] for c in (attr.column("prompt"), attr.column("query")) if c and example.get(c)]
        if attr.column("prompt") and attr.column("prompt") not in example:
            return _bad(f"missing column {attr.column('prompt')!r} (prompt)")
        prompt.append({"role": USER, "content": "\n".join(str(p) for p in parts)})
        response = _get(example, attr.column("response"), "response")
        if not isinstance(response, str):
            return _bad(f"response column {attr.column('response')!r} is {type(response).__name__}, not text")
        system = _get(example, attr.column("system"), "system") or ""
        tools = _get(example, attr.column("tools"), "tools") or ""
    except KeyError as exc:
        return _bad(str(exc.args[0]))
    return _out(prompt, [{"role": ASSISTANT, "content": response}], system, tools)


def _align(messages: List[Dict[str, Any]]) -> str:
    """'' when roles alternate prompt-side / response-side and end on a response, else the reason."""
    if not messages:
        return "no messages"
    for i, m in enumerate(messages):
        side = PROMPT_SIDE if i % 2 == 0 else RESPONSE_SIDE
        if m["role"] not in side:
            return f"roles out of order: message {i} is {m['role']}, expected one of {'/'.join(side)}"
    if len(messages) % 2:
        return f"odd number of messages ({len(messages)}): the conversation must end with an assistant message"
    return ""


def _sharegpt_like(example: Dict[str, Any], attr: DatasetAttr, openai: bool) -> Dict[str, Any]:
    t = attr.tags
    col = attr.column("messages")
    if col not in example:
        return _bad(f"missing column {col!r} (messages)")
    raw = example[col]
    if not isinstance(raw, list):
        return _bad(f"column {col!r} is {type(raw).__name__}, not a list of messages")
    role_of = {t.get("user_tag"): USER, t.get("assistant_tag"): ASSISTANT, t.get("observation_tag"): OBSERVATION,
               t.get("function_tag"): FUNCTION}
    system = ""
    if attr.column("system") and example.get(attr.column("system")):
        system = example[attr.column("system")]
    messages, tool_replies = [], []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or t["role_tag"] not in m:
            return _bad(f"message {i} has no {t['role_tag']!r} key")
        role, content = m[t["role_tag"]], m.get(t["content_tag"])
        if i == 0 and t.get("system_tag") and role == t["system_tag"]:
            system = content or ""
            continue
        if openai and role in (t.get("assistant_tag"), t.get("function_tag")) and m.get("tool_calls"):
            calls = [c.get("function", c) for c in m["tool_calls"]]
            content, role = json.dumps(calls, ensure_ascii=False), t.get("function_tag")
        if openai and role == t.get("observation_tag"):  # consecutive tool replies form one observation
            tool_replies.append(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False))
            continue
        if tool_replies:
            messages.append({"role": OBSERVATION,
                             "content": "\n</tool_response>\n<tool_response>\n".join(tool_replies)})
            tool_replies = []
        if role not in role_of:
            return _bad(f"message {i} has unknown role {role!r}")
        if not isinstance(content, str):
            return _bad(f"message {i} content is {type(content).__name__}, not text")
        messages.append({"role": role_of[role], "content": content})
    if tool_replies:
        messages.append({"role": OBSERVATION, "content": "\n</tool_response>\n<tool_response>\n".join(tool_replies)})
    reason = _align(messages)
    if reason:
        return _bad(reason)
    tools = example.get(attr.column("tools"), "") if attr.column("tools") else ""
    return _out(messages[:-1], messages[-1:], system, tools)


def convert_sharegpt(example: Dict[str, Any], attr: DatasetAttr) -> Dict[str, Any]:
    return _sharegpt_like(example, attr, openai=False)


def convert_openai(example: Dict[str, Any], attr: DatasetAttr) -> Dict[str, Any]:
    return _sharegpt_like(example, attr, openai=True)


CONVERTERS: Dict[str, Callable[[Dict[str, Any], DatasetAttr], Dict[str, Any]]] = {
    "alpaca": convert_alpaca, "sharegpt": convert_sharegpt, "openai": convert_openai}


def convert(example: Dict[str, Any], attr: DatasetAttr) -> Dict[str, Any]:
    try:
        return CONVERTERS[attr.formatting](example, attr)
    except Exception as exc:  # a malformed record never stops the run
        return _bad(f"{type(exc).__name__}: {exc}")


def convert_indexed(example: Dict[str, Any], index: int, attr: DatasetAttr) -> Dict[str, Any]:
    """convert(), plus the dataset name and record index a drop warning names."""
    return dict(convert(example, attr), _source=attr.name, _index=index)


REQUIRED_COLUMNS = {"alpaca": ("prompt", "response"), "sharegpt": ("messages",), "openai": ("messages",)}
NAMED_ONLY = ("history", "system", "tools")  # optional: checked when the entry names them


def check_columns(attr: DatasetAttr, columns: List[str], where: str) -> None:
    """ValueError when the records lack a column the dataset_info entry needs (every record would be dropped)."""
    wanted = list(REQUIRED_COLUMNS[attr.formatting]) + [k for k in NAMED_ONLY if attr.column(k)]
    missing = [k for k in wanted if attr.column(k) not in columns]
    if not missing:
        return
    expected = ", ".join(f"{k}: {attr.column(k)!r}" for k in wanted)
    raise ValueError(
        f"dataset {attr.name!r} ({where}): its records have no column "
        + ", ".join(f"{attr.column(k)!r} ({k})" for k in missing)
        + f"; the dataset_info entry (formatting {attr.formatting}) expects columns {{{expected}}}, the records have "
        f"{sorted(columns)}. Name the records' columns under \"columns\" in the entry (or fix the formatting)")
