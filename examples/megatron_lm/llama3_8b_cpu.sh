#!/usr/bin/env bash
# The CPU-sized twin of llama3_8b.sh: the same flags with tiny shapes, 2 CPU ranks, fp32, 100 iterations,
# on the corpus and tokenizer examples/make_example_data.py writes (the quickstart runs it).
#     bash examples/megatron_lm/llama3_8b_cpu.sh [DATA_DIR [ITERS]]      # trains directly through pretrain_gpt.py
#     python tools/convert_args.py examples/megatron_lm/llama3_8b_cpu.sh -o run.yaml --script-out run.sh -- DATA_DIR
# One FSDP2 name rides along (--save_hf_weights true): Megatron-LM does not export Hugging Face weights,
# so under Megatron's defaults the export is off unless asked for.
set -euo pipefail

export CUDA_DEVICE_MAX_CONNECTIONS=1
export OMP_NUM_THREADS=1
export FSDP2_DEVICE=cpu

DATA_DIR=${1:-output_quickstart}
TOKENIZER_MODEL=$DATA_DIR/tokenizer
DATA_PREFIX=$DATA_DIR/data/stdlib_text_document
CKPT_DIR=$DATA_DIR/checkpoints

SEQ_LEN=128
TRAIN_ITERS=${2:-100}
TP=1

DISTRIBUTED_ARGS="--nproc_per_node 2 --nnodes 1 --master_addr localhost --master_port 29517"

MODEL_ARGS="--num-layers 4 --hidden-size 128 --ffn-hidden-size 352 \
  --num-attention-heads 4 --group-query-attention --num-query-groups 2 --kv-channels 32 \
  --seq-length $SEQ_LEN --max-position-embeddings $SEQ_LEN \
  --position-embedding-type rope --rotary-base 500000 --rotary-percent 1.0 \
  --swiglu --normalization RMSNorm --norm-epsilon 1e-5 \
  --untie-embeddings-and-output-weights --disable-bias-linear \
  --attention-dropout 0.0 --hidden-dropout 0.0"

TRAIN_ARGS="--micro-batch-size 4 --global-batch-size 16 \
  --train-iters $TRAIN_ITERS --lr-warmup-fraction 0.1 --lr-decay-style cosine \
  --lr 3e-3 --min-lr 3e-4 --weight-decay 0.1 --clip-grad 1.0 \
  --adam-beta1 0.9 --adam-beta2 0.95 \
  --use-distributed-optimizer --overlap-grad-reduce --overlap-param-gather"

DATA_ARGS="--tokenizer-type HuggingFaceTokenizer --tokenizer-model $TOKENIZER_MODEL \
  --data-path $DATA_PREFIX --split 98,2,0 --num-workers 0"

OUTPUT_ARGS="--save $CKPT_DIR --load $CKPT_DIR --save-interval 50 \
  --eval-interval 50 --eval-iters 4 --log-interval 5 --save_hf_weights true"

torchrun $DISTRIBUTED_ARGS pretrain_gpt.py \
  $MODEL_ARGS \
  $TRAIN_ARGS \
  --tensor-model-parallel-size $TP \
  $DATA_ARGS \
  $OUTPUT_ARGS
