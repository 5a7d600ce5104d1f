"""Chat templates: how a conversation becomes (prompt, response) text per turn.

A template is a few slots, strings with `{{content}}` and the markers BOS / EOS for
the tokenizer's own begin/end tokens. `render_turns` gives, for every user→assistant
turn, the prompt pieces and the response pieces as text; the processor tokenizes them.
The rules follow LLaMA-Factory's templates of the same names:

  turn 0 prompt = prefix + system(system + tool text) + user      response = assistant
  turn t prompt = user (or observation)                           response = assistant (or function)

Reasoning templates (qwen3, gpt) add the thought block: with `enable_thinking` True an
empty thought is put in front of responses that carry none (and is trained); with
False or None it is appended to the prompt (not trained); False also strips every
thought from the data. With `mask_history` only the last turn keeps its thought (or gets
the empty one). Where the model's own template and LLaMA-Factory part ways, the model's
template is followed; docs/lf_data.md lists each such difference.
"""
import copy
import logging
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

from .tool_formats import get_tool_format, parse_calls, parse_tools

log = logging.getLogger(__name__)

BOS, EOS = "\x00BOS\x00", "\x00EOS\x00"  # markers inside slots, replaced by the tokenizer's tokens
DATA_THOUGHT_WORDS = ("<think>\n", "\n</think>\n\n")
_DATA_THOUGHT = re.compile(r"<think>\n?(.*?)\n?</think>\n*", re.DOTALL)
Slot = Tuple[str, ...]
USER, ASSISTANT, SYSTEM, FUNCTION, OBSERVATION = "user", "assistant", "system", "function", "observation"


