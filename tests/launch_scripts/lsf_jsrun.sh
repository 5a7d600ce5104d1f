#!/bin/bash
#BSUB -nnodes 4
#BSUB -W 2:00
#BSUB -J llama-1b
# An LSF job on an IBM machine: jsrun starts 24 resource sets of one task and one GPU each (six a node);
# every task is one rank, and the time prefix only measures the run.
NRS=24
export MASTER_PORT=29400
time jsrun -n ${NRS} -a 1 -c 7 -g 1 -r 6 --bind packed:7 --smpiargs "-gpu -disable_gpu_hooks" \
    python pretrain_gpt.py \
    --num-layers 16 --hidden-size 2048 --num-attention-heads 16 --group-query-attention --num-query-groups 4 \
    --ffn-hidden-size 5632 --seq-length 2048 --max-position-embeddings 2048 \
    --position-embedding-type rope --normalization RMSNorm --swiglu --disable-bias-linear \
    --untie-embeddings-and-output-weights --attention-dropout 0 --hidden-dropout 0 \
    --micro-batch-size 2 --global-batch-size 192 --train-iters 20000 \
    --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 500 --clip-grad 1.0 --bf16 \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model /gpfs/tok/llama \
    --data-path /gpfs/data/web_text_document --split 99,1,0 \
    --save /gpfs/ckpt/llama-1b --save-interval 1000
