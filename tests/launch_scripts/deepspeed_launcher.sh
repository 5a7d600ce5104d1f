#!/bin/bash
# The deepspeed launcher with a hostfile: 8 GPUs on each of 2 nodes.
NUM_NODES=2
GPUS=8
LAUNCHER="deepspeed --num_nodes $NUM_NODES --num_gpus $GPUS --hostfile /job/hostfile --master_port 29700"
$LAUNCHER pretrain_gpt.py \
    --tensor-model-parallel-size 2 \
    --num-layers 24 --hidden-size 2048 --num-attention-heads 16 \
    --seq-length 2048 --max-position-embeddings 2048 \
    --micro-batch-size 2 --global-batch-size 256 \
    --train-iters 100000 --lr 2e-4 --min-lr 2e-5 --lr-decay-style cosine --lr-warmup-iters 1000 \
    --bf16 --vocab-file /data/gpt2/vocab.json --merge-file /data/gpt2/merges.txt \
    --data-path /data/pile/pile_text_document --split 949,50,1 --save /ckpt/gpt-1.3b-ds
