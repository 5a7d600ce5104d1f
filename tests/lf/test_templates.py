"""Templates: our text equals the model family's own chat template, rendered by transformers on a local tokenizer."""
import json
from types import SimpleNamespace

import pytest

from fsdp2_core.data.lf.templates import TEMPLATES, get_template
from tests.lf.lf_helpers import chat_template

U1, A1, U2, A2 = "What is two plus two?", "Two plus two is four.", "And three?", "Three plus three is six."
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string",
                                                          "description": "the city"}}, "required": ["city"]}}}]


def args(**kw):
    base = dict(template="qwen3", tool_format=None, default_system=None, enable_thinking=True, train_on_prompt=False)
    base.update(kw)
    return SimpleNamespace(**base)


def official(tokenizer, name, messages, gen=False, **kw):
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen,
                                         chat_template=chat_template(name), **kw)


def ours(tokenizer, name, messages, system="", tools=None, **kw):
    t = get_template(args(template=name, **kw), tokenizer)
    return t, t.render_turns(messages, system, tools, tokenizer)


def text(turns):
    return "".join("".join(p) + "".join(r) for p, r in turns)


def conv(*contents):
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]


# ---- qwen3: the three enable_thinking modes ---------------------------------------------------------------

@pytest.mark.parametrize("thinking", [True, False, None])
def test_qwen3_single_turn_equals_official_template(tokenizer, thinking):
    msgs = conv(U1, A1)
    _, turns = ours(tokenizer, "qwen3", msgs, enable_thinking=thinking)
    assert text(turns) == official(tokenizer, "qwen3", msgs)
    expected_prompt = "<|im_start|>user\nWhat is two plus two?<|im_end|>\n<|im_start|>assistant\n"
    empty = "<think>\n\n</think>\n\n"
    (prompt, response), = turns
    if thinking:  # the empty thought is trained
        assert "".join(prompt) == expected_prompt and "".join(response) == empty + A1 + "<|im_end|>\n"
    else:  # False and None: the empty thought sits in the prompt, as Qwen3's enable_thinking=False prompt
        assert "".join(prompt) == official(tokenizer, "qwen3", msgs[:1], gen=True, enable_thinking=False)
        assert "".join(response) == A1 + "<|im_end|>\n"


def test_qwen3_prompt_equals_generation_prompt(tokenizer):
    (prompt, _), = ours(tokenizer, "qwen3", conv(U1, A1))[1]
    assert "".join(prompt) == official(tokenizer, "qwen3", conv(U1), gen=True)


def test_qwen3_thought_in_data(tokenizer):
    answer = "<think>\nadd them\n</think>\n\n" + A1
    msgs = conv(U1, answer)
    for thinking in (True, None):  # kept and trained, no extra empty thought
        _, turns = ours(tokenizer, "qwen3", msgs, enable_thinking=thinking)
        assert text(turns) == official(tokenizer, "qwen3", msgs)
        assert "".join(turns[0][1]) == answer + "<|im_end|>\n"
    _, turns = ours(tokenizer, "qwen3", msgs, enable_thinking=False)  # stripped, empty thought in the prompt
    assert text(turns) == official(tokenizer, "qwen3", conv(U1, A1))
    assert "".join(turns[0][1]) == A1 + "<|im_end|>\n"


def test_qwen3_multi_turn_last_turn_and_system(tokenizer):
    msgs = conv(U1, A1, U2, A2)
    _, turns = ours(tokenizer, "qwen3", msgs, system="Be brief.", enable_thinking=False)
    full = official(tokenizer, "qwen3", [{"role": "system", "content": "Be brief."}] + msgs)
    # LLaMA-Factory's multi-turn rule: every turn carries the (untrained) empty thought; Qwen3's own template
    # writes it only for the last turn. Both agree on the last turn and the system block.
    assert text(turns).endswith("<|im_start|>user\nAnd three?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
                                "Three plus three is six.<|im_end|>\n")
    assert full.endswith(text(turns[1:]))
    assert text(turns).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert text(turns) == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                           "<|im_start|>user\nWhat is two plus two?<|im_end|>\n"
                           "<|im_start|>assistant\n<think>\n\n</think>\n\nTwo plus two is four.<|im_end|>\n"
                           "<|im_start|>user\nAnd three?<|im_end|>\n"
                           "<|im_start|>assistant\n<think>\n\n</think>\n\nThree plus three is six.<|im_end|>\n")


