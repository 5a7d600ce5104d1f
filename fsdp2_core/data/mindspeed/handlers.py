"""MindSpeed-LLM's instruction handlers: records → (input_ids, labels), as its `preprocess_data.py` writes them.

What MindSpeed-LLM's `AlpacaStyleInstructionHandler` / `SharegptStyleInstructionHandler` do with one record
(its `tasks/preprocess/data_handler.py`, `templates.py` and `utils.py`), re-implemented here:

  messages   the alpaca / sharegpt columns (renamed by --map-keys) become prompt messages and one response.
             An alpaca record without exactly one text response is written as one empty user/assistant turn
             (MindSpeed-LLM keeps it); a sharegpt record whose roles do not alternate is dropped and counted
             here (MindSpeed-LLM stops with an IndexError on it).
  template   --prompt-type renders each message; reasoning templates (qwen3) add the empty thought to the
             response (--enable-thinking true, trained) or to the prompt (false / not given, not trained).
  cut        the conversation is cut turn by turn to a budget: --seq-length, or 100000 tokens when it is not
             given. Templates of MindSpeed's LLaMA-Factory 0.9 classes (qwen3, glm4_moe) share seq_length - 1
             tokens with `infer_seqlen`; those of the 0.8 classes (llama3, empty, llama2, qwen, ...: templates.py)
             split each turn's budget in proportion with one token reserved for the response (`proportional_cut`).
  neat pack  every turn is cut once more, on its own, to seq_length - 1 (`infer_seqlen`).
  labels     prompt tokens -100 (efficient-eos templates train the eos that opens a later prompt), response
             tokens as themselves; efficient-eos templates end with the eos; --append-eod adds the eos.
"""
import logging
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..lf.converters import convert
from ..lf.dataset_info import _entry_to_attr
from ..lf.processor import infer_seqlen
from .instruction import IGNORE_INDEX
from .templates import PROMPT_TEMPLATES

log = logging.getLogger(__name__)

DEFAULT_CUTOFF = 100000  # MindSpeed-LLM's budget when --seq-length is not given

HANDLERS = {"AlpacaStyleInstructionHandler": "alpaca", "SharegptStyleInstructionHandler": "sharegpt"}

# Handlers MindSpeed-LLM has that write data this engine does not train on, with the reason.
REFUSED_HANDLERS = {
    "AlpacaStylePairwiseHandler": "it writes chosen/rejected pairs for reward-model and DPO training, which the "
                                  "engine does not do (supervised fine-tuning and pretraining only)",
    "SharegptStylePairwiseHandler": "it writes chosen/rejected pairs for reward-model and DPO training, which the "
                                    "engine does not do (supervised fine-tuning and pretraining only)",
    "PPOAlpacaStyleInstructionHandler": "it writes prompts without responses for PPO rollouts; the engine does no "
                                        "reinforcement learning",
    "R1AlpacaStyleInstructionHandler": "it writes prompts and reference answers for GRPO/R1 reinforcement learning, "
                                       "which the engine does not do",
    "R1SharegptStyleInstructionHandler": "it writes prompts and reference answers for GRPO/R1 reinforcement "
                                         "learning, which the engine does not do",
    "AlpacaStyleProcessRewardHandler": "it writes step labels for process-reward-model training, which the engine "
                                       "does not do",
    "HunyuanInstructionHandler": "it renders with Hunyuan-Large's own tokenizer chat template and <|extra_0|> loss "
                                 "markers; use SharegptStyleInstructionHandler with a --prompt-type instead",
    "LlamaFactoryInstructionHandler": "it reads LLaMA-Factory's dataset_info.json; train that data with "
                                      "train_fsdp2.py and data_manager_type lf, or name the style "
                                      "(AlpacaStyleInstructionHandler / SharegptStyleInstructionHandler)",
}

# How each supported --prompt-type's MindSpeed template class cuts a conversation.
SHARED_CUT, PROPORTIONAL_CUT = "shared", "proportional"
CUT_STYLE = {"qwen3": SHARED_CUT, "llama3": PROPORTIONAL_CUT, "empty": PROPORTIONAL_CUT}
CUT_STYLE.update({name: SHARED_CUT if t.reasoning else PROPORTIONAL_CUT for name, t in PROMPT_TEMPLATES.items()})

EMPTY_TURN = [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]


def proportional_cut(source_len: int, target_len: int, budget: int, reserved: int = 1) -> Tuple[int, int]:
    """(prompt, response) lengths kept of one turn by the LLaMA-Factory 0.8 rule: the budget split in proportion
    to the two lengths, at least `reserved` tokens for the response."""
    total = source_len + target_len
    max_target = int(budget * (target_len / total)) if total else 0
    max_target = max(max_target, reserved)
    return budget - min(max_target, target_len), max_target


