#!/bin/bash
# BERT-large pretraining (not a GPT entry point).
CHECKPOINT_PATH=/ckpt/bert-large
VOCAB_FILE=/data/bert/bert-large-uncased-vocab.txt
DATA_PATH=/data/bert/wiki_books_text_sentence

BERT_ARGS="--num-layers 24 --hidden-size 1024 --num-attention-heads 16 \
    --seq-length 512 --max-position-embeddings 512 \
    --micro-batch-size 4 --global-batch-size 256 \
    --lr 0.0001 --train-iters 1000000 --lr-decay-iters 990000 --lr-decay-style linear \
    --min-lr 1.0e-5 --weight-decay 1e-2 --lr-warmup-fraction .01 --fp16"

torchrun --nproc_per_node 8 --nnodes 1 pretrain_bert.py \
    $BERT_ARGS \
    --tokenizer-type BertWordPieceLowerCase \
    --vocab-file $VOCAB_FILE \
    --data-path $DATA_PATH \
    --split 949,50,1 \
    --save $CHECKPOINT_PATH --load $CHECKPOINT_PATH \
    --log-interval 100 --save-interval 10000 --eval-interval 1000 --eval-iters 10
