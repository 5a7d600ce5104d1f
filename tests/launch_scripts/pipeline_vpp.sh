#!/bin/bash
# 7B model on 2 nodes: TP=2, PP=4 with an interleaved (virtual) pipeline of 2 layers per chunk.
export CUDA_DEVICE_MAX_CONNECTIONS=1

NNODES=2
GPUS=8
NUM_LAYERS=32
PP=4
LAYERS_PER_VSTAGE=2

torchrun --nproc_per_node=$GPUS --nnodes=$NNODES --node_rank=${NODE_RANK:-0} \
         --master_addr=${MASTER_ADDR:-localhost} --master_port=${MASTER_PORT:-6000} \
    pretrain_gpt.py \
    --tensor-model-parallel-size 2 \
    --pipeline-model-parallel-size $PP \
    --num-layers-per-virtual-pipeline-stage $LAYERS_PER_VSTAGE \
    --num-layers $NUM_LAYERS \
    --hidden-size 4096 \
    --num-attention-heads 32 \
    --seq-length 4096 \
    --max-position-embeddings 4096 \
    --micro-batch-size 1 \
    --global-batch-size 64 \
    --train-iters 50000 \
    --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 500 \
    --bf16 \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model /models/llama2-7b \
    --data-path /data/slimpajama/sp_text_document \
    --save /ckpt/7b-vpp --save-interval 1000 \
    --log-interval 10
