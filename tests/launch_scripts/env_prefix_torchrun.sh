#!/bin/bash
# Settings given only to the launch command, as prefix assignments and through env.
NCCL_DEBUG=WARN CUDA_DEVICE_MAX_CONNECTIONS=1 env OMP_NUM_THREADS=4 TORCH_NCCL_ASYNC_ERROR_HANDLING=1 \
    torchrun --standalone --nproc_per_node=8 pretrain_gpt.py \
    --tensor-model-parallel-size 2 \
    --num-layers 24 --hidden-size 2048 --num-attention-heads 16 \
    --seq-length 2048 --max-position-embeddings 2048 \
    --micro-batch-size 2 --global-batch-size 64 \
    --train-iters 100000 --lr 2e-4 --min-lr 2e-5 --lr-decay-style cosine --lr-warmup-iters 1000 \
    --bf16 --vocab-file /data/gpt2/vocab.json --merge-file /data/gpt2/merges.txt \
    --data-path /data/pile/pile_text_document --split 949,50,1 --save /ckpt/gpt-1.3b-env
