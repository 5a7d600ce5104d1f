#!/bin/bash
# A job on NVIDIA Base Command Platform: bcprun starts eight processes on each of the job's two nodes and runs
# the command given as its --cmd string on every one (each process is one rank, bcprun gives it its rank).
NODES=2
MODEL_ARGS="--num-layers 12 --hidden-size 1024 --num-attention-heads 16 --seq-length 2048 \
    --max-position-embeddings 2048 --position-embedding-type rope --normalization RMSNorm --swiglu \
    --disable-bias-linear --untie-embeddings-and-output-weights --hidden-dropout 0 --attention-dropout 0"
bcprun --nnodes $NODES -p 8 --env 'CUDA_DEVICE_MAX_CONNECTIONS=1' -c "python -u pretrain_gpt.py $MODEL_ARGS \
    --micro-batch-size 4 --global-batch-size 256 --train-iters 10000 --lr 3e-4 --min-lr 3e-5 \
    --lr-decay-style cosine --lr-warmup-iters 200 --bf16 \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model /mount/tok \
    --data-path /mount/data/web_text_document --save /results/ckpt"
