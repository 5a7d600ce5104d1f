#!/bin/bash
# Qwen3-8B SFT with MindSpeed-LLM posttrain_gpt.py; the launch is wrapped in a function.
export HCCL_CONNECT_TIMEOUT=1200

NPUS_PER_NODE=8
TP=2
PP=2
DATA_PATH=/data/sft/alpaca_qwen3
CKPT_LOAD_DIR=/ckpt/qwen3-8b-mcore
CKPT_SAVE_DIR=/ckpt/qwen3-8b-sft

TUNE_ARGS="
    --finetune \
    --stage sft \
    --is-instruction-dataset \
    --prompt-type qwen3 \
    --variable-seq-lengths \
    --no-pad-to-seq-lengths
"

launch() {
    local what=$1
    shift
    echo "starting $what"
    torchrun --nproc_per_node $NPUS_PER_NODE posttrain_gpt.py "$@" \
        | tee logs/${what}.log
}

launch sft \
    $TUNE_ARGS \
    --tensor-model-parallel-size $TP \
    --pipeline-model-parallel-size $PP \
    --num-layers 36 --hidden-size 4096 --ffn-hidden-size 12288 \
    --num-attention-heads 32 --group-query-attention --num-query-groups 8 \
    --seq-length 4096 --max-position-embeddings 40960 \
    --micro-batch-size 1 --global-batch-size 32 \
    --train-iters 2000 --lr 1e-5 --min-lr 1e-6 --bf16 \
    --tokenizer-type PretrainedFromHF --tokenizer-name-or-path /models/Qwen3-8B \
    --data-path $DATA_PATH \
    --load $CKPT_LOAD_DIR --save $CKPT_SAVE_DIR
