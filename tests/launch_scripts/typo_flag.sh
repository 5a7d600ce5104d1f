#!/bin/bash
# Same as a small GPT run, but the tensor-parallel flag is misspelled.
export CUDA_DEVICE_MAX_CONNECTIONS=1

torchrun --nproc_per_node 4 pretrain_gpt.py \
    --tensor-model-paralel-size 2 \
    --num-layers 12 \
    --hidden-size 768 \
    --num-attention-heads 12 \
    --seq-length 1024 \
    --max-position-embeddings 1024 \
    --micro-batch-size 8 \
    --global-batch-size 64 \
    --train-iters 10000 \
    --lr 6e-4 \
    --vocab-file /data/gpt2/vocab.json \
    --merge-file /data/gpt2/merges.txt \
    --data-path /data/owt/owt_text_document \
    --fp16
