#!/bin/bash
# A Megatron-LM v1 era script (2020): pretrain_gpt2.py under torch.distributed.launch with v1's flag names:
# --model-parallel-size (today --tensor-model-parallel-size), --batch-size (the micro batch per GPU; no global batch
# flag yet) and --warmup (a fraction of the iterations), beside flags v1 and today share.
GPUS=8
TP=4
CKPT=/fsx/runs/gpt2-2b/ckpt
DATA=/fsx/data/pile_gpt2_text_document
TOK=/fsx/tokenizers/gpt2

LAUNCH="--nproc_per_node $GPUS --nnodes 1 --node_rank 0 --master_addr localhost --master_port 6000"

python -m torch.distributed.launch $LAUNCH \
       pretrain_gpt2.py \
       --model-parallel-size $TP \
       --num-layers 36 --hidden-size 2048 --num-attention-heads 16 \
       --batch-size 4 \
       --seq-length 1024 --max-position-embeddings 1024 \
       --train-iters 50000 --lr-decay-iters 45000 \
       --save $CKPT --load $CKPT \
       --data-path $DATA --vocab-file $TOK/vocab.json --merge-file $TOK/merges.txt \
       --data-impl mmap --split 949,50,1 --distributed-backend nccl \
       --lr 0.00015 --min-lr 1.0e-5 --lr-decay-style cosine --weight-decay 1e-2 --clip-grad 1.0 \
       --warmup .01 \
       --checkpoint-activations --log-interval 100 --save-interval 5000 --eval-interval 1000 --eval-iters 10 \
       --fp16
