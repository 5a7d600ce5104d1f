#!/bin/bash
# Launcher kept in a variable, Megatron checkout given by path.
MEGATRON_PATH=${MEGATRON_PATH:-/workspace/Megatron-LM}
export PYTHONPATH=${MEGATRON_PATH}:/workspace/extra
export CUDA_DEVICE_MAX_CONNECTIONS=1

NPROC=8
DISTRIBUTED_ARGS="--nproc_per_node $NPROC --nnodes 1 --rdzv_backend c10d --rdzv_endpoint localhost:29400"
LAUNCHER="torchrun $DISTRIBUTED_ARGS"

mkdir -p /ckpt/gpt-2.7b && \
$LAUNCHER ${MEGATRON_PATH}/pretrain_gpt.py \
    --tensor-model-parallel-size 2 \
    --num-layers 32 --hidden-size 2560 --num-attention-heads 32 \
    --seq-length 2048 --max-position-embeddings 2048 \
    --micro-batch-size 2 --global-batch-size 128 \
    --train-iters 100000 --lr 1.6e-4 --lr-decay-style cosine \
    --vocab-file /data/gpt2/vocab.json --merge-file /data/gpt2/merges.txt \
    --data-path /data/pile/pile_text_document \
    --save /ckpt/gpt-2.7b --bf16
