#!/bin/bash
# GLM-4.5-Air style pretraining, MindSpeed-LLM spelling: grouped-query attention with q/k/v biases and half-rotary
# RoPE, 128 experts behind a sigmoid router with expert bias (no aux loss), one shared expert, the first layer dense.
NPUS_PER_NODE=16
NNODES=2
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-10.0.0.2}
MASTER_PORT=6000
TP=1; PP=2; EP=8
CKPT_SAVE_DIR=/ckpt/glm45-air
DATA_PATH=/data/glm45/wiki_text_document
TOKENIZER_PATH=/models/GLM-4.5-Air

DISTRIBUTED_ARGS="--nproc_per_node $NPUS_PER_NODE --nnodes $NNODES --node_rank $NODE_RANK --master_addr $MASTER_ADDR --master_port $MASTER_PORT"

MOE_ARGS="
    --moe-grouped-gemm \
    --moe-token-dispatcher-type alltoall \
    --first-k-dense-replace 1 \
    --moe-layer-freq 1 \
    --n-shared-experts 1 \
    --num-experts 128 \
    --moe-router-topk 8 \
    --moe-ffn-hidden-size 1408 \
    --moe-router-load-balancing-type none \
    --moe-router-num-groups 1 \
    --moe-router-group-topk 1 \
    --norm-topk-prob \
    --moe-router-score-function sigmoid \
    --moe-router-enable-expert-bias \
    --moe-router-dtype fp32 \
    --expert-model-parallel-size ${EP}
"

GPT_ARGS="
    --use-mcore-models \
    --tensor-model-parallel-size ${TP} \
    --pipeline-model-parallel-size ${PP} \
    --use-distributed-optimizer \
    --use-flash-attn \
    --kv-channels 128 \
    --num-layers 46 \
    --hidden-size 4096 \
    --ffn-hidden-size 10944 \
    --num-attention-heads 96 \
    --max-position-embeddings 131072 \
    --padded-vocab-size 151552 \
    --make-vocab-size-divisible-by 1 \
    --group-query-attention \
    --num-query-groups 8 \
    --disable-bias-linear \
    --add-qkv-bias \
    --position-embedding-type rope \
    --rotary-percent 0.5 \
    --rotary-base 1000000 \
    --normalization RMSNorm \
    --swiglu \
    --norm-epsilon 1e-05 \
    --untie-embeddings-and-output-weights \
    --attention-dropout 0.0 \
    --hidden-dropout 0.0 \
    --tokenizer-type PretrainedFromHF \
    --tokenizer-name-or-path ${TOKENIZER_PATH} \
    --seq-length 4096 \
    --micro-batch-size 1 \
    --global-batch-size 64 \
    --train-iters 2000 \
    --lr 1.0e-5 \
    --min-lr 1.0e-6 \
    --lr-decay-style cosine \
    --weight-decay 0.1 \
    --clip-grad 1.0 \
    --bf16
"

torchrun $DISTRIBUTED_ARGS pretrain_gpt.py $GPT_ARGS $MOE_ARGS \
    --data-path $DATA_PATH --split 100,0,0 \
    --log-interval 1 --save-interval 2000 --eval-interval 2000 --eval-iters 0 \
    --save $CKPT_SAVE_DIR