@pytest.mark.parametrize("thought_in_last", [True, False])
def test_qwen3_mask_history_equals_official_template(tokenizer, thought_in_last):
    """mask_history trains the last turn only; earlier turns are rendered as Qwen3's own template writes them:
    their thoughts dropped, no empty thought; the last turn keeps its thought (or gets the empty one)."""
    last = ("<think>\nsix\n</think>\n\n" if thought_in_last else "") + A2
    msgs = conv(U1, "<think>\nadd them\n</think>\n\n" + A1, U2, last)
    t = get_template(args(template="qwen3"), tokenizer)
    got = t.render_text(msgs, system="Be brief.", mask_history=True)
    assert got == official(tokenizer, "qwen3", [{"role": "system", "content": "Be brief."}] + msgs)
    assert got == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is two plus two?<|im_end|>\n"
                   "<|im_start|>assistant\nTwo plus two is four.<|im_end|>\n<|im_start|>user\nAnd three?<|im_end|>\n"
                   "<|im_start|>assistant\n<think>\n" + ("six" if thought_in_last else "")
                   + "\n</think>\n\nThree plus three is six.<|im_end|>\n")
    assert t.render_text(msgs).count("<think>") == 2  # without mask_history: LLaMA-Factory's rule, every turn


def test_qwen3_nothink_has_no_thought(tokenizer):
    _, turns = ours(tokenizer, "qwen3_nothink", conv(U1, A1))
    assert text(turns) == ("<|im_start|>user\nWhat is two plus two?<|im_end|>\n"
                           "<|im_start|>assistant\nTwo plus two is four.<|im_end|>\n")
    assert tokenizer.eos_token == "<|im_end|>"  # replace_eos


def test_qwen3_tools_and_function_call(tokenizer):
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    msgs = [{"role": "user", "content": "Weather in Paris?"}, {"role": "function", "content": json.dumps(call)}]
    _, turns = ours(tokenizer, "qwen3", msgs, tools=json.dumps(TOOLS))
    hf = [{"role": "user", "content": "Weather in Paris?"},
          {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]}]
    assert text(turns) == official(tokenizer, "qwen3", hf, tools=TOOLS)


def test_empty_tool_list_is_no_tools(tokenizer):
    """`"tools": "[]"` means no tools: no system block, as Qwen3's template renders tools=[] (LLaMA-Factory
    writes an empty system block)."""
    _, turns = ours(tokenizer, "qwen3", conv(U1, A1), tools="[]")
    assert text(turns) == official(tokenizer, "qwen3", conv(U1, A1), tools=[])
    assert text(turns).startswith("<|im_start|>user\n")


def test_string_arguments_written_as_qwen3_writes_them(tokenizer):
    """Arguments given as a JSON string are written as the JSON object they hold, as Qwen3's template writes a
    string argument (as is); LLaMA-Factory quotes the string again."""
    call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    msgs = [{"role": "user", "content": "Weather in Paris?"}, {"role": "function", "content": json.dumps(call)}]
    _, turns = ours(tokenizer, "qwen3", msgs, tools=json.dumps(TOOLS))
    hf = [msgs[0], {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]}]
    assert text(turns) == official(tokenizer, "qwen3", hf, tools=TOOLS)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in text(turns)


def test_tool_without_properties_is_rendered(tokenizer):
    """A tool schema without `properties` (a function of no arguments) is listed with no arguments;
    LLaMA-Factory's default tool format stops the whole dataset on it (KeyError 'properties')."""
    tools = [{"name": "now", "description": "The time", "parameters": {"type": "object"}}]
    _, turns = ours(tokenizer, "default", conv("Time?", "Noon."), tools=json.dumps(tools))
    assert "> Tool Name: now\nTool Description: The time\nTool Args:\n\nUse the following format" in text(turns)


