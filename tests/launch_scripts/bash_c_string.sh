#!/bin/bash
# A command string run by a child shell: it sees only the exported variables.
export CUDA_DEVICE_MAX_CONNECTIONS=1
export NPROC=4
LOCAL_ONLY=not-seen-by-the-child
TRAIN="pretrain_gpt.py \
    --num-layers 12 --hidden-size 768 --num-attention-heads 12 \
    --seq-length 1024 --max-position-embeddings 1024 \
    --micro-batch-size 4 --global-batch-size 64 \
    --train-iters 50000 --lr 6e-4 --min-lr 6e-5 --lr-decay-style cosine --lr-warmup-iters 500 \
    --fp16 --vocab-file /data/gpt2/vocab.json --merge-file /data/gpt2/merges.txt \
    --data-path /data/owt/owt_text_document --split 949,50,1 --save /ckpt/gpt-125m"
bash -c "torchrun --nproc_per_node \$NPROC --nnodes \${NNODES:-1} $TRAIN \${LOCAL_ONLY:+--bad-flag}"
