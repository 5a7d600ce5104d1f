#!/usr/bin/env python
"""Generate a few tokens with transformers from a Hugging Face export (<output_dir>/hf_model/).

    python examples/generate.py OUTPUT_DIR/hf_model [--prompt "Return the"] [--max-new-tokens 24]

The export is an ordinary Hugging Face model directory: this script uses nothing of this project.
"""
import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--prompt", action="append", help="repeatable (default: two prompts in the corpus' style)")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0, help="sampling seed (top-k 40, temperature 0.8)")
    args = ap.parse_args(argv)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, local_files_only=True).eval()
    print(f"loaded {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) "
          f"from {args.model_dir}")
    for prompt in args.prompt or ["Return the", "This module provides"]:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.no_grad():
            torch.manual_seed(args.seed)
            out = model.generate(ids, max_new_tokens=args.max_new_tokens, do_sample=True, top_k=40, temperature=0.8,
                                 repetition_penalty=1.3, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        new = out[0, ids.shape[1]:]
        print(f"  {prompt!r} -> {tokenizer.decode(new, skip_special_tokens=True)!r}")
        if len(new) == 0:
            print("generate: no tokens generated", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
