#!/usr/bin/env python
"""Megatron-LM's `pretrain_gpt.py` command line, trained by the FSDP2 engine.

    torchrun --nproc-per-node 8 pretrain_gpt.py <Megatron flags>   # train
    python pretrain_gpt.py <Megatron flags> --print-config          # resolved YAML + per-flag report
"""
import sys

from megatron_compat.cli import main

if __name__ == "__main__":
    sys.exit(main(entry="pretrain_gpt.py"))
