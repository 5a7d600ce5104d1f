#!/bin/bash
# 4-node launch. Usage: bash multinode_positional.sh NODE_RANK MASTER_ADDR [MASTER_PORT]
set -e

NODE_RANK=${1:-0}
MASTER_ADDR=${2:-"127.0.0.1"}
MASTER_PORT=${3:-29501}
NNODES=4
GPUS_PER_NODE=8
WORLD_SIZE=$((GPUS_PER_NODE * NNODES))

export NCCL_SOCKET_IFNAME=eth0
export NCCL_DEBUG=WARN
export GLOO_SOCKET_IFNAME=$NCCL_SOCKET_IFNAME

TP=4
PP=2
MBS=2
GBS=256

if [ "$NODE_RANK" -eq 0 ]; then
    echo "master node, world size $WORLD_SIZE"
fi

torchrun --nproc-per-node=$GPUS_PER_NODE --nnodes=$NNODES --node-rank=$NODE_RANK \
    --master-addr=$MASTER_ADDR --master-port=$MASTER_PORT \
    pretrain_gpt.py \
    --tensor-model-parallel-size $TP \
    --pipeline-model-parallel-size $PP \
    --num-layers 40 \
    --hidden-size 5120 \
    --num-attention-heads 40 \
    --seq-length 4096 \
    --max-position-embeddings 4096 \
    --micro-batch-size $MBS \
    --global-batch-size $GBS \
    --train-iters 100000 \
    --lr 1.5e-4 \
    --min-lr 1.5e-5 \
    --lr-decay-style cosine \
    --lr-warmup-iters 2000 \
    --bf16 \
    --tokenizer-type HuggingFaceTokenizer \
    --tokenizer-model /models/llama2-13b \
    --data-path 0.7 /data/mix/web_text_document 0.3 /data/mix/code_text_document \
    --save /ckpt/13b-4node \
    --load /ckpt/13b-4node
