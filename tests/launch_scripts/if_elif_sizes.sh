#!/bin/bash
# Pick the model shape from MODEL_SIZE (7B, 13B or 70B).
set -euo pipefail

MODEL_SIZE=${MODEL_SIZE:-13B}
GPUS_PER_NODE=8

if [[ ${MODEL_SIZE} == 7B ]]; then
    HIDDEN=4096; FFN=11008; LAYERS=32; HEADS=32; TP=1
elif [[ ${MODEL_SIZE} == 13B ]]; then
    HIDDEN=5120; FFN=13824; LAYERS=40; HEADS=40; TP=2
elif [ "$MODEL_SIZE" = "70B" ]; then
    HIDDEN=8192; FFN=28672; LAYERS=80; HEADS=64; TP=8
else
    echo "unknown MODEL_SIZE=$MODEL_SIZE"
    exit 1
fi

DP=$(( GPUS_PER_NODE / TP ))
MBS=1
GBS=$(( 32 * DP * MBS ))

torchrun --nproc_per_node $GPUS_PER_NODE pretrain_gpt.py \
    --tensor-model-parallel-size $TP \
    --num-layers $LAYERS --hidden-size $HIDDEN --ffn-hidden-size $FFN \
    --num-attention-heads $HEADS \
    --seq-length 4096 --max-position-embeddings 4096 \
    --swiglu --normalization RMSNorm --position-embedding-type rope \
    --micro-batch-size $MBS --global-batch-size $GBS \
    --train-iters 20000 --lr 3e-4 --bf16 \
    --tokenizer-type Llama2Tokenizer --tokenizer-model /models/llama2/tokenizer.model \
    --data-path /data/llama2/pile_text_document \
    --save /ckpt/llama2-${MODEL_SIZE,,}
