#!/usr/bin/env python
"""MindSpeed-LLM's `posttrain_gpt.py` command line, trained by the FSDP2 engine.

    torchrun --nproc-per-node 8 posttrain_gpt.py --stage sft --is-instruction-dataset --prompt-type qwen3 \\
        --data-path data/alpaca --load ./Qwen3-8B-hf --save ./out <Megatron / MindSpeed-LLM flags>
    python posttrain_gpt.py <flags> --print-config      # resolved YAML + per-flag report

`--stage sft` is supervised fine-tuning on MindSpeed-LLM instruction datasets (written by its
preprocess_data.py or ours with --handler-name ...InstructionHandler); `--lora-*` trains LoRA adapters.
Other stages (dpo, ppo, grpo, ...) are refused. `--load` is a Hugging Face model directory.
"""
import sys

from megatron_compat.cli import main

if __name__ == "__main__":
    sys.exit(main(entry="posttrain_gpt.py"))
