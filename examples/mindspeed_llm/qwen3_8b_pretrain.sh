#!/bin/bash
# MindSpeed-LLM style launch script: Qwen3-8B continued pretraining on one Atlas node of 8 NPUs (or 8 GPUs),
# TP 4, bf16, fused kernels switched on with MindSpeed's flags. Run it as it is with our pretrain_gpt.py, or
# convert it once:
#     python tools/convert_args.py examples/mindspeed_llm/qwen3_8b_pretrain.sh -o qwen3.yaml --script-out qwen3_fsdp2.sh
# MindSpeed loads a Megatron-format checkpoint converted from Hugging Face; here --load names the Hugging Face
# directory itself (no conversion step), and --save is where our checkpoints and the export go.
# CPU-sized twin (same flags, tiny shapes, 2 CPU ranks): qwen3_8b_pretrain_cpu.sh
export CUDA_DEVICE_MAX_CONNECTIONS=1
export PYTORCH_NPU_ALLOC_CONF=expandable_segments:True
export HCCL_CONNECT_TIMEOUT=1200

NPUS_PER_NODE=8
MASTER_ADDR=localhost
MASTER_PORT=6000
NNODES=1
NODE_RANK=0

CKPT_LOAD_DIR="/models/Qwen3-8B"
CKPT_SAVE_DIR="/checkpoints/qwen3-8b-pretrain"
DATA_PATH="/data/qwen3/corpus_text_document"
TOKENIZER_PATH="/models/Qwen3-8B"

TP=4
PP=1
SEQ_LENGTH=4096

DISTRIBUTED_ARGS="
    --nproc_per_node $NPUS_PER_NODE \
    --nnodes $NNODES \
    --node_rank $NODE_RANK \
    --master_addr $MASTER_ADDR \
    --master_port $MASTER_PORT
"

GPT_ARGS="
    --use-mcore-models \
    --tensor-model-parallel-size ${TP} \
    --pipeline-model-parallel-size ${PP} \
    --sequence-parallel \
    --use-distributed-optimizer \
    --use-flash-attn \
    --use-fused-rmsnorm \
    --use-fused-swiglu \
    --use-rotary-position-embeddings \
    --use-fused-rotary-pos-emb \
    --qk-layernorm \
    --num-layers 36 \
    --hidden-size 4096 \
    --ffn-hidden-size 12288 \
    --num-attention-heads 32 \
    --group-query-attention \
    --num-query-groups 8 \
    --kv-channels 128 \
    --max-position-embeddings 40960 \
    --seq-length ${SEQ_LENGTH} \
    --rotary-base 1000000 \
    --normalization RMSNorm \
    --norm-epsilon 1e-6 \
    --swiglu \
    --disable-bias-linear \
    --untie-embeddings-and-output-weights \
    --attention-dropout 0.0 \
    --hidden-dropout 0.0 \
    --tokenizer-type PretrainedFromHF \
    --tokenizer-name-or-path ${TOKENIZER_PATH} \
    --make-vocab-size-divisible-by 1 \
    --padded-vocab-size 151936 \
    --micro-batch-size 1 \
    --global-batch-size 64 \
    --train-iters 2000 \
    --lr 1.25e-6 \
    --min-lr 1.25e-7 \
    --lr-decay-style cosine \
    --lr-warmup-fraction 0.01 \
    --weight-decay 1e-1 \
    --clip-grad 1.0 \
    --adam-beta1 0.9 \
    --adam-beta2 0.95 \
    --initial-loss-scale 4096 \
    --no-gradient-accumulation-fusion \
    --no-masked-softmax-fusion \
    --attention-softmax-in-fp32 \
    --bf16
"

DATA_ARGS="
    --data-path $DATA_PATH \
    --split 100,0,0
"

OUTPUT_ARGS="
    --log-interval 1 \
    --save-interval 500 \
    --eval-interval 500 \
    --eval-iters 0 \
    --no-load-optim \
    --no-load-rng
"

torchrun $DISTRIBUTED_ARGS pretrain_gpt.py \
    $GPT_ARGS \
    $DATA_ARGS \
    $OUTPUT_ARGS \
    --distributed-backend nccl \
    --load ${CKPT_LOAD_DIR} \
    --save ${CKPT_SAVE_DIR}
