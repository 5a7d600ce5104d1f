#!/bin/bash
# The CPU-sized twin of qwen3_8b_pretrain.sh: the same MindSpeed flags with tiny shapes, 2 CPU ranks, fp32,
# trained from scratch (no --load) on the corpus and tokenizer of examples/make_example_data.py (the quickstart):
#     bash examples/mindspeed_llm/qwen3_8b_pretrain_cpu.sh [DATA_DIR [ITERS]]
#     python tools/convert_args.py examples/mindspeed_llm/qwen3_8b_pretrain_cpu.sh -o run.yaml --script-out run.sh -- DATA_DIR
export CUDA_DEVICE_MAX_CONNECTIONS=1
export OMP_NUM_THREADS=1
export FSDP2_DEVICE=cpu
export PYTORCH_NPU_ALLOC_CONF=expandable_segments:True
export HCCL_CONNECT_TIMEOUT=1200

NPUS_PER_NODE=2
MASTER_ADDR=localhost
MASTER_PORT=29518
NNODES=1
NODE_RANK=0

DATA_DIR=${1:-output_quickstart}
TRAIN_ITERS=${2:-100}
CKPT_SAVE_DIR="$DATA_DIR/qwen3_cpu_checkpoints"
DATA_PATH="$DATA_DIR/data/stdlib_text_document"
TOKENIZER_PATH="$DATA_DIR/tokenizer"

TP=1
PP=2
SEQ_LENGTH=128

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
    --num-layers 4 \
    --hidden-size 128 \
    --ffn-hidden-size 352 \
    --num-attention-heads 4 \
    --group-query-attention \
    --num-query-groups 2 \
    --kv-channels 32 \
    --max-position-embeddings 256 \
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
    --make-vocab-size-divisible-by 128 \
    --micro-batch-size 4 \
    --global-batch-size 16 \
    --train-iters ${TRAIN_ITERS} \
    --lr 3e-3 \
    --min-lr 3e-4 \
    --lr-decay-style cosine \
    --lr-warmup-fraction 0.1 \
    --weight-decay 1e-1 \
    --clip-grad 1.0 \
    --adam-beta1 0.9 \
    --adam-beta2 0.95 \
    --initial-loss-scale 4096 \
    --no-gradient-accumulation-fusion \
    --no-masked-softmax-fusion \
    --attention-softmax-in-fp32
"

DATA_ARGS="
    --data-path $DATA_PATH \
    --split 98,2,0
"

OUTPUT_ARGS="
    --log-interval 5 \
    --save-interval 0 \
    --eval-interval 50 \
    --eval-iters 2 \
    --no-load-optim \
    --no-load-rng
"

torchrun $DISTRIBUTED_ARGS pretrain_gpt.py \
    $GPT_ARGS \
    $DATA_ARGS \
    $OUTPUT_ARGS \
    --distributed-backend gloo \
    --save ${CKPT_SAVE_DIR}