# ---- qwen (2.5): default system, tools, observation -------------------------------------------------------

def test_qwen_multi_turn_equals_official(tokenizer):
    msgs = conv(U1, A1, U2, A2)
    _, turns = ours(tokenizer, "qwen", msgs)
    assert text(turns) == official(tokenizer, "qwen2_5", msgs)
    _, turns = ours(tokenizer, "qwen", msgs, system="Be brief.")
    assert text(turns) == official(tokenizer, "qwen2_5", [{"role": "system", "content": "Be brief."}] + msgs)


def test_qwen_tool_round_trip_equals_official(tokenizer):
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    msgs = [{"role": "user", "content": "Weather in Paris?"}, {"role": "function", "content": json.dumps([call])},
            {"role": "observation", "content": '{"temp": 21}'}, {"role": "assistant", "content": "It is 21 degrees."}]
    _, turns = ours(tokenizer, "qwen", msgs, tools=json.dumps(TOOLS))
    hf = [{"role": "user", "content": "Weather in Paris?"},
          {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]},
          {"role": "tool", "content": '{"temp": 21}'}, {"role": "assistant", "content": "It is 21 degrees."}]
    assert text(turns) == official(tokenizer, "qwen2_5", hf, tools=TOOLS)
    assert "".join(turns[0][1]) == ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
                                    "</tool_call><|im_end|>\n")


def test_default_tool_format(tokenizer):
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    msgs = [{"role": "user", "content": "Weather?"}, {"role": "function", "content": json.dumps(call)}]
    _, turns = ours(tokenizer, "default", msgs, tools=TOOLS)
    assert text(turns) == (
        "System: You have access to the following tools:\n> Tool Name: get_weather\n"
        "Tool Description: Weather of a city\n"
        "Tool Args:\n  - city (string, required): the city\n\nUse the following format if using a tool:\n```\n"
        "Action: tool name (one of [get_weather])\nAction Input: the input to the tool, in a JSON format representing "
        'the kwargs (e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n<|endoftext|>\n'
        'Human: Weather?<|endoftext|>\nAssistant:Action: get_weather\nAction Input: {"city": "Paris"}<|endoftext|>\n')
    _, turns = ours(tokenizer, "qwen", msgs, tools=TOOLS, tool_format="default")  # tool_format overrides
    assert 'Action: get_weather\nAction Input: {"city": "Paris"}<|im_end|>\n' == "".join(turns[0][1])


# ---- llama3, default, empty, gpt ---------------------------------------------------------------------------

def test_llama3_equals_official(tokenizer):
    msgs = conv(U1, A1, U2, A2)
    _, turns = ours(tokenizer, "llama3", msgs, system="Be brief.")
    assert text(turns) == official(tokenizer, "llama3", [{"role": "system", "content": "Be brief."}] + msgs)
    assert tokenizer.eos_token == "<|eot_id|>"
    (p0, _), _ = turns
    assert "".join(p0) == official(tokenizer, "llama3", [{"role": "system", "content": "Be brief."}, msgs[0]], gen=True)


def test_llama3_tools_carry_llama31_date_header(tokenizer):
    """With tools the system message opens with Llama 3.1's header and its fixed default date, never today's."""
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    msgs = [{"role": "user", "content": "Weather?"}, {"role": "function", "content": json.dumps(call)}]
    _, turns = ours(tokenizer, "llama3", msgs, tools=json.dumps(TOOLS))
    tool_json = json.dumps(TOOLS[0], indent=4)
    assert text(turns) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "You have access to the following functions. To call a function, please respond with JSON for a function call. "
        'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. '
        "Do not use variables.\n\n" + tool_json + "\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>')


