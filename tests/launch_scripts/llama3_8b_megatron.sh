#!/usr/bin/env bash
# Llama-3 8B on one node of 8 GPUs, sample-based schedule, bf16.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1
export NVTE_FWD_LAYERNORM_SM_MARGIN=16
export NVTE_BWD_LAYERNORM_SM_MARGIN=16

TOKENIZER_MODEL=/models/Meta-Llama-3-8B
DATA_PREFIX=/data/llama3/fineweb_text_document
CKPT_DIR=/ckpt/llama3-8b

SEQ_LEN=8192
TRAIN_SAMPLES=1953125       # ~16B tokens at 8k
WARMUP_SAMPLES=19531
TP=2

DISTRIBUTED_ARGS="--nproc_per_node 8 --nnodes 1 --master_addr localhost --master_port 29500"

MODEL_ARGS="--num-layers 32 --hidden-size 4096 --ffn-hidden-size 14336 \
  --num-attention-heads 32 --group-query-attention --num-query-groups 8 \
  --kv-channels 128 --seq-length $SEQ_LEN --max-position-embeddings $SEQ_LEN \
  --position-embedding-type rope --rotary-base 500000 --rotary-percent 1.0 \
  --swiglu --normalization RMSNorm --norm-epsilon 1e-5 \
  --untie-embeddings-and-output-weights --disable-bias-linear \
  --attention-dropout 0.0 --hidden-dropout 0.0"

TRAIN_ARGS="--micro-batch-size 1 --global-batch-size 128 \
  --train-samples $TRAIN_SAMPLES --lr-warmup-samples $WARMUP_SAMPLES \
  --lr-decay-samples $((TRAIN_SAMPLES - WARMUP_SAMPLES)) --lr-decay-style cosine \
  --lr 3e-4 --min-lr 3e-5 --weight-decay 0.1 --clip-grad 1.0 \
  --decoupled-lr 5.0e-4 --decoupled-min-lr 4.5e-5 \
  --adam-beta1 0.9 --adam-beta2 0.95 --bf16 \
  --use-distributed-optimizer --overlap-grad-reduce --overlap-param-gather \
  --recompute-activations"

torchrun $DISTRIBUTED_ARGS pretrain_gpt.py \
  $MODEL_ARGS \
  $TRAIN_ARGS \
  --tensor-model-parallel-size $TP \
  --sequence-parallel \
  --tokenizer-type HuggingFaceTokenizer \
  --tokenizer-model $TOKENIZER_MODEL \
  --data-path $DATA_PREFIX \
  --split 99,1,0 \
  --save $CKPT_DIR --load $CKPT_DIR \
  --save-interval 2000 --eval-interval 1000 --eval-iters 20 --log-interval 10
