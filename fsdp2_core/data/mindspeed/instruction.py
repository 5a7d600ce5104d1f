"""MindSpeed-LLM instruction datasets: the `.bin/.idx` files its instruction handlers write, read and written here.

Layout of one dataset prefix P (MindSpeed-LLM's `preprocess_data.py --handler-name
AlpacaStyleInstructionHandler | SharegptStyleInstructionHandler`, and our `tools/preprocess_data.py`):

    P_packed_input_ids_document.bin/.idx       token ids of each sample (int32)
    P_packed_labels_document.bin/.idx          unshifted labels: the token where trained, -100 where not (prompt)
    P_packed_attention_mask_document.bin/.idx  1 per token; with neat packing the 1-based index of the packed
                                               sample each token belongs to, 0 on padding

One sequence per sample. With `--pack` / `--neat-pack` at preprocessing, samples are packed
(greedy knapsack into seq_length - 1) and every row is padded to exactly seq_length with the
pad id (labels -100). `--data-path P` names the prefix without the `_packed_*` part.

Training, as MindSpeed-LLM's instruction data path does it:
  split      `--split` over the sequences (Megatron's legacy document split)
  order      per split, epochs of its sequences, each shuffled by one RandomState(seed), until the
             run's sample count is covered (`--no-shuffle`: in order)
  truncation an unpacked sample longer than seq_length is cut turn by turn (prompt and response shares,
             as LLaMA-Factory's infer_seqlen); a separated packed row is cut at seq_length
  targets    token i is trained to predict token i + 1 where labels[i + 1] != -100 (shift over the row)
  separation with reset_position_ids / reset_attention_mask / neat packing, packed samples do not attend
             to each other: position ids restart per sample and attention is block-diagonal causal.
             Samples are told apart by the neat-pack sample index, else (plain packing) by the end after
             every eos token, as MindSpeed-LLM does.
"""
import glob
import logging
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..megatron.indexed_dataset import IndexedDataset, IndexedDatasetBuilder
from .templates import PROMPT_TEMPLATES, REFUSED_PROMPT_TYPES, prompt_template

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
FIELDS = ("input_ids", "attention_mask", "labels")   # the order the handlers write them


# ------------------------------------------------------------------ files

def field_prefix(prefix: str, name: str) -> str:
    return f"{prefix}_packed_{name}_document"


def instruction_fields(prefix: str) -> Dict[str, str]:
    """{field: path prefix} of every `<prefix>_packed_<field>_document.idx` present."""
    found = {}
    pattern = re.compile(re.escape(prefix) + r"_packed_(.+)_document\.idx$")
    for path in glob.glob(glob.escape(prefix) + "_packed_*_document.idx"):
        m = pattern.match(path)
        if m and os.path.isfile(path[:-4] + ".bin"):
            found[m.group(1)] = path[:-4]
    return found


def is_instruction_prefix(prefix: str) -> bool:
    return "input_ids" in instruction_fields(prefix)


