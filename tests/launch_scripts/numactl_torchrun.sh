#!/bin/bash
# torchrun bound to the first NUMA node's cores and memory.
NUMA_NODE=0
numactl --cpunodebind=$NUMA_NODE --membind=$NUMA_NODE \
    torchrun --nproc_per_node 4 --nnodes 1 --master_port 29502 pretrain_gpt.py \
    --num-layers 12 --hidden-size 768 --num-attention-heads 12 \
    --seq-length 1024 --max-position-embeddings 1024 \
    --micro-batch-size 4 --global-batch-size 64 \
    --train-iters 50000 --lr 6e-4 --min-lr 6e-5 --lr-decay-style cosine --lr-warmup-iters 500 \
    --bf16 --vocab-file /data/gpt2/vocab.json --merge-file /data/gpt2/merges.txt \
    --data-path /data/owt/owt_text_document --split 949,50,1 --save /ckpt/gpt-125m-numa
