#!/bin/bash
# Already converted: the new engine reads its settings from a YAML file.
set -euo pipefail
export OMP_NUM_THREADS=8
export TOKENIZERS_PARALLELISM=false

CONFIG=${CONFIG:-configs/llama3_8b.yaml}

torchrun --nproc-per-node=8 --nnodes=1 --master-addr=127.0.0.1 --master-port=29600 \
    train_fsdp2.py "$CONFIG"
