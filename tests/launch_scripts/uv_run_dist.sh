#!/bin/bash
# uv runs torch.distributed.run from the project's environment.
DISTRIBUTED_ARGS=(--nproc-per-node 4 --nnodes 1 --master-addr localhost --master-port 29501)
MODEL_ARGS=(
    --num-layers 12 --hidden-size 768 --num-attention-heads 12
    --seq-length 1024 --max-position-embeddings 1024
)
TRAINING_ARGS=(
    --micro-batch-size 4 --global-batch-size 64
    --train-iters 50000 --lr 6e-4 --min-lr 6e-5 --lr-decay-style cosine --lr-warmup-iters 500
    --bf16 --vocab-file /data/gpt2/vocab.json --merge-file /data/gpt2/merges.txt
    --data-path /data/owt/owt_text_document --split 949,50,1 --save /ckpt/gpt-125m-uv
)
uv run --no-sync --project /workspace/megatron python -m torch.distributed.run "${DISTRIBUTED_ARGS[@]}" \
    pretrain_gpt.py "${MODEL_ARGS[@]}" "${TRAINING_ARGS[@]}"
