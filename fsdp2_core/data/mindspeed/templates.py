"""MindSpeed-LLM's --prompt-type chat templates that are plain slots, rendered as its preprocess_data.py renders them.

The strings are those of MindSpeed-LLM's configs/finetune/templates.json; the rules those of its
mindspeed_llm/tasks/preprocess/templates.py, which three template classes follow:

  Template (LLaMA-Factory 0.8)   turn 0: prefix + system + user; turn t: separator + user; the response is the
                                 assistant slot, which ends with the tokenizer's eos unless efficient_eos (a
                                 template without a system slot writes the system text bare). Each
                                 turn is cut in proportion to a budget (handlers.PROPORTIONAL_CUT).
  Llama2Template                 the same, with the system text written inside the first user slot.
  ReasoningTemplate (0.9)        as Template, cut with infer_seqlen (handlers.SHARED_CUT), and a thought: with
                                 --enable-thinking true an empty thought opens every response that has none
                                 (trained); otherwise it closes the prompt (not trained); false also removes
                                 the thoughts of the data.

Every slot element is encoded on its own (the tokenizer never sees two of them joined), BOS / EOS stand for the
tokenizer's ids (nothing when it has none). A template with replace_eos makes its first stop word the eos; the
other stop words become special tokens. Tool calls and tool lists are not rendered with these templates here.
"""
import copy
import re
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

BOS, EOS = {"bos_token"}, {"eos_token"}
TEMPLATE, LLAMA2, REASONING = "Template", "Llama2Template", "ReasoningTemplate"
THOUGHT_WORDS = ("<think>\n", "\n</think>\n\n")


