#!/bin/bash
# A fork's renamed entry point (Pai-Megatron-Patch style) training a GPT-style decoder.
DISTRIBUTED_ARGS="--nproc_per_node 8 --nnodes 1 --node_rank 0 --master_addr localhost --master_port 6000"
torchrun $DISTRIBUTED_ARGS pretrain_qwen.py \
    --tensor-model-parallel-size 2 \
    --num-layers 24 --hidden-size 2048 --num-attention-heads 16 --ffn-hidden-size 5504 \
    --seq-length 4096 --max-position-embeddings 4096 --position-embedding-type rope \
    --normalization RMSNorm --swiglu --untie-embeddings-and-output-weights --disable-bias-linear \
    --micro-batch-size 1 --global-batch-size 256 \
    --train-iters 20000 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 200 \
    --bf16 --tokenizer-type Llama2Tokenizer --tokenizer-model /models/qwen/tokenizer.model \
    --data-path /data/corpus_text_document --split 99,1,0 --save /ckpt/qwen-1.8b