class InstructionData:
    """The fields of one prefix, read together: `data[i]` = {field: np.ndarray} of sequence i."""

    def __init__(self, prefix: str):
        fields = instruction_fields(prefix)
        missing = [f for f in ("input_ids", "labels") if f not in fields]
        if missing:
            have = ", ".join(sorted(fields)) or "none"
            raise FileNotFoundError(
                f"--data-path {prefix}: no MindSpeed-LLM instruction dataset there (needs "
                f"{', '.join(field_prefix(prefix, f) + '.bin/.idx' for f in missing)}; fields found: {have}). "
                "Write one with tools/preprocess_data.py --handler-name AlpacaStyleInstructionHandler "
                "--prompt-type ..., or drop --is-instruction-dataset for pretraining data")
        self.prefix = prefix
        self.fields = {name: IndexedDataset(path) for name, path in fields.items()}
        lengths = {name: len(ds) for name, ds in self.fields.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{prefix}: the instruction fields hold different sample counts {lengths}")
        self.length = lengths["input_ids"]
        ids, labels = self.fields["input_ids"].sequence_lengths, self.fields["labels"].sequence_lengths
        if not np.array_equal(ids, labels):
            bad = int(np.nonzero(ids != labels)[0][0])
            raise ValueError(f"{prefix}: sample {bad} has {ids[bad]} input ids but {labels[bad]} labels")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return {name: np.asarray(ds[int(i)], dtype=np.int64) for name, ds in self.fields.items()}


# ------------------------------------------------------------------ split and order

def legacy_split(split: str, size: int) -> List[int]:
    """Megatron's legacy document split: [train start, valid start, test start, end] over `size` items."""
    parts = [float(x) for x in re.split(r"[,/]", str(split)) if x.strip()]
    parts = (parts + [0.0] * 3)[:3]
    total = sum(parts)
    if total <= 0:
        raise ValueError(f"split {split!r}: the weights must have a positive sum")
    bounds = [0]
    for p in parts:
        bounds.append(bounds[-1] + int(round(p / total * float(size))))
    excess = bounds[-1] - size
    return [bounds[0]] + [b - excess for b in bounds[1:]]


def sample_order(start: int, count: int, num_samples: int, seed: int, shuffle: bool,
                 pad_to_batch: int = 0) -> np.ndarray:
    """Whole epochs of sequences start..start+count-1 until `num_samples` are covered; one RandomState(seed)
    shuffles each epoch in turn (MindSpeed-LLM's instruction-data order). With `pad_to_batch` (the global batch,
    --padded-samples) each epoch is first topped up to a multiple of it with the indices 0, 1, ... as MindSpeed's
    _build_sequential_idx does (from 0, not from `start`)."""
    rng = np.random.RandomState(seed=seed)
    epochs, total = [], 0
    short = (-count) % pad_to_batch if pad_to_batch else 0
    while total < max(num_samples, 1):
        epoch = np.arange(start, start + count, dtype=np.int64)
        if short:
            epoch = np.append(epoch, np.arange(0, short, dtype=np.int64))
        if shuffle:
            rng.shuffle(epoch)
        epochs.append(epoch)
        total += len(epoch)
    return np.concatenate(epochs)


def _padded_to(d, t) -> int:
    """The global batch each epoch is padded to a multiple of (padded_samples), or 0."""
    if not d.padded_samples:
        return 0
    if not t.global_batch_size:
        raise ValueError("padded_samples pads each epoch to a multiple of the global batch: set "
                         "training.global_batch_size (Megatron's --global-batch-size)")
    return t.global_batch_size


# ------------------------------------------------------------------ one sample

def prompt_spans(labels: np.ndarray) -> Tuple[List[int], List[int]]:
    """Starts and ends of the runs of ignored labels (the prompts of each turn)."""
    begins, ends, inside = [], [], False
    for i, v in enumerate(labels.tolist()):
        if v == IGNORE_INDEX and not inside:
            begins.append(i)
            inside = True
        elif v != IGNORE_INDEX and inside:
            ends.append(i)
            inside = False
    if inside:
        ends.append(len(labels))
    return begins, ends


def cut_sample(input_ids: np.ndarray, labels: np.ndarray, seq_length: int,
               efficient_eos: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """A sample longer than seq_length, cut turn by turn: each turn shares what is left between its prompt
    and its response (infer_seqlen); turns that find nothing left are dropped."""
    from ..lf.processor import infer_seqlen
    if len(input_ids) <= seq_length:
        return input_ids, labels
    eos = None
    if efficient_eos:  # the closing eos is kept and counted first
        eos, input_ids, labels = input_ids[-1], input_ids[:-1], labels[:-1]
    begins, ends = prompt_spans(labels)
    total = 1 if efficient_eos else 0
    out_ids, out_labels = [], []
    for turn, (b, e) in enumerate(zip(begins, ends)):
        if total >= seq_length:
            break
        stop = begins[turn + 1] if turn + 1 < len(begins) else len(labels)
        src_len, tgt_len = infer_seqlen(e - b, stop - e, seq_length - total)
        out_ids += [input_ids[b:b + src_len], labels[e:e + tgt_len]]
        out_labels += [labels[b:b + src_len], labels[e:e + tgt_len]]
        total += src_len + tgt_len
    if eos is not None:
        out_ids.append(np.array([eos]))
        out_labels.append(np.array([eos]))
    if not out_ids:
        return input_ids[:seq_length], labels[:seq_length]
    return np.concatenate(out_ids).astype(np.int64), np.concatenate(out_labels).astype(np.int64)


def segments_from_ids(attention_ids: np.ndarray) -> List[int]:
    """Neat packing: lengths of the runs of equal sample indices (padding, index 0, is one more run)."""
    if len(attention_ids) == 0:
        return []
    change = np.nonzero(np.diff(attention_ids))[0] + 1
    bounds = [0] + change.tolist() + [len(attention_ids)]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def segments_from_eos(input_ids: np.ndarray, eos_id: int) -> List[int]:
    """Plain packing: a new sample starts after every eos token."""
    ends = (np.nonzero(input_ids == eos_id)[0] + 1).tolist()
    bounds = [0] + [e for e in ends if e < len(input_ids)] + [len(input_ids)]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


# ------------------------------------------------------------------ datasets the engine reads

class InstructionCollator:
    """Samples ({input_ids, labels, seq_lens?}) → one right-padded micro-batch for the engine.

    tokens, labels (next-token targets over the whole row, -100 where untrained or padded), loss_mask,
    position_ids; rows with `seq_lens` (separated samples) add a block-diagonal causal `attention_mask`
    ([b, 1, L, L], True = masked out, Megatron's convention) and `cu_seqlens`, with positions restarting.
    """

    def __init__(self, pad_id: int, multiple_of: int = 8):
        self.pad_id, self.multiple = int(pad_id), int(multiple_of)

    def __call__(self, samples: Sequence[Dict]) -> Dict[str, torch.Tensor]:
        longest = max(len(s["input_ids"]) for s in samples)
        length = -(-longest // self.multiple) * self.multiple
        b = len(samples)
        tokens = np.full((b, length), self.pad_id, dtype=np.int64)
        labels = np.full((b, length), IGNORE_INDEX, dtype=np.int64)
        positions = np.tile(np.arange(length, dtype=np.int64), (b, 1))
        separated = any(s.get("seq_lens") for s in samples)
        mask = np.ones((b, 1, length, length), dtype=bool) if separated else None
        cu = [0]
        for r, s in enumerate(samples):
            n = len(s["input_ids"])
            tokens[r, :n] = s["input_ids"]
            labels[r, :n - 1] = s["labels"][1:]
            segments = list(s.get("seq_lens") or [n]) + ([length - n] if length > n else [])
            start = 0
            for seg in segments:
                if separated:
                    positions[r, start:start + seg] = np.arange(seg)
                    mask[r, 0, start:start + seg, start:start + seg] = ~np.tril(np.ones((seg, seg), dtype=bool))
                cu.append(cu[-1] + seg)
                start += seg
        batch = {"tokens": torch.from_numpy(tokens), "labels": torch.from_numpy(labels),
                 "loss_mask": torch.from_numpy((labels != IGNORE_INDEX).astype(np.float32)),
                 "position_ids": torch.from_numpy(positions)}
        if separated:
            batch["attention_mask"] = torch.from_numpy(mask)
            batch["cu_seqlens"] = torch.tensor(cu, dtype=torch.int32)
        return batch


class InstructionDataset:
    """One split of an instruction prefix, in MindSpeed-LLM's order; `collate_fn` builds micro-batches."""

    def __init__(self, data: InstructionData, order: np.ndarray, seq_length: int, collate_fn: InstructionCollator,
                 separate: bool = False, neat: bool = False, eos_id: Optional[int] = None,
                 efficient_eos: bool = False, name: str = "train"):
        if separate and not neat and eos_id is None:
            raise ValueError("packed instruction samples are told apart by the eos token: the tokenizer has none")
        self.data, self.order, self.seq_length = data, order, seq_length
        self.collate_fn, self.separate, self.neat = collate_fn, separate, neat
        self.eos_id, self.efficient_eos, self.name = eos_id, efficient_eos, name

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i) -> Dict:
        item = self.data[int(self.order[int(i)])]
        ids, labels = item["input_ids"], item["labels"]
        if not self.separate:
            ids, labels = cut_sample(ids, labels, self.seq_length, self.efficient_eos)
            return {"input_ids": ids, "labels": labels}
        ids, labels = ids[:self.seq_length], labels[:self.seq_length]
        if self.neat:
            if "attention_mask" not in item:
                raise ValueError(f"{self.data.prefix}: neat packing needs the attention_mask field (sample indices)")
            seq_lens = segments_from_ids(item["attention_mask"][:self.seq_length])
        else:
            seq_lens = segments_from_eos(ids, self.eos_id)
        return {"input_ids": ids, "labels": labels, "seq_lens": seq_lens}


def _special_id(tokenizer, *names) -> Optional[int]:
    for name in names:
        value = getattr(tokenizer, name, None) if tokenizer is not None else None
        if isinstance(value, (int, np.integer)):
            return int(value)
    return None


def build_instruction_datasets(cfg, tokenizer, num_samples: Tuple[int, int, int]):
    """(train, valid, test) for `data.is_instruction_dataset`: one prefix, split and ordered as MindSpeed-LLM does."""
    from ..lf.collator import pad_multiple
    from ..lf.templates import TEMPLATES
    from ..megatron.builder import parse_data_path
    d, t = cfg.data, cfg.training
    if d.train_data_path or d.valid_data_path or d.test_data_path:
        raise ValueError("instruction datasets are read from one --data-path prefix split by --split; "
                         "per-split paths are not supported")
    dataset = d.dataset.get("file_name") if isinstance(d.dataset, dict) else d.dataset
    blend = parse_data_path(dataset)
    if blend is None:
        raise ValueError("an instruction dataset needs --data-path <prefix> (the prefix given to preprocess_data.py)")
    prefixes = blend[0]
    if len(prefixes) != 1:
        raise ValueError(f"--data-path {dataset}: MindSpeed-LLM reads one instruction dataset prefix; "
                         f"got {len(prefixes)}")
    data = InstructionData(prefixes[0])
    bounds = legacy_split(d.split, len(data))
    separate = bool(d.reset_position_ids or d.reset_attention_mask or d.neat_packing)
    pad_id = _special_id(tokenizer, "pad_token_id", "pad")
    eos_id = _special_id(tokenizer, "eos_token_id", "eos", "eod")
    template = TEMPLATES.get(d.template) if d.template else None
    collate = InstructionCollator(pad_id if pad_id is not None else (eos_id or 0), pad_multiple(cfg.parallel.cp_size))
    pad_to = _padded_to(d, t)
    out = []
    for k, name in enumerate(("train", "valid", "test")):
        start, stop = bounds[k], bounds[k + 1]
        if stop <= start or not num_samples[k]:
            out.append(None)
            continue
        order = sample_order(start, stop - start, num_samples[k], t.seed, not t.disable_shuffling, pad_to)
        out.append(InstructionDataset(data, order, d.cutoff_len, collate, separate=separate, neat=d.neat_packing,
                                      eos_id=eos_id, efficient_eos=bool(template and template.efficient_eos),
                                      name=name))
    log.info("instruction data %s: %d samples, split %s -> %s%s", prefixes[0], len(data), d.split,
             [b - a for a, b in zip(bounds[:-1], bounds[1:])], " (packed samples kept apart)" if separate else "")
    return tuple(out)


# ------------------------------------------------------------------ writing (tools/preprocess_data.py)

def write_instruction_dataset(output_prefix: str, samples: Iterable[Tuple[List[int], List[int]]],
                              seq_length: Optional[int], pad_id: int, pack: bool = False,
                              neat_pack: bool = False) -> Dict[str, object]:
    """Write tokenized (input_ids, labels) samples in MindSpeed-LLM's instruction layout under `output_prefix`.

    Unpacked: one sequence per sample; samples of seq_length tokens or more are dropped (none when seq_length is
    None). Packed (pack or neat_pack, which need seq_length): samples go into rows of at most seq_length - 1
    tokens by greedy knapsack, each row padded to seq_length (pad id, label -100, attention 0 with neat packing
    else 1); with neat_pack the attention field holds each token's 1-based sample index, and samples longer than
    the row are cut, not dropped.
    """
    from ..lf.packing import greedy_knapsack
    if (pack or neat_pack) and not seq_length:
        raise ValueError("packing needs --seq-length: rows are packed to exactly that many tokens")
    kept, dropped = [], 0
    for ids, labels in samples:
        if len(ids) != len(labels):
            raise ValueError(f"a sample has {len(ids)} input ids but {len(labels)} labels")
        if seq_length is not None and len(ids) >= seq_length:
            if not neat_pack:
                dropped += 1
                continue
            ids, labels = ids[:seq_length - 1], labels[:seq_length - 1]
        if ids:
            kept.append((list(ids), list(labels)))
    rows: List[Dict[str, List[int]]] = []
    if pack or neat_pack:
        by_length: Dict[int, List[int]] = {}
        for i, (ids, _) in enumerate(kept):
            by_length.setdefault(len(ids), []).append(i)
        for group in greedy_knapsack([len(ids) for ids, _ in kept], seq_length - 1):
            row = {"input_ids": [], "attention_mask": [], "labels": []}
            for k, length in enumerate(group):
                ids, labels = kept[by_length[length].pop()]
                row["input_ids"] += ids
                row["labels"] += labels
                row["attention_mask"] += [k + 1 if neat_pack else 1] * length
            pad = seq_length - len(row["input_ids"])
            row["input_ids"] += [pad_id] * pad
            row["labels"] += [IGNORE_INDEX] * pad
            row["attention_mask"] += [0 if neat_pack else 1] * pad
            rows.append(row)
    else:
        rows = [{"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels} for ids, labels in kept]
    paths = {}
    for name in FIELDS:
        path = field_prefix(output_prefix, name)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        builder = IndexedDatasetBuilder(path + ".bin", dtype=np.int32)
        for row in rows:
            builder.add_item(np.asarray(row[name], dtype=np.int32))
            builder.end_document()
        builder.finalize(path + ".idx")
        paths[name] = path
    if dropped:
        log.warning("dropped %d samples of seq_length %d tokens or more", dropped, seq_length)
    return {"paths": paths, "samples": len(kept), "rows": len(rows), "dropped": dropped}


# ------------------------------------------------------------------ templates (the instruction handlers)

# MindSpeed-LLM --prompt-type names whose templates (configs/finetune/templates.json) render as ours do
PROMPT_TYPES = {"qwen3": "qwen3", "llama3": "llama3", "empty": "empty"}


def template_for_prompt_type(prompt_type: str, tokenizer=None, enable_thinking: Optional[bool] = None):
    """The template of a MindSpeed-LLM --prompt-type: MindSpeed's own plain-slot templates (templates.py), or ours
    for the names whose MindSpeed rendering ours matches (qwen3, llama3, empty); other names are refused."""
    from types import SimpleNamespace

    from ..lf.templates import get_template
    if prompt_type in PROMPT_TEMPLATES:
        return prompt_template(prompt_type, tokenizer, enable_thinking)
    if prompt_type not in PROMPT_TYPES:
        why = REFUSED_PROMPT_TYPES.get(prompt_type, "no template here renders it as MindSpeed-LLM does")
        raise ValueError(f"--prompt-type {prompt_type}: {why}; available: "
                         f"{', '.join(sorted(set(PROMPT_TYPES) | set(PROMPT_TEMPLATES)))}. Preprocess with "
                         "MindSpeed-LLM (the engine trains its .bin/.idx output), or use raw data with "
                         "train_fsdp2.py and a LLaMA-Factory template")
    args = SimpleNamespace(template=PROMPT_TYPES[prompt_type], tool_format=None, default_system=None,
                           enable_thinking=enable_thinking, train_on_prompt=False)
    return get_template(args, tokenizer)
