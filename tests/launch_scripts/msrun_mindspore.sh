#!/bin/bash
# MindSpeed-LLM on its MindSpore backend: msrun starts MindSpore processes.
export HCCL_CONNECT_TIMEOUT=1200
DISTRIBUTED_ARGS="--worker_num 8 --local_worker_num 8 --master_port 6110 --log_dir=msrun_log --join=True"
msrun $DISTRIBUTED_ARGS pretrain_gpt.py \
    --use-mcore-models \
    --num-layers 16 --hidden-size 2048 --num-attention-heads 16 \
    --seq-length 4096 --max-position-embeddings 4096 \
    --micro-batch-size 1 --global-batch-size 64 \
    --train-iters 2000 --lr 1e-5 --bf16 \
    --tokenizer-type PretrainedFromHF --tokenizer-name-or-path /models/llama \
    --data-path /data/corpus_text_document --save /ckpt/ms