def test_default_and_empty_exact(tokenizer):
    _, turns = ours(tokenizer, "default", conv(U1, A1, U2, A2), system="Be brief.")
    assert text(turns) == ("System: Be brief.<|endoftext|>\nHuman: What is two plus two?<|endoftext|>\nAssistant:"
                           "Two plus two is four.<|endoftext|>\nHuman: And three?<|endoftext|>\nAssistant:"
                           "Three plus three is six.<|endoftext|>\n")
    _, turns = ours(tokenizer, "empty", conv(U1, A1))
    assert text(turns) == U1 + A1


def test_empty_template_tokenizes_the_joined_text(tokenizer):
    """`empty` writes system and user text side by side; we tokenize the joined text (what the model reads
    when the conversation is rendered to one string), where LLaMA-Factory tokenizes the system and the user
    parts apart. The two differ where a token spans the seam."""
    system, user = "The sea is bl", "ue and deep."
    t = get_template(args(template="empty"), tokenizer)
    (prompt, response), = t.encode_turns(tokenizer, conv(user, "wide"), system=system)
    joined = tokenizer.encode(system + user, add_special_tokens=False)
    apart = tokenizer.encode(system, add_special_tokens=False) + tokenizer.encode(user, add_special_tokens=False)
    assert prompt == joined and joined != apart
    assert response == tokenizer.encode("wide", add_special_tokens=False)


def test_default_system_override(tokenizer):
    _, turns = ours(tokenizer, "qwen", conv(U1, A1), default_system="Answer in French.")
    assert text(turns).startswith("<|im_start|>system\nAnswer in French.<|im_end|>\n")
    _, turns = ours(tokenizer, "qwen", conv(U1, A1), system="Data system.", default_system="Answer in French.")
    assert text(turns).startswith("<|im_start|>system\nData system.<|im_end|>\n")


GPT_SYSTEM = "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.<|end|>"
ANALYSIS, FINAL = "<|start|>assistant<|channel|>analysis<|message|>", "<|start|>assistant<|channel|>final<|message|>"


def test_gpt_oss_harmony_messages(tokenizer):
    """gpt-oss (harmony), as openai/gpt-oss's chat_template.jinja writes a conversation for training: the last
    answer ends with <|return|> alone (after its analysis message, when it has a thought), earlier answers with
    <|end|>. Our system block is LLaMA-Factory's short one (the model's adds dates and a reasoning level)."""
    in_channels = "<|channel|>analysis<|message|>add<|end|><|start|>assistant<|channel|>final<|message|>" + A1
    as_think = "<think>\nadd\n</think>\n\n" + A1  # the data's usual form goes to the analysis channel
    for answer in (in_channels, as_think):
        t, turns = ours(tokenizer, "gpt", conv(U1, answer))
        assert not t.efficient_eos
        assert text(turns) == (GPT_SYSTEM + "<|start|>user<|message|>What is two plus two?<|end|>"
                               + ANALYSIS + "add<|end|>" + FINAL + "Two plus two is four.<|return|>")
        assert "".join(turns[0][1]) == "<|channel|>analysis<|message|>add<|end|>" + FINAL + A1 + "<|return|>"
    _, turns = ours(tokenizer, "gpt", conv(U1, A1), enable_thinking=False)  # the empty thought is prompt
    assert "".join(turns[0][0]).endswith("<|start|>assistant<|channel|>analysis<|message|><|end|>" + FINAL)
    assert "".join(turns[0][1]) == A1 + "<|return|>"
    assert "gpt_oss" in TEMPLATES


