#!/bin/bash
# Loads cluster settings from a file and stamps the run with the date.
source /opt/cluster/env.sh
. ./local_overrides.sh

TIMESTAMP=$(date +'%Y%m%d-%H%M')
NUM_GPUS=`nvidia-smi -L | wc -l`
RUN_DIR=/ckpt/gpt-760m/run_${TIMESTAMP}
export WANDB_PROJECT=gpt-760m
export WANDB_NAME="gpt-760m-$TIMESTAMP"

mkdir -p logs ${RUN_DIR}

torchrun --nproc_per_node 8 pretrain_gpt.py \
    --num-layers 24 --hidden-size 1536 --num-attention-heads 16 \
    --seq-length 2048 --max-position-embeddings 2048 \
    --micro-batch-size 4 --global-batch-size 256 \
    --train-iters 60000 --lr 2.5e-4 --min-lr 2.5e-5 --lr-decay-style cosine \
    --vocab-file /data/gpt2/vocab.json --merge-file /data/gpt2/merges.txt \
    --data-path /data/pile/pile_text_document \
    --save ${RUN_DIR} \
    --tensorboard-dir ${RUN_DIR}/tb \
    --bf16 2>&1 | tee logs/train_${TIMESTAMP}.log
