#!/usr/bin/env bash
# 3B model, argument arrays with comments, optional pieces appended.
set -euo pipefail

USE_BF16=${USE_BF16:-1}
RESUME=${RESUME:-0}
RUN_NAME="gpt-3b run"

DIST=(
  --nproc_per_node 8   # one node
  --nnodes 1
)

ARGS=(
  # model shape
  --num-layers 32
  --hidden-size 2560
  --num-attention-heads 32
  --seq-length 2048
  --max-position-embeddings 2048
  # parallelism: dp = 8 / 4 = 2
  --tensor-model-parallel-size 4
  # batch
  --micro-batch-size 2
  --global-batch-size 32
  --train-iters 250000
  --lr 1.6e-4 --min-lr 1.6e-5   # two flags on one line
  --lr-decay-style cosine
  --tokenizer-type GPT2BPETokenizer
  --vocab-file /data/gpt2/vocab.json
  --merge-file /data/gpt2/merges.txt
  --data-path /data/c4/c4_en_text_document
  --wandb-exp-name "$RUN_NAME"
)

if [[ "$USE_BF16" == 1 ]]; then
  ARGS+=( --bf16 )
else
  ARGS+=( --fp16 --loss-scale-window 1000 )
fi

if [[ $RESUME -eq 1 ]]; then
  ARGS+=(--load /ckpt/gpt-3b)
fi

ARGS+=(
  --save /ckpt/gpt-3b
  --save-interval 5000
)

torchrun "${DIST[@]}" pretrain_gpt.py "${ARGS[@]}"