def cut_turns(turns: Sequence[Tuple[List[int], List[int]]], cutoff_len: int,
              style: str) -> List[Tuple[List[int], List[int]]]:
    """The turns MindSpeed-LLM keeps of a conversation within `cutoff_len` tokens, each cut as its template does."""
    kept, total = [], 0
    budget = cutoff_len - 1 if style == SHARED_CUT else cutoff_len
    for source, target in turns:
        if total >= budget:
            break
        if style == SHARED_CUT:
            s_len, t_len = infer_seqlen(len(source), len(target), budget - total)
        else:
            s_len, t_len = proportional_cut(len(source), len(target), budget - total)
        source, target = list(source[:s_len]), list(target[:t_len])
        total += len(source) + len(target)
        kept.append((source, target))
    return kept


def join_turns(turns: Sequence[Tuple[List[int], List[int]]], efficient_eos: bool, eos_id: int,
               neat_row: Optional[int] = None) -> Tuple[List[int], List[int]]:
    """input_ids and labels of the kept turns; `neat_row` (neat packing) cuts every turn again to that many tokens."""
    input_ids: List[int] = []
    labels: List[int] = []
    for source, target in turns:
        if input_ids and efficient_eos:
            source_label = [eos_id] + [IGNORE_INDEX] * (len(source) - 1)
        else:
            source_label = [IGNORE_INDEX] * len(source)
        if neat_row is not None:
            s_len, t_len = infer_seqlen(len(source), len(target), neat_row)
            source, source_label, target = source[:s_len], source_label[:s_len], target[:t_len]
        input_ids += list(source) + list(target)
        labels += list(source_label) + list(target)
    if efficient_eos:
        input_ids.append(eos_id)
        labels.append(eos_id)
    return input_ids, labels


def _attr(handler_name: str, map_keys: Optional[dict]):
    entry = {"file_name": "-", "formatting": HANDLERS[handler_name]}
    map_keys = dict(map_keys or {})
    if "tags" in map_keys:
        entry["tags"] = map_keys.pop("tags")
    entry["columns"] = map_keys
    return _entry_to_attr(handler_name, entry)


def _messages(std: Dict, handler_name: str, counts: Dict[str, int]):
    """(messages, system, tools) MindSpeed-LLM encodes for one converted record, or None to drop it."""
    valid = std["_error"] is None and len(std["_prompt"]) % 2 == 1 and len(std["_response"]) == 1
    if valid:
        return list(std["_prompt"]) + list(std["_response"]), std["_system"], std["_tools"]
    if HANDLERS[handler_name] == "alpaca":
        counts["empty"] += 1
        if counts["empty"] <= 5:
            log.warning("a record without one text response is written as an empty turn, as MindSpeed-LLM "
                        "does: %s", std["_error"])
        return list(EMPTY_TURN), std["_system"], std["_tools"]
    counts["bad"] += 1
    if counts["bad"] <= 5:
        log.warning("dropped a record: %s", std["_error"])
    return None


def encode_instruction_records(records: Iterable[dict], handler_name: str, template, tokenizer,
                               seq_length: Optional[int], cut_style: str, neat_pack: bool = False,
                               map_keys: Optional[dict] = None, append_eod: bool = False,
                               counts: Optional[dict] = None):
    """(input_ids, labels) per record, as MindSpeed-LLM's instruction handler tokenizes it (see the module
    docstring). `counts` receives `bad` (dropped records) and `empty` (records written as an empty turn)."""
    if handler_name not in HANDLERS:
        raise ValueError(f"--handler-name {handler_name}: supported instruction handlers are {', '.join(HANDLERS)}")
    attr = _attr(handler_name, map_keys)
    cutoff = DEFAULT_CUTOFF if seq_length is None else seq_length
    neat_row = seq_length - 1 if neat_pack else None
    eos = tokenizer.eos_token_id
    counts = counts if counts is not None else {}
    counts.setdefault("bad", 0)
    counts.setdefault("empty", 0)
    for record in records:
        found = _messages(convert(record, attr), handler_name, counts)
        if found is None:
            continue
        messages, system, tools = found
        turns = cut_turns(template.encode_turns(tokenizer, messages, system, tools), cutoff, cut_style)
        ids, labels = join_turns(turns, template.efficient_eos, eos, neat_row)
        if append_eod:
            ids, labels = ids + [eos], labels + [eos]
        yield ids, labels