@dataclass
class Template:
    name: str
    user: Slot = ("{{content}}",)
    assistant: Slot = ("{{content}}", EOS)
    system: Optional[Slot] = None          # None: same as user
    function: Optional[Slot] = None        # None: same as assistant
    observation: Optional[Slot] = None     # None: same as user
    prefix: Slot = ()
    default_system: str = ""
    stop_words: List[str] = field(default_factory=list)
    thought_words: Tuple[str, str] = DATA_THOUGHT_WORDS
    efficient_eos: bool = False
    replace_eos: bool = False
    reasoning: bool = False
    tool_format: str = "default"
    enable_thinking: Optional[bool] = True
    last_assistant: Optional[Slot] = None  # the conversation's final response, when it ends differently (gpt-oss)
    answer_header: str = ""                # what precedes a response whose thought is dropped (gpt-oss's channel)

    # --- text ---------------------------------------------------------------------------
    @staticmethod
    def fill(slot: Slot, content: str, tokenizer=None) -> str:
        out = []
        for piece in slot:
            if piece == BOS:
                out.append(getattr(tokenizer, "bos_token", None) or "")
            elif piece == EOS:
                out.append(getattr(tokenizer, "eos_token", None) or "")
            else:
                out.append(piece.replace("{{content}}", content))
        return "".join(out)

    def _system_text(self, system: str, tools) -> str:
        system = system or self.default_system
        tool_list = parse_tools(tools) if tools else []
        tool_text = get_tool_format(self.tool_format)[0](tool_list) if tool_list else ""
        if not system:  # no leading blank lines before the tool text (as the families' own templates)
            tool_text = tool_text.lstrip("\n")
        return system + tool_text

    def _message_text(self, message: Dict[str, str], tokenizer, last: bool = False) -> str:
        role, content = message["role"], message["content"]
        if role == USER:
            return self.fill(self.user, content, tokenizer)
        if role == OBSERVATION:
            return self.fill(self.observation or self.user, content, tokenizer)
        assistant = self.last_assistant if last and self.last_assistant else self.assistant
        if role == ASSISTANT:
            return self.fill(assistant, content, tokenizer)
        if role == FUNCTION:
            return self.fill(self.function or assistant, self._function_text(content), tokenizer)
        raise ValueError(f"unexpected role {role!r}")

    def _function_text(self, content: str) -> str:
        """A function message (JSON calls, maybe after a thought) in this template's tool format."""
        thought = ""
        m = self._thought_regex().search(content)
        if m:
            thought, content = m.group(0), content.replace(m.group(0), "")
        return thought + get_tool_format(self.tool_format)[1](parse_calls(content))

    def _thought_regex(self):
        return re.compile(re.escape(self.thought_words[0]) + "(.*?)" + re.escape(self.thought_words[1]), re.DOTALL)

    def remove_thought(self, content: str) -> str:
        return self._thought_regex().sub("", content).lstrip("\n")

    def empty_thought(self) -> str:
        return self.thought_words[0] + self.thought_words[1]

    def _has_thought(self, content: str) -> bool:
        return self.thought_words[0].strip() in content or self.thought_words[1].strip() in content

    def _own_thought_words(self, content: str) -> str:
        """A thought written as <think>...</think> (the data's usual form) in this template's own words:
        gpt-oss carries it in its analysis channel."""
        if self.thought_words == DATA_THOUGHT_WORDS or "<think>" not in content:
            return content
        return _DATA_THOUGHT.sub(lambda m: self.thought_words[0] + m.group(1) + self.thought_words[1], content)

    def _with_thoughts_settled(self, messages, discard_history: bool) -> List[Dict[str, str]]:
        """A copy with the answers' thoughts in this template's words; every thought dropped with
        enable_thinking False, the earlier turns' ones with `discard_history`."""
        messages = [dict(m) for m in messages]
        if not self.reasoning:
            return messages
        for m in messages[1::2]:
            m["content"] = self._own_thought_words(m["content"])
            if self.enable_thinking is False:
                m["content"] = self.remove_thought(m["content"])
        if discard_history:
            for m in messages[1:-2:2]:
                m["content"] = self.remove_thought(m["content"])
        return messages

    def render_turns(self, messages: Sequence[Dict[str, str]], system: str = "", tools=None,
                     tokenizer=None, mask_history: bool = False) -> List[Tuple[List[str], List[str]]]:
        """[(prompt pieces, response pieces)] per turn; messages alternate user/observation, assistant/function.

        With `mask_history` (only the last turn is trained) a reasoning template renders earlier turns as
        the model saw them at inference: their thoughts dropped and no empty thought added, as Qwen3's own
        template and LLaMA-Factory do; the last turn keeps its thought or gets the empty one."""
        if len(messages) % 2:
            raise ValueError(f"a conversation needs prompt/response pairs, got {len(messages)} messages")
        discard_history = self.reasoning and mask_history
        messages = self._with_thoughts_settled(messages, discard_history)
        turns = []
        for i in range(0, len(messages), 2):
            prompt = []
            if i == 0:
                head = self.fill(self.prefix, "", tokenizer)
                sys_text = self._system_text(system, tools)
                if sys_text:
                    head += self.fill(self.system or self.user, sys_text, tokenizer)
                prompt.append(head + self._message_text(messages[0], tokenizer))
            else:
                prompt.append(self._message_text(messages[i], tokenizer))
            is_last = i + 2 == len(messages)
            response = [self._message_text(messages[i + 1], tokenizer, last=is_last)]
            if self.reasoning and not self._has_thought(messages[i + 1]["content"]):
                if discard_history and not is_last:
                    if self.answer_header:
                        response.insert(0, self.answer_header)
                elif self.enable_thinking:
                    response.insert(0, self.empty_thought())
                else:
                    prompt.append(self.empty_thought())
            turns.append((prompt, response))
        return turns

    def render_text(self, messages, system: str = "", tools=None, tokenizer=None, mask_history: bool = False) -> str:
        turns = self.render_turns(messages, system, tools, tokenizer, mask_history)
        return "".join("".join(p) + "".join(r) for p, r in turns)

    # --- tokens -------------------------------------------------------------------------
    def encode_turns(self, tokenizer, messages, system: str = "", tools=None,
                     mask_history: bool = False) -> List[Tuple[List[int], List[int]]]:
        def enc(pieces):
            return [t for p in pieces if p for t in tokenizer.encode(p, add_special_tokens=False)]
        return [(enc(p), enc(r)) for p, r in self.render_turns(messages, system, tools, tokenizer, mask_history)]

    def fix_special_tokens(self, tokenizer) -> None:
        """eos = the first stop word for replace_eos templates; a pad token when the tokenizer has none."""
        stop = list(self.stop_words)
        if self.replace_eos and stop:
            if tokenizer.eos_token != stop[0]:
                tokenizer.add_special_tokens({"eos_token": stop[0]})
                log.info("template %s: eos token is now %s", self.name, stop[0])
        if tokenizer.eos_token_id is None:
            tokenizer.add_special_tokens({"eos_token": "<|endoftext|>"})
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token


_CHATML_USER = ("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",)
_QWEN = dict(user=_CHATML_USER, assistant=("{{content}}<|im_end|>\n",),
             system=("<|im_start|>system\n{{content}}<|im_end|>\n",),
             observation=("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
                          "<|im_start|>assistant\n",),
             stop_words=["<|im_end|>"], replace_eos=True, tool_format="qwen")
_LLAMA3_HEAD = "<|start_header_id|>{}<|end_header_id|>\n\n"

