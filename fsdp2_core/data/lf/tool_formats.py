"""Tool formats: how a tool list enters the system prompt and how a function call is written.

A function message's content is JSON: one call `{"name": ..., "arguments": {...}}` or a
list of them (LLaMA-Factory's convention). Each format turns the tool list into a text
appended to the system message, and the calls into the assistant's text.
"""
import json
from typing import Any, Callable, Dict, List, Tuple

Call = Tuple[str, Any]  # (name, arguments as a JSON-able value)


def parse_calls(content: str) -> List[Call]:
    """The calls of a function message; ValueError when it is not such JSON."""
    try:
        value = json.loads(content)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"function message is not JSON ({exc}): {content[:80]!r}") from None
    calls = value if isinstance(value, list) else [value]
    out = []
    for call in calls:
        if not isinstance(call, dict) or "name" not in call or "arguments" not in call:
            raise ValueError(f"function call needs 'name' and 'arguments': {str(call)[:80]!r}")
        args = call["arguments"]
        if isinstance(args, str):  # arguments given as a JSON string
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        out.append((call["name"], args))
    return out


def parse_tools(tools: Any) -> List[Dict[str, Any]]:
    if isinstance(tools, str):
        tools = json.loads(tools) if tools.strip() else []
    return list(tools or [])


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


# --- default: a ReAct-style "Action / Action Input" format ---------------------------------

def _default_tools(tools: List[Dict[str, Any]]) -> str:
    described, names = "", []
    for tool in tools:
        tool = tool.get("function", {}) if tool.get("type") == "function" else tool
        lines = ""
        params = tool.get("parameters", {}) or {}
        required = set(params.get("required", []))
        for name, spec in (params.get("properties", {}) or {}).items():
            extra = ", required" if name in required else ""
            enum = ", should be one of [{}]".format(", ".join(spec["enum"])) if spec.get("enum") else ""
            items = ", where each item should be {}".format(spec["items"].get("type", "")) if spec.get("items") else ""
            lines += f"  - {name} ({spec.get('type', '')}{extra}): {spec.get('description', '')}{enum}{items}\n"
        described += (f"> Tool Name: {tool['name']}\nTool Description: {tool.get('description', '')}\n"
                      f"Tool Args:\n{lines}\n")
        names.append(tool["name"])
    return ("You have access to the following tools:\n" + described
            + "Use the following format if using a tool:\n```\n"
            + "Action: tool name (one of [" + ", ".join(names) + "])\n"
            + "Action Input: the input to the tool, in a JSON format representing the kwargs "
            + '(e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n')


def _default_calls(calls: List[Call]) -> str:
    return "\n".join(f"Action: {name}\nAction Input: {_dumps(args)}" for name, args in calls)


# --- qwen: Qwen2.5 / Qwen3 <tools> and <tool_call> blocks ----------------------------------

def _qwen_tools(tools: List[Dict[str, Any]]) -> str:
    listed = "".join("\n" + _dumps(t if t.get("type") == "function" else {"type": "function", "function": t})
                     for t in tools)
    return ("\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>" + listed
            + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def _qwen_calls(calls: List[Call]) -> str:
    return "\n".join("<tool_call>\n" + _dumps({"name": n, "arguments": a}) + "\n</tool_call>" for n, a in calls)


# --- llama3: JSON function calls (Llama 3.1 style, tools in the system message) ------------

# Llama 3.1's template heads its system message with these lines; its date is the template's fixed default
# (a date taken from the clock would make the same data tokenize differently from day to day)
LLAMA3_DATE_HEADER = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"


def _llama3_tools(tools: List[Dict[str, Any]]) -> str:
    listed = "".join(json.dumps(t if t.get("type") == "function" else {"type": "function", "function": t},
                                indent=4, ensure_ascii=False) + "\n\n" for t in tools)
    return (LLAMA3_DATE_HEADER
            + "You have access to the following functions. To call a function, please respond with JSON for a "
            'function call. Respond in the format {"name": function name, "parameters": dictionary of argument '
            'name and its value}. Do not use variables.\n\n' + listed)


def _llama3_calls(calls: List[Call]) -> str:
    objs = [{"name": n, "parameters": a} for n, a in calls]
    return _dumps(objs[0] if len(objs) == 1 else objs)


TOOL_FORMATS: Dict[str, Tuple[Callable, Callable]] = {
    "default": (_default_tools, _default_calls),
    "qwen": (_qwen_tools, _qwen_calls),
    "llama3": (_llama3_tools, _llama3_calls),
}


def get_tool_format(name: str):
    if name not in TOOL_FORMATS:
        raise ValueError(f"tool_format {name!r} does not exist; choose one of {sorted(TOOL_FORMATS)}")
    return TOOL_FORMATS[name]
