#!/bin/bash
# The entry point of a training container on AWS SageMaker HyperPod (Kubernetes): the HyperPod training operator
# sets the node count and this node's rank in the environment; hyperpodrun (HyperPod's elastic agent, torchrun's
# options and its own) starts the ranks and reports to the operator on its server port.
set -euo pipefail
NNODES=${NNODES:-4}
GPUS_PER_NODE=8
CKPT_DIR=/fsx/checkpoints/llama3-8b

MODEL_ARGS=(
    --num-layers 32 --hidden-size 4096 --ffn-hidden-size 14336 --num-attention-heads 32
    --group-query-attention --num-query-groups 8 --seq-length 8192 --max-position-embeddings 8192
    --position-embedding-type rope --rotary-base 500000 --normalization RMSNorm --swiglu
    --disable-bias-linear --untie-embeddings-and-output-weights
)
TRAINING_ARGS=(
    --micro-batch-size 1 --global-batch-size 256 --train-iters 100000
    --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 2000 --bf16
    --tensor-model-parallel-size 2 --context-parallel-size 2
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model /fsx/tokenizers/llama3
    --data-path /fsx/data/fineweb_text_document --save "$CKPT_DIR" --load "$CKPT_DIR"
)

exec hyperpodrun \
    --nnodes=${NNODES} --nproc-per-node=${GPUS_PER_NODE} \
    --server-host=0.0.0.0 --server-port=8080 --server-log-level=warning \
    --tee=3 --log_dir=/fsx/logs/hyperpodrun \
    pretrain_gpt.py "${MODEL_ARGS[@]}" "${TRAINING_ARGS[@]}"
