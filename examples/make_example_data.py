#!/usr/bin/env python
"""Write the examples' small corpus, tokenizer and instruction data, from text this Python installation carries.

    python examples/make_example_data.py [OUT_DIR] [--max-docs 6000] [--vocab-size 2048]

Nothing is downloaded and no text ships with the repository: the corpus is the docstrings of the
standard library's own source files (read with `ast`, never imported), gathered at run time.

    OUT_DIR/corpus.jsonl             one {"text": docstring} per line (input of tools/preprocess_data.py)
    OUT_DIR/tokenizer/               a byte-level BPE tokenizer trained on that corpus (a Hugging Face
                                     tokenizer directory; eos <|endoftext|>, chat tokens for SFT templates)
    OUT_DIR/sft/stdlib_alpaca.json   Alpaca-style instructions ("What does `json.dumps` do?" -> its
    OUT_DIR/sft/dataset_info.json    docstring's first paragraph), LLaMA-Factory's dataset_info.json
"""
import argparse
import ast
import json
import os
import sys
import sysconfig

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|pad|>"]
SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo", "__pycache__",
             "ensurepip", "venv", "tkinter", "pydoc_data"}


def stdlib_docstrings(max_docs: int):
    """(qualified name, docstring) of the standard library's modules, classes and functions, in a fixed order."""
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        files.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    count = 0
    for path in sorted(files):
        module = os.path.relpath(path, root)[:-3].replace(os.sep, ".").removesuffix(".__init__")
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            continue
        nodes = [(module, tree)]
        for node in ast.walk(tree):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                nodes.append((f"{module}.{node.name}", node))
        for name, node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= 40:
                yield name, doc
                count += 1
                if count >= max_docs:
                    return


def train_tokenizer(texts, vocab_size: int, out_dir: str):
    """Byte-level BPE (GPT-2 style pre-tokenizer), saved as a Hugging Face tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|pad|>",
                                   additional_special_tokens=[s for s in SPECIALS
                                                              if s not in ("<|endoftext|>", "<|pad|>")])
    fast.save_pretrained(out_dir)
    return fast


def first_paragraph(doc: str) -> str:
    return doc.strip().split("\n\n")[0].replace("\n", " ").strip()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", nargs="?", default="output_quickstart")
    ap.add_argument("--max-docs", type=int, default=6000, help="docstrings in the corpus")
    ap.add_argument("--vocab-size", type=int, default=2048)
    ap.add_argument("--sft-samples", type=int, default=2000)
    args = ap.parse_args(argv)
    os.makedirs(os.path.join(args.out_dir, "sft"), exist_ok=True)
    docs = list(stdlib_docstrings(args.max_docs))
    if not docs:
        sys.exit(f"make_example_data: no docstrings found under {sysconfig.get_paths()['stdlib']}")
    with open(os.path.join(args.out_dir, "corpus.jsonl"), "w", encoding="utf-8") as fh:
        for _, doc in docs:
            fh.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
    chars = sum(len(d) for _, d in docs)
    print(f"corpus: {len(docs)} docstrings of the standard library ({chars / 1e6:.1f}M characters) "
          f"-> {args.out_dir}/corpus.jsonl")
    train_tokenizer((d for _, d in docs), args.vocab_size, os.path.join(args.out_dir, "tokenizer"))
    print(f"tokenizer: byte-level BPE, {args.vocab_size} tokens -> {args.out_dir}/tokenizer/")
    samples = [{"instruction": f"What does `{name}` do in Python?", "input": "", "output": first_paragraph(doc)}
               for name, doc in docs if "." in name and 20 <= len(first_paragraph(doc)) <= 400][: args.sft_samples]
    with open(os.path.join(args.out_dir, "sft", "stdlib_alpaca.json"), "w", encoding="utf-8") as fh:
        json.dump(samples, fh, ensure_ascii=False, indent=0)
    with open(os.path.join(args.out_dir, "sft", "dataset_info.json"), "w", encoding="utf-8") as fh:
        json.dump({"stdlib_alpaca": {"file_name": "stdlib_alpaca.json"}}, fh, indent=1)
    print(f"instruction data: {len(samples)} Alpaca-style samples -> {args.out_dir}/sft/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