@dataclass
class PromptTemplate:
    name: str
    user: Tuple = ("{{content}}",)
    assistant: Optional[Tuple] = None      # None: ("{{content}}", EOS), or ("{{content}}",) with efficient_eos
    system: Optional[Tuple] = None         # None: the bare text ("{{content}}")
    observation: Optional[Tuple] = None    # None: the user slot
    separator: Tuple = ()
    prefix: Tuple = ()
    default_system: str = ""
    stop_words: List[str] = field(default_factory=list)
    efficient_eos: bool = False
    replace_eos: bool = False
    kind: str = TEMPLATE
    thought_words: Tuple[str, str] = THOUGHT_WORDS
    enable_thinking: Optional[bool] = None

    @property
    def reasoning(self) -> bool:
        return self.kind == REASONING

    def assistant_slot(self) -> Tuple:
        if self.assistant is not None:
            return self.assistant
        return ("{{content}}",) if self.efficient_eos else ("{{content}}", EOS)

    # --- tokens -------------------------------------------------------------------------
    @staticmethod
    def elements(slot: Sequence, content: str = "") -> list:
        return [piece.replace("{{content}}", content) if isinstance(piece, str) else piece for piece in slot]

    @staticmethod
    def encode_elements(tokenizer, elements) -> List[int]:
        ids: List[int] = []
        for element in elements:
            if isinstance(element, str):
                ids += tokenizer.encode(element, add_special_tokens=False) if element else []
            elif element == BOS and tokenizer.bos_token_id is not None:
                ids.append(tokenizer.bos_token_id)
            elif element == EOS and tokenizer.eos_token_id is not None:
                ids.append(tokenizer.eos_token_id)
        return ids

    def _message_elements(self, i: int, message: Dict[str, str], system_text: str) -> list:
        role, content = message["role"], message["content"]
        if role == "user":
            if self.kind == LLAMA2:  # the system text goes inside the first [INST] ... [/INST]
                return self.elements(self.user, system_text + content)
            return self.elements(self.user, content)
        if role == "assistant":
            return self.elements(self.assistant_slot(), content)
        if role == "observation":
            return self.elements(self.observation or self.user, content)
        raise ValueError(f"--prompt-type {self.name}: {role} messages (tool calls) are not rendered with this "
                         "template here; preprocess them with MindSpeed-LLM")

    def encode_turns(self, tokenizer, messages: Sequence[Dict[str, str]], system: str = "",
                     tools=None) -> List[Tuple[List[int], List[int]]]:
        """[(prompt ids, response ids)] per turn, before MindSpeed-LLM's cut."""
        if tools:
            raise ValueError(f"--prompt-type {self.name}: tool lists are not rendered with this template here; "
                             "preprocess such data with MindSpeed-LLM")
        if len(messages) % 2:
            raise ValueError(f"a conversation needs prompt/response pairs, got {len(messages)} messages")
        messages = copy.deepcopy(list(messages))
        if self.reasoning and self.enable_thinking is False:
            for m in messages[1::2]:
                m["content"] = self.remove_thought(m["content"])
        system = system or self.default_system
        encoded = []
        for i, message in enumerate(messages):
            elements, system_text = [], ""
            if i == 0:
                elements += list(self.prefix)
                if system:
                    formatted = self.elements(self.system or ("{{content}}",), system)
                    if self.kind == LLAMA2:
                        system_text = formatted[0]
                    else:
                        elements += formatted
            elif i % 2 == 0:
                elements += list(self.separator)
            elements += self._message_elements(i, message, system_text)
            encoded.append(self.encode_elements(tokenizer, elements))
        if self.reasoning:
            self._add_empty_thoughts(tokenizer, messages, encoded)
        return [(encoded[i], encoded[i + 1]) for i in range(0, len(encoded), 2)]

    # --- thoughts (ReasoningTemplate) ----------------------------------------------------
    def remove_thought(self, content: str) -> str:
        pattern = re.compile(f"{re.escape(self.thought_words[0])}(.*?){re.escape(self.thought_words[1])}", re.DOTALL)
        return re.sub(pattern, "", content).lstrip("\n")

    def _add_empty_thoughts(self, tokenizer, messages, encoded) -> None:
        thought = tokenizer.encode(self.thought_words[0] + self.thought_words[1], add_special_tokens=False)
        for i in range(0, len(messages), 2):
            answer = messages[i + 1]["content"]
            if self.thought_words[0] in answer or self.thought_words[1] in answer:
                continue
            if self.enable_thinking:
                encoded[i + 1] = thought + encoded[i + 1]
            else:
                encoded[i] = encoded[i] + thought

    # --- tokenizer ------------------------------------------------------------------------
    def fix_special_tokens(self, tokenizer) -> None:
        """MindSpeed-LLM's fix_model_tokenizer: the first stop word becomes the eos (replace_eos), the others
        special tokens; an eos when there is none; the pad is the eos when there is none."""
        stop = list(self.stop_words)
        if self.replace_eos:
            if not stop:
                raise ValueError(f"--prompt-type {self.name}: replace_eos needs a stop word")
            tokenizer.add_special_tokens({"eos_token": stop.pop(0)})
        if tokenizer.eos_token_id is None:
            tokenizer.add_special_tokens({"eos_token": "<|endoftext|>"})
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if stop:
            tokenizer.add_special_tokens({"additional_special_tokens": stop})


_CHATML_USER = ("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",)
_CHATML_SYSTEM = ("<|im_start|>system\n{{content}}<|im_end|>\n",)
_CHATML_ASSISTANT = ("{{content}}<|im_end|>\n",)

MAGISTRAL_SYSTEM = (
    "system_prompt\n\nA user will ask you to solve a task. You should first draft your thinking process (inner "
    "monologue) until you have derived the final answer. Afterwards, write a self-contained summary of your thoughts "
    "(i.e. your summary should be succinct but contain all the critical steps you needed to reach the conclusion). "
    "You should use Markdown to format your response. Write both your thoughts and summary in the same language as "
    "the task posed by the user. NEVER use \\boxed{} in your response.\nYour thinking process must follow the "
    "template below:\n<think>\nYour thoughts or/and draft, like working through an exercise on scratch paper. Be as "
    "casual and as long as you want until you are confident to generate a correct answer.\n</think>\nHere, provide "
    "a concise summary that reflects your reasoning and presents a clear final answer to the user. Don't mention "
    "that this is a summary.\n\nProblem:\n\n")