def test_gpt_oss_earlier_answers_end_with_end(tokenizer):
    """mask_history renders earlier turns as the model's template does: thought dropped, final channel, <|end|>."""
    msgs = conv(U1, "<think>\nadd\n</think>\n\n" + A1, U2, "<think>\nadd again\n</think>\n\n" + A2)
    t = get_template(args(template="gpt_oss"), tokenizer)
    assert t.render_text(msgs, mask_history=True) == (
        GPT_SYSTEM + "<|start|>user<|message|>What is two plus two?<|end|>" + FINAL + "Two plus two is four.<|end|>"
        "<|start|>user<|message|>And three?<|end|>" + ANALYSIS + "add again<|end|>" + FINAL
        + "Three plus three is six.<|return|>")
    # without mask_history LLaMA-Factory's rule keeps every thought; the turn ends stay the model's
    assert t.render_text(msgs).count("<|return|>") == 1 and t.render_text(msgs).endswith("six.<|return|>")
    assert "Two plus two is four.<|end|><|start|>user" in t.render_text(msgs)


def test_gpt_oss_tool_call_with_thought_is_rendered(tokenizer):
    """A function message with a <think> thought (reasoning-with-tools data) is kept: thought in the analysis
    channel, the call in the template's tool format, not dropped as non-JSON."""
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    msgs = [{"role": "user", "content": "Weather in Paris?"},
            {"role": "function", "content": "<think>\nlook it up\n</think>\n\n" + json.dumps([call])}]
    _, turns = ours(tokenizer, "gpt_oss", msgs, tools=json.dumps(TOOLS))
    assert "".join(turns[0][1]) == ("<|channel|>analysis<|message|>look it up<|end|>" + FINAL
                                    + 'Action: get_weather\nAction Input: {"city": "Paris"}<|return|>')


def test_gpt_oss_ids_and_train_on_prompt(tokenizer):
    """The last trained id is <|return|>; train_on_prompt works (no efficient-eos trick)."""
    from fsdp2_core.data.lf.processor import SupervisedOptions, encode_supervised
    t = get_template(args(template="gpt_oss", train_on_prompt=True), tokenizer)
    turns = t.encode_turns(tokenizer, conv(U1, A1))
    ids, labels, _ = encode_supervised(turns, SupervisedOptions(1024, train_on_prompt=True), t.efficient_eos, 0)
    ret = tokenizer.convert_tokens_to_ids("<|return|>")
    assert ids[-1] == ret and labels == ids and ids.count(tokenizer.convert_tokens_to_ids("<|end|>")) == 3
    long_turns = t.encode_turns(tokenizer, conv(U1, " ".join([A1] * 20)))
    cut, _, truncated = encode_supervised(long_turns, SupervisedOptions(40), t.efficient_eos, 0)
    assert truncated and len(cut) == 40 and ret not in cut  # a cut answer loses its <|return|> (LLaMA-Factory: eos)


# ---- template: None, unknown names --------------------------------------------------------------------------

@pytest.mark.parametrize("family,name", [("qwen2_5", "qwen"), ("qwen3", "qwen3"), ("llama3", None)])
def test_tokenizer_own_template(tokenizer, family, name):
    tokenizer.chat_template = chat_template(family)
    t = get_template(args(template=None), tokenizer)
    msgs = conv(U1, A1, U2, A2)
    got = t.render_text(msgs, tokenizer=tokenizer)
    if family == "qwen3":  # LLaMA-Factory's reasoning rule on every turn; the last turn as the family's own
        assert t.reasoning and got == text(ours(tokenizer, "qwen3", msgs)[1])
        last = t.render_turns(msgs, tokenizer=tokenizer)[-1]
        assert official(tokenizer, family, msgs).endswith("".join(last[0]) + "".join(last[1]))
    elif family == "llama3":
        assert got == official(tokenizer, family, msgs)
    else:
        assert got == official(tokenizer, family, msgs)
        assert t.default_system == TEMPLATES["qwen"].default_system


def test_unknown_template_lists_templates(tokenizer):
    with pytest.raises(ValueError) as e:
        get_template(args(template="qwen9"), tokenizer)
    msg = str(e.value)
    assert "qwen9" in msg and all(n in msg for n in ("default", "empty", "qwen3_nothink", "llama3", "gpt"))


def test_unknown_tool_format(tokenizer):
    with pytest.raises(ValueError, match="tool_format 'nope' does not exist.*qwen"):
        get_template(args(tool_format="nope"), tokenizer)
