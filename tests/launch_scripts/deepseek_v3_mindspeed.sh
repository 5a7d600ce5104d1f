#!/bin/bash
# DeepSeek-V3 style pretraining, MindSpeed-LLM spelling: MLA, aux-loss-free sigmoid routing over 8 expert groups,
# one shared expert, the sequence-level aux loss, one MTP layer and YaRN for 160k positions. 4 nodes x 16 NPUs.
export HCCL_CONNECT_TIMEOUT=1800
NPUS_PER_NODE=16
MASTER_ADDR=${MASTER_ADDR:-10.0.0.1}
MASTER_PORT=6000
NNODES=4
NODE_RANK=${NODE_RANK:-0}

DATA_PATH=/data/dsv3/enwiki_text_document
TOKENIZER_PATH=/models/DeepSeek-V3
CKPT_SAVE_DIR=/ckpt/dsv3-pretrain

TP=1; PP=4; EP=16; CP=1
SEQ_LEN=4096
MBS=1
GBS=256

DISTRIBUTED_ARGS="--nproc_per_node $NPUS_PER_NODE --nnodes $NNODES --node_rank $NODE_RANK --master_addr $MASTER_ADDR --master_port $MASTER_PORT"

MLA_ARGS="
    --multi-head-latent-attention \
    --qk-rope-head-dim 64 \
    --qk-nope-head-dim 128 \
    --q-lora-rank 1536 \
    --kv-lora-rank 512 \
    --v-head-dim 128 \
    --qk-layernorm \
    --mla-mm-split \
    --mla-fa-without-pad
"

MOE_ARGS="
    --moe-grouped-gemm \
    --moe-token-dispatcher-type alltoall \
    --first-k-dense-replace 3 \
    --moe-layer-freq 1 \
    --n-shared-experts 1 \
    --num-experts 256 \
    --moe-router-topk 8 \
    --moe-intermediate-size 2048 \
    --moe-router-load-balancing-type noaux_tc \
    --n-group 8 \
    --topk-group 4 \
    --routed-scaling-factor 2.5 \
    --moe-aux-loss-coeff 0.0001 \
    --seq-aux \
    --norm-topk-prob \
    --moe-router-score-function sigmoid \
    --moe-router-enable-expert-bias \
    --router-gating-in-fp32 \
    --expert-model-parallel-size ${EP}
"

MTP_ARGS="
    --num-nextn-predict-layers 1 \
    --share-mtp-embedding-and-output-weight \
    --mtp-mem-efficient-logits
"

ROPE_ARGS="
    --rope-scaling-beta-fast 32 \
    --rope-scaling-beta-slow 1 \
    --rope-scaling-factor 40 \
    --rope-scaling-mscale 1.0 \
    --rope-scaling-mscale-all-dim 1.0 \
    --rope-scaling-original-max-position-embeddings 4096 \
    --rope-scaling-type yarn
"

GPT_ARGS="
    --use-mcore-models \
    --tensor-model-parallel-size ${TP} \
    --pipeline-model-parallel-size ${PP} \
    --use-distributed-optimizer \
    --use-flash-attn \
    --use-fused-rmsnorm \
    --use-fused-swiglu \
    --use-rotary-position-embeddings \
    --num-layers 61 \
    --hidden-size 7168 \
    --ffn-hidden-size 18432 \
    --num-attention-heads 128 \
    --seq-length ${SEQ_LEN} \
    --max-position-embeddings 163840 \
    --position-embedding-type rope \
    --rotary-base 10000 \
    --normalization RMSNorm \
    --norm-epsilon 1e-6 \
    --swiglu \
    --disable-bias-linear \
    --untie-embeddings-and-output-weights \
    --attention-dropout 0.0 \
    --hidden-dropout 0.0 \
    --init-method-std 0.02 \
    --tokenizer-type PretrainedFromHF \
    --tokenizer-name-or-path ${TOKENIZER_PATH} \
    --make-vocab-size-divisible-by 1 \
    --vocab-size 129280 \
    --padded-vocab-size 129280 \
    --micro-batch-size ${MBS} \
    --global-batch-size ${GBS} \
    --train-iters 2000 \
    --lr 1.0e-5 \
    --min-lr 1.0e-7 \
    --lr-decay-style cosine \
    --lr-warmup-iters 500 \
    --weight-decay 1e-2 \
    --clip-grad 1.0 \
    --recompute-granularity full \
    --recompute-method uniform \
    --recompute-num-layers 1 \
    --bf16
"

DATA_ARGS="--data-path $DATA_PATH --split 100,0,0"
OUTPUT_ARGS="--log-interval 1 --save-interval 2000 --eval-interval 2000 --eval-iters 0 --no-save-optim --no-save-rng"

torchrun $DISTRIBUTED_ARGS pretrain_gpt.py \
    $GPT_ARGS \
    $MLA_ARGS \
    $MOE_ARGS \
    $MTP_ARGS \
    $ROPE_ARGS \
    $DATA_ARGS \
    $OUTPUT_ARGS \
    --distributed-backend nccl \
    --save $CKPT_SAVE_DIR \
    | tee logs/pretrain_dsv3_${NODE_RANK}.log
