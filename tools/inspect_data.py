#!/usr/bin/env python
"""Show fine-tuning samples as the model will see them, before spending compute.

    python tools/inspect_data.py CONFIG.yaml [--num N] [--split train|validation|all] [--section.field VALUE ...]

For each shown sample: the decoded text with trained spans marked [[like this]] (everything else is
masked: label -100), then its token counts. A packed row lists its samples. Per split: rows, samples,
tokens, trained tokens and truncated samples. Uses the YAML's data section (data_manager_type lf).
"""
import argparse
import sys

OPEN, CLOSE = "[[", "]]"


def marked_text(tokenizer, input_ids, labels) -> str:
    """Decoded text, trained tokens inside [[ ]]; a trained position whose target differs from its token
    (efficient eos) shows the target as [[=>TOKEN]]."""
    out, span, trained = [], [], None

    def flush():
        if span:
            text = tokenizer.decode(span, skip_special_tokens=False)
            out.append(f"{OPEN}{text}{CLOSE}" if trained else text)
    for tok, lab in zip(input_ids, labels):
        is_trained = lab != -100
        if is_trained and lab != tok:
            flush()
            span, trained = [], None
            out.append(tokenizer.decode([tok]) + f"{OPEN}=>{tokenizer.convert_ids_to_tokens(int(lab))}{CLOSE}")
            continue
        if is_trained != trained:
            flush()
            span, trained = [], is_trained
        span.append(tok)
    flush()
    return "".join(out)


def describe_row(tokenizer, row, index: int) -> str:
    ids, labels = list(row["input_ids"]), list(row["labels"])
    seq_lens = list(row.get("seq_lens") or [len(ids)])
    padding = len(ids) - sum(seq_lens)  # a packed row is padded to cutoff_len
    lines = [f"=== sample {index}: {len(ids)} tokens, {sum(l != -100 for l in labels)} trained"
             + (f", {len(seq_lens)} packed samples {seq_lens}" if len(seq_lens) > 1 else "")
             + (f", {padding} padding" if padding else "") + " ==="]
    start = 0
    for k, n in enumerate(seq_lens):
        if len(seq_lens) > 1:
            trained = sum(label != -100 for label in labels[start:start + n])
            lines.append(f"--- packed sample {k}: {n} tokens, {trained} trained ---")
        lines.append(marked_text(tokenizer, ids[start:start + n], labels[start:start + n]))
        start += n
    return "\n".join(lines)


def split_stats(ds, limit=None) -> dict:
    rows = samples = tokens = trained = truncated = 0
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        rows += 1
        samples += len(row.get("seq_lens") or [1])
        tokens += len(row["input_ids"])
        trained += sum(l != -100 for l in row["labels"])
        truncated += int(row.get("_truncated") or 0)
    return {"rows": rows, "samples": samples, "tokens": tokens, "trained_tokens": trained, "truncated": truncated}


def _rows(ds):
    if hasattr(ds, "data"):
        return ds.data
    return iter(ds)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of samples") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; give how many samples to show per split (0 or more)")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--num", type=_count, default=3, help="samples shown per split")
    parser.add_argument("--split", default="all", choices=["train", "validation", "all"])
    args, overrides = parser.parse_known_args(argv)
    from fsdp2_core.config import ConfigError, load_config
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"inspect_data.py: {exc}", file=sys.stderr)
        return 2
    if cfg.data.data_manager_type != "lf":
        print("inspect_data.py: data_manager_type is not lf; nothing to inspect (Megatron data is already tokens)",
              file=sys.stderr)
        return 2
    from transformers import AutoTokenizer
    m = cfg.model
    path = m.tokenizer_name_or_path or m.model_name_or_path
    if not path:
        print("inspect_data.py: set model.tokenizer_name_or_path or model.model_name_or_path", file=sys.stderr)
        return 2
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=m.trust_remote_code,
                                              split_special_tokens=m.split_special_tokens)
    from fsdp2_core.data.lf import build_sft_datasets
    try:
        train, valid, _ = build_sft_datasets(cfg, tokenizer)
    except ValueError as exc:
        print(f"inspect_data.py: {exc}", file=sys.stderr)
        return 2
    splits = {"train": train}
    if isinstance(valid, dict):
        splits.update({f"validation_{k}": v for k, v in valid.items()})
    elif valid is not None:
        splits["validation"] = valid
    print(f"template {cfg.data.template}, cutoff_len {cfg.data.cutoff_len}, packing {cfg.data.packing}, "
          f"neat_packing {cfg.data.neat_packing}; trained spans are marked {OPEN} {CLOSE}")
    for name, ds in splits.items():
        if args.split != "all" and not name.startswith(args.split):
            continue
        rows = _rows(ds)
        print(f"\n##### split {name} #####")
        for i, row in enumerate(rows):
            if i >= args.num:
                break
            print(describe_row(tokenizer, row, i))
        stats = split_stats(_rows(ds), limit=None if not cfg.data.streaming else 1000)
        print(f"split {name}: {stats['rows']} rows, {stats['samples']} samples, {stats['tokens']} tokens, "
              f"{stats['trained_tokens']} trained tokens, {stats['truncated']} "
              "truncated to cutoff_len" + (" (first 1000 rows of the stream)" if cfg.data.streaming else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