# configs/finetune/templates.json of MindSpeed-LLM (commit c77308a1), the entries that are plain slots
PROMPT_TEMPLATES: Dict[str, PromptTemplate] = {t.name: t for t in (
    PromptTemplate("qwen", user=_CHATML_USER, system=_CHATML_SYSTEM,
                   observation=("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",),
                   separator=("\n",), default_system="You are a helpful assistant.", stop_words=["<|im_end|>"],
                   replace_eos=True),
    PromptTemplate("llama2", user=(BOS, "[INST] {{content}} [/INST]"),
                   system=("<<SYS>>\n{{content}}\n<</SYS>>\n\n",), kind=LLAMA2),
    PromptTemplate("mistral", user=("[INST] {{content}} [/INST]",), prefix=(BOS,)),
    PromptTemplate("mixtral", user=("[INST] {{content}} [/INST]",), prefix=(BOS,)),
    PromptTemplate("gemma", user=("<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
                   observation=("<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",),
                   separator=("<end_of_turn>\n",), prefix=(BOS,), efficient_eos=True),
    PromptTemplate("deepseek2-lite", user=("User: {{content}}\n\nAssistant:",), system=("{{content}}\n\n",),
                   prefix=(BOS,)),
    PromptTemplate("deepseek3", user=("<｜User｜>{{content}}<｜Assistant｜>",), prefix=(BOS,)),
    PromptTemplate("baichuan2", user=("<reserved_106>{{content}}<reserved_107>",), efficient_eos=True),
    PromptTemplate("cpm", user=("<用户>{{content}}<AI>",), prefix=(BOS,)),
    PromptTemplate("intern2", user=_CHATML_USER, assistant=_CHATML_ASSISTANT, system=_CHATML_SYSTEM, prefix=(BOS,),
                   stop_words=["<|im_end|>"]),
    PromptTemplate("plm", user=_CHATML_USER, assistant=_CHATML_ASSISTANT, system=_CHATML_SYSTEM,
                   default_system="You are a helpful assistant.", stop_words=["<|endoftext|>"], replace_eos=True),
    PromptTemplate("bailing_mini", user=("<role>HUMAN</role>{{content}}<|role_end|><role>ASSISTANT</role>",),
                   assistant=("{{content}}<|role_end|>",), system=("<role>SYSTEM</role>{{content}}<|role_end|>",),
                   observation=("<role>OBSERVATION</role>\n<tool_response>\n{{content}}\n</tool_response>"
                                "<|role_end|><role>ASSISTANT</role>",),
                   stop_words=["<|endoftext|>"], efficient_eos=True),
    PromptTemplate("magistral", user=("[INST]{{content}}[/INST]",), assistant=("{{content}}", EOS),
                   system=("[SYSTEM_PROMPT]{{content}}[/SYSTEM_PROMPT]",), prefix=(BOS,),
                   default_system=MAGISTRAL_SYSTEM, kind=REASONING),
    PromptTemplate("glm4_moe", user=("<|user|>\n{{content}}<|assistant|>",), assistant=("\n{{content}}",),
                   system=("<|system|>\n{{content}}",), observation=("<|observation|>\n{{content}}<|assistant|>",),
                   prefix=("[gMASK]<sop>",), stop_words=["<|user|>", "<|observation|>"], efficient_eos=True,
                   kind=REASONING),
)}

# --prompt-type names of MindSpeed-LLM that are not plain slots, with the reason
REFUSED_PROMPT_TYPES = {
    "deepseek4": "DeepSeek-V4's renderer (DSML tool blocks, latest-reminder and task tokens, reasoning effort) is "
                 "its own code, not a chat template",
    "hunyuan": "Hunyuan-Large renders with its tokenizer's own chat template (HunyuanInstructionHandler)",
}


def prompt_template(prompt_type: str, tokenizer=None, enable_thinking: Optional[bool] = None) -> PromptTemplate:
    """The template of a MindSpeed-LLM --prompt-type, with its tokenizer fixes applied when a tokenizer is given."""
    template = replace(PROMPT_TEMPLATES[prompt_type], enable_thinking=enable_thinking)
    if tokenizer is not None:
        template.fix_special_tokens(tokenizer)
    return template