TEMPLATES: Dict[str, Template] = {
    "default": Template("default", user=("Human: {{content}}", EOS, "\nAssistant:"),
                        assistant=("{{content}}", EOS, "\n"), system=("System: {{content}}", EOS, "\n")),
    "empty": Template("empty", assistant=("{{content}}",)),
    "qwen": Template("qwen", default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                     **_QWEN),
    "qwen3": Template("qwen3", reasoning=True, **_QWEN),
    "qwen3_nothink": Template("qwen3_nothink", **_QWEN),
    "llama3": Template("llama3", user=(_LLAMA3_HEAD.format("user") + "{{content}}<|eot_id|>"
                                       + _LLAMA3_HEAD.format("assistant"),),
                       assistant=("{{content}}<|eot_id|>",),
                       system=(_LLAMA3_HEAD.format("system") + "{{content}}<|eot_id|>",),
                       observation=(_LLAMA3_HEAD.format("ipython") + "{{content}}<|eot_id|>"
                                    + _LLAMA3_HEAD.format("assistant"),),
                       prefix=(BOS,), stop_words=["<|eot_id|>", "<|eom_id|>"], replace_eos=True,
                       tool_format="llama3"),
    # gpt-oss (harmony): earlier answers end with <|end|>, the last with <|return|> (the model learns to stop),
    # as the model's own template writes them for training; thoughts go to the analysis channel
    "gpt": Template("gpt", user=("<|start|>user<|message|>{{content}}<|end|><|start|>assistant",),
                    assistant=("{{content}}<|end|>",), last_assistant=("{{content}}<|return|>",),
                    system=("<|start|>system<|message|>{{content}}<|end|>",),
                    default_system="You are ChatGPT, a large language model trained by OpenAI.",
                    thought_words=("<|channel|>analysis<|message|>",
                                   "<|end|><|start|>assistant<|channel|>final<|message|>"),
                    answer_header="<|channel|>final<|message|>", reasoning=True),
}
TEMPLATES["gpt_oss"] = replace(TEMPLATES["gpt"], name="gpt_oss")


def template_from_tokenizer(tokenizer) -> Template:
    """Slots read off the tokenizer's own chat template by rendering placeholder conversations."""
    def render(msgs, gen):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)
    C = "{{content}}"
    prefix = tokenizer.decode(tokenizer.encode("", add_special_tokens=True))
    bos = getattr(tokenizer, "bos_token", None)
    if not prefix and bos:  # a template that writes the bos token itself, once, before the first message
        two = render([{"role": "user", "content": C}, {"role": "assistant", "content": C}] * 2, False)
        if two.startswith(bos) and two.count(bos) == 1:
            prefix = bos
    system_slot = render([{"role": "system", "content": C}], False)[len(prefix):]
    user_with_empty_system = render([{"role": "system", "content": ""},
                                     {"role": "user", "content": C}], True)[len(prefix):]
    user_slot = render([{"role": "user", "content": C}], True)[len(prefix):]
    full = render([{"role": "user", "content": C}, {"role": "assistant", "content": C}], False)
    assistant_slot = full[len(prefix) + len(user_slot):]
    reasoning = "<think>" in assistant_slot
    assistant_slot = assistant_slot.replace("<think>", "").replace("</think>", "").lstrip("\n")
    default_system = ""
    if len(user_slot) > len(user_with_empty_system):  # the template inserts a default system message
        default_system = _inserted(user_with_empty_system, user_slot)
        user_slot = user_slot[len(system_slot.replace(C, default_system, 1)):]
    return Template("tokenizer", user=(user_slot,), assistant=(assistant_slot,), system=(system_slot,),
                    prefix=(prefix,) if prefix else (), default_system=default_system, reasoning=reasoning)


def _inserted(short: str, long: str) -> str:
    """The characters of `long` that are not matched in order by `short`."""
    i, extra = 0, []
    for ch in long:
        if i < len(short) and short[i] == ch:
            i += 1
        else:
            extra.append(ch)
    return "".join(extra)


def get_template(data_args, tokenizer=None) -> Template:
    """The configured template with default_system / tool_format / enable_thinking applied."""
    name = data_args.template
    if name is None or str(name).lower() == "none":
        if tokenizer is not None and isinstance(getattr(tokenizer, "chat_template", None), str):
            log.info("template: none given; reading the tokenizer's own chat template")
            template = template_from_tokenizer(tokenizer)
        else:
            log.warning("template: none given and the tokenizer has no chat template; using `empty`")
            template = copy.deepcopy(TEMPLATES["empty"])
    elif name not in TEMPLATES:
        raise ValueError(f"template {name!r} does not exist; available templates: {', '.join(sorted(TEMPLATES))}")
    else:
        template = copy.deepcopy(TEMPLATES[name])
    if getattr(data_args, "train_on_prompt", False) and template.efficient_eos:
        raise ValueError(f"template {template.name} uses efficient eos, which does not support train_on_prompt")
    if data_args.tool_format is not None:
        get_tool_format(data_args.tool_format)
        template.tool_format = data_args.tool_format  # the function slot stays the template's own
    if data_args.default_system is not None:
        template.default_system = data_args.default_system
    if template.reasoning:
        template.enable_thinking = data_args.enable_thinking
    if tokenizer is not None:
        template.fix_special_tokens(tokenizer)
    return template
