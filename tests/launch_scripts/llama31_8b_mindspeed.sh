#!/bin/bash
# Llama-3.1-8B continued pretraining at 8k with its RoPE scaling (MindSpeed-LLM spelling), one node of 8 NPUs.
NPUS_PER_NODE=8
MASTER_ADDR=localhost
MASTER_PORT=6000
NNODES=1
NODE_RANK=0
TP=2; PP=1

CKPT_LOAD_DIR=/models/Meta-Llama-3.1-8B
CKPT_SAVE_DIR=/ckpt/llama31-8b
DATA_PATH=/data/llama31/wiki_text_document
TOKENIZER_PATH=/models/Meta-Llama-3.1-8B

DISTRIBUTED_ARGS="--nproc_per_node $NPUS_PER_NODE --nnodes $NNODES --node_rank $NODE_RANK --master_addr $MASTER_ADDR --master_port $MASTER_PORT"

GPT_ARGS="
    --use-mcore-models \
    --tensor-model-parallel-size ${TP} \
    --pipeline-model-parallel-size ${PP} \
    --use-rotary-position-embeddings \
    --use-fused-rmsnorm \
    --use-fused-swiglu \
    --num-layers 32 \
    --hidden-size 4096 \
    --ffn-hidden-size 14336 \
    --num-attention-heads 32 \
    --group-query-attention \
    --num-query-groups 8 \
    --rope-scaling-type llama3 \
    --rope-scaling-factor 8.0 \
    --low-freq-factor 1.0 \
    --high-freq-factor 4.0 \
    --original-max-position-embeddings 8192 \
    --max-position-embeddings 131072 \
    --make-vocab-size-divisible-by 1 \
    --padded-vocab-size 128256 \
    --untie-embeddings-and-output-weights \
    --disable-bias-linear \
    --attention-dropout 0.0 \
    --hidden-dropout 0.0 \
    --position-embedding-type rope \
    --rotary-base 500000 \
    --normalization RMSNorm \
    --norm-epsilon 1e-5 \
    --swiglu \
    --tokenizer-type PretrainedFromHF \
    --tokenizer-name-or-path ${TOKENIZER_PATH} \
    --seq-length 8192 \
    --micro-batch-size 1 \
    --global-batch-size 64 \
    --train-iters 2000 \
    --lr 1.25e-6 \
    --min-lr 1.25e-7 \
    --lr-decay-style cosine \
    --lr-warmup-fraction 0.01 \
    --weight-decay 1e-1 \
    --clip-grad 1.0 \
    --bf16
"

torchrun $DISTRIBUTED_ARGS pretrain_gpt.py $GPT_ARGS \
    --data-path $DATA_PATH --split 100,0,0 \
    --log-interval 1 --save-interval 1000 --eval-interval 1000 --eval-iters 0 \
    --load $CKPT_LOAD_DIR --save $CKPT_SAVE_DIR
