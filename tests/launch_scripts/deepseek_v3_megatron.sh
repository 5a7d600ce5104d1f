#!/bin/bash
# DeepSeek-V3 style pretraining in Megatron-LM's spelling (its own flag names for MLA, the grouped sigmoid router
# with expert bias, the dense first layers as a list, MTP), 8 nodes x 8 GPUs with expert parallelism 64.
GPUS_PER_NODE=8
NNODES=8
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-10.0.0.1}

MODEL_ARGS=(
    --num-layers 61 --hidden-size 7168 --ffn-hidden-size 18432 --num-attention-heads 128
    --kv-channels 128 --max-position-embeddings 4096 --position-embedding-type rope --rotary-base 10000
    --normalization RMSNorm --norm-epsilon 1e-6 --swiglu --untie-embeddings-and-output-weights
    --disable-bias-linear --attention-dropout 0.0 --hidden-dropout 0.0 --init-method-std 0.02
    --multi-latent-attention --qk-layernorm --q-lora-rank 1536 --kv-lora-rank 512 --qk-head-dim 128
    --qk-pos-emb-head-dim 64 --v-head-dim 128 --rotary-scaling-factor 40 --mscale 1.0 --mscale-all-dim 1.0
    --mtp-num-layers 1 --mtp-loss-scaling-factor 0.1
)
MOE_ARGS=(
    --num-experts 256 --moe-layer-freq '[0]*3+[1]*58' --moe-ffn-hidden-size 2048
    --moe-shared-expert-intermediate-size 2048 --moe-router-load-balancing-type seq_aux_loss
    --moe-aux-loss-coeff 1e-4 --moe-router-topk 8 --moe-router-pre-softmax --moe-grouped-gemm
    --moe-router-group-topk 4 --moe-router-num-groups 8 --moe-router-topk-scaling-factor 2.5
    --moe-router-score-function sigmoid --moe-router-enable-expert-bias --moe-router-bias-update-rate 1e-3
    --moe-router-dtype fp32 --moe-token-dispatcher-type alltoall --expert-model-parallel-size 64
)
TRAIN_ARGS=(
    --micro-batch-size 1 --global-batch-size 512 --train-iters 20000 --lr 3.9e-6 --min-lr 3.9e-7
    --lr-decay-style cosine --lr-warmup-iters 1000 --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95
    --clip-grad 1.0 --bf16 --calculate-per-token-loss --recompute-granularity selective --recompute-modules mlp
    --use-distributed-optimizer --use-mcore-models --seq-length 4096
)
DATA_ARGS=(
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model /models/DeepSeek-V3 --make-vocab-size-divisible-by 3232
    --data-path /data/dsv3/pile_text_document --split 99,1,0
)
OUTPUT_ARGS=(--log-interval 1 --save-interval 1000 --eval-interval 1000 --eval-iters 32 --save /ckpt/dsv3-megatron)

torchrun --nproc_per_node $GPUS_PER_NODE --nnodes $NNODES --node_rank $NODE_RANK --master_addr $MASTER_ADDR \
    --master_port 6000 pretrain_gpt.py "${MODEL_ARGS[@]}" "${MOE_ARGS[@]}" "${TRAIN_ARGS[@]}" "${DATA_ARGS[@]}" \
    "${OUTPUT_ARGS[@]}"
