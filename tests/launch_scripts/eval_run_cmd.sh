#!/bin/bash
# The command is built in a string and run with eval, so the quotes inside the string count.
GPUS_PER_NODE=8
NNODES=2
NODE_RANK=${1:-0}
MASTER_ADDR=${2:-localhost}
MASTER_PORT=6000
DISTRIBUTED_ARGS="--nproc_per_node $GPUS_PER_NODE --nnodes $NNODES --node_rank $NODE_RANK \
    --master_addr $MASTER_ADDR --master_port $MASTER_PORT"

options=" \
    --tensor-model-parallel-size 2 \
    --num-layers 16 --hidden-size 2048 --num-attention-heads 16 --ffn-hidden-size 5632 \
    --seq-length 4096 --max-position-embeddings 4096 --position-embedding-type rope \
    --normalization RMSNorm --swiglu --untie-embeddings-and-output-weights --disable-bias-linear \
    --micro-batch-size 2 --global-batch-size 256 \
    --train-iters 20000 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 200 \
    --bf16 --tokenizer-type Llama2Tokenizer --tokenizer-model /models/llama/tokenizer.model \
    --data-path /data/corpus_text_document --split 99,1,0 \
    --tensorboard-dir \"/logs/llama 1b\" --save /ckpt/llama-1b-eval"

run_cmd="torchrun ${DISTRIBUTED_ARGS} pretrain_gpt.py ${options}"
echo ${run_cmd}
eval ${run_cmd}
