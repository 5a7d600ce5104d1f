#!/bin/bash
# Qwen3-30B-A3B (128 experts, 8 active) on 2 nodes x 8 NPUs with Ulysses context parallel.
export HCCL_CONNECT_TIMEOUT=1800
export CPU_AFFINITY_CONF=1
export TASK_QUEUE_ENABLE=2

NPUS_PER_NODE=8
MASTER_ADDR=${MASTER_ADDR:-192.168.10.1}
MASTER_PORT=6000
NNODES=2
NODE_RANK=${NODE_RANK:-0}

DATA_PATH=/data/qwen3-moe/alpaca_text_document
TOKENIZER_PATH=/models/Qwen3-30B-A3B
CKPT_LOAD_DIR=/ckpt/qwen3-30b-a3b-mcore
CKPT_SAVE_DIR=/ckpt/qwen3-30b-a3b-pretrain

TP=2; PP=2; EP=4; CP=2
CP_TYPE='ulysses_cp_algo'
SEQ_LEN=8192
MBS=1
GBS=128

DISTRIBUTED_ARGS="--nproc_per_node $NPUS_PER_NODE --nnodes $NNODES --node_rank $NODE_RANK --master_addr $MASTER_ADDR --master_port $MASTER_PORT"

MOE_ARGS="
    --num-experts 128 \
    --moe-router-topk 8 \
    --moe-ffn-hidden-size 768 \
    --moe-grouped-gemm \
    --moe-permutation-async-comm \
    --moe-token-dispatcher-type alltoall \
    --moe-aux-loss-coeff 0.001 \
    --moe-router-load-balancing-type aux_loss \
    --expert-model-parallel-size ${EP}
"

GPT_ARGS="
    --use-mcore-models \
    --tensor-model-parallel-size ${TP} \
    --pipeline-model-parallel-size ${PP} \
    --context-parallel-size ${CP} \
    --context-parallel-algo ${CP_TYPE} \
    --sequence-parallel \
    --use-distributed-optimizer \
    --use-flash-attn \
    --use-fused-rmsnorm \
    --use-fused-swiglu \
    --use-rotary-position-embeddings \
    --use-fused-rotary-pos-emb \
    --qk-layernorm \
    --num-layers 48 \
    --hidden-size 2048 \
    --ffn-hidden-size 6144 \
    --num-attention-heads 32 \
    --group-query-attention \
    --num-query-groups 4 \
    --kv-channels 128 \
    --seq-length ${SEQ_LEN} \
    --max-position-embeddings 40960 \
    --rotary-base 1000000 \
    --normalization RMSNorm \
    --norm-epsilon 1e-6 \
    --swiglu \
    --disable-bias-linear \
    --untie-embeddings-and-output-weights \
    --tokenizer-type PretrainedFromHF \
    --tokenizer-name-or-path ${TOKENIZER_PATH} \
    --make-vocab-size-divisible-by 1 \
    --padded-vocab-size 151936 \
    --micro-batch-size ${MBS} \
    --global-batch-size ${GBS} \
    --train-iters 5000 \
    --lr 1.25e-6 \
    --min-lr 1.25e-7 \
    --lr-decay-style cosine \
    --lr-warmup-fraction 0.01 \
    --weight-decay 0.1 \
    --clip-grad 1.0 \
    --recompute-granularity full \
    --recompute-method uniform \
    --recompute-num-layers 1 \
    --bf16
"

DATA_ARGS="--data-path $DATA_PATH --split 100,0,0"
OUTPUT_ARGS="--log-interval 1 --save-interval 1000 --eval-interval 1000 --eval-iters 0"

python -m torch.distributed.run $DISTRIBUTED_ARGS pretrain_gpt.py \
    $GPT_ARGS \
    $MOE_ARGS \
    $DATA_ARGS \
    $OUTPUT_ARGS \
    --distributed-backend nccl \
    --load $CKPT_LOAD_DIR \
    --save $CKPT_SAVE_DIR \
    2>&1 | tee logs/pretrain_qwen3_30b_a3b_${NODE_RANK}.log
