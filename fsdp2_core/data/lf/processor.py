"""Supervised processor: a standard-form example → (input_ids, labels) within `cutoff_len`.

Labels are unshifted (labels[i] is the target for input_ids[i], -100 where nothing is
trained); the collator shifts them for the loss. The budget is shared turn by turn as
LLaMA-Factory shares it: each turn gets what is left, split between its prompt and
response by `infer_seqlen`; later turns that find nothing left are cut off. A sample
is truncated, never dropped.
"""
from dataclasses import dataclass
from typing import Dict, List, Tuple

IGNORE_INDEX = -100


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> Tuple[int, int]:
    """(prompt length, response length) kept of one turn when `cutoff_len` tokens are left.

    A short response (under half the budget) is kept whole and the prompt truncated; else a
    short prompt is kept whole and the response truncated; else both shrink in proportion.
    """
    if target_len * 2 < cutoff_len:
        max_target = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target = cutoff_len - source_len
    else:
        max_target = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target = min(max_target, target_len)
    new_source = min(max(cutoff_len - new_target, 0), source_len)
    return new_source, new_target


@dataclass
class SupervisedOptions:
    cutoff_len: int
    train_on_prompt: bool = False
    mask_history: bool = False


def encode_supervised(turns: List[Tuple[List[int], List[int]]], opts: SupervisedOptions, efficient_eos: bool,
                      eos_id: int) -> Tuple[List[int], List[int], bool]:
    """(input_ids, labels, truncated) of one conversation given its tokenized turns."""
    input_ids: List[int] = []
    labels: List[int] = []
    total = 1 if efficient_eos else 0
    full = sum(len(s) + len(t) for s, t in turns) + total
    ordered = turns[::-1] if opts.mask_history else turns  # mask_history: the last turn has the budget first
    for idx, (source, target) in enumerate(ordered):
        if total >= opts.cutoff_len:
            break
        s_len, t_len = infer_seqlen(len(source), len(target), opts.cutoff_len - total)
        source, target = source[:s_len], target[:t_len]
        total += s_len + t_len
        if opts.train_on_prompt:
            source_label = list(source)
        elif efficient_eos and idx != 0 and s_len:
            source_label = [eos_id] + [IGNORE_INDEX] * (s_len - 1)  # the previous response's end is trained here
        else:
            source_label = [IGNORE_INDEX] * s_len
        target_label = [IGNORE_INDEX] * t_len if (opts.mask_history and idx != 0) else list(target)
        if opts.mask_history:
            input_ids = list(source) + list(target) + input_ids
            labels = source_label + target_label + labels
        else:
            input_ids += list(source) + list(target)
            labels += source_label + target_label
    if efficient_eos:
        input_ids.append(eos_id)
        labels.append(eos_id)
    return input_ids, labels, len(input_ids) < full


def make_preprocess(template, tokenizer, opts: SupervisedOptions):
    """A batched `datasets.map` function: standard-form columns → input_ids, labels, _truncated."""
    eos_id = tokenizer.eos_token_id

    def preprocess(batch: Dict[str, List]) -> Dict[str, List]:
        out = {"input_ids": [], "labels": [], "_truncated": [], "_error": []}
        for key in ("_source", "_index"):  # where each record came from, for the drop warning
            if key in batch:
                out[key] = list(batch[key])
        for prompt, response, system, tools in zip(batch["_prompt"], batch["_response"], batch["_system"],
                                                   batch["_tools"]):
            try:
                turns = template.encode_turns(tokenizer, list(prompt) + list(response), system, tools,
                                               opts.mask_history)
                ids, labels, truncated = encode_supervised(turns, opts, template.efficient_eos, eos_id)
                error = None
            except Exception as exc:  # e.g. a function message that is not JSON: dropped and counted
                ids, labels, truncated, error = [], [], False, f"{type(exc).__name__}: {exc}"
            out["input_ids"].append(ids)
            out["labels"].append(labels)
            out["_truncated"].append(int(truncated))
            out["_error"].append(error)
        return out

    return preprocess
