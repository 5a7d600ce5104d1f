#!/bin/bash
# A MindSpeed-style GPT example: learned absolute positions (no --position-embedding-type: Megatron's default),
# LayerNorm and GeLU without linear biases, Megatron's default hidden dropout. Ascend settings exported first.
export CUDA_DEVICE_MAX_CONNECTIONS=1
export HCCL_CONNECT_TIMEOUT=1200
source /usr/local/Ascend/ascend-toolkit/set_env.sh

GPUS_PER_NODE=8
MASTER_ADDR=localhost
MASTER_PORT=6000
NNODES=1
NODE_RANK=0

CKPT_DIR=./ckpt/gpt-1b
DATA_PATH=/data/enwiki/enwiki_text_document
VOCAB_FILE=/data/gpt2/vocab.json
MERGE_FILE=/data/gpt2/merges.txt

DISTRIBUTED_ARGS="--nproc_per_node $GPUS_PER_NODE --nnodes $NNODES --node_rank $NODE_RANK --master_addr $MASTER_ADDR --master_port $MASTER_PORT"

GPT_ARGS="
    --tensor-model-parallel-size 2 \
    --num-layers 24 \
    --hidden-size 2048 \
    --ffn-hidden-size 8192 \
    --num-attention-heads 16 \
    --seq-length 2048 \
    --max-position-embeddings 2048 \
    --micro-batch-size 2 \
    --global-batch-size 64 \
    --disable-bias-linear \
    --lr 2.0e-4 --min-lr 2.0e-5 --lr-decay-style cosine --lr-warmup-fraction 0.01 \
    --train-iters 10000 --weight-decay 0.1 --clip-grad 1.0 \
    --attention-dropout 0.0 \
    --init-method-std 0.01 \
    --bf16
"

DATA_ARGS="--data-path $DATA_PATH --vocab-file $VOCAB_FILE --merge-file $MERGE_FILE --split 949,50,1"
OUTPUT_ARGS="--log-interval 10 --save-interval 1000 --eval-interval 1000 --eval-iters 10 --save $CKPT_DIR"

torchrun $DISTRIBUTED_ARGS pretrain_gpt.py $GPT_ARGS $DATA_ARGS $OUTPUT_ARGS --distributed-backend nccl
