#!/bin/bash
# Megatron-DeepSpeed's "rebase" style: the DeepSpeed config is made by sed from a template
# kept beside the script (run from its folder), its placeholders replaced by the script's values.
dir=`pwd`
GLOBAL_BATCH_SIZE=128
MICRO_BATCH_SIZE=4
ZERO_STAGE=1
LOG_INTERVAL=10
NUM_GPUS_PERNODE=8
NUM_NODE=2
template_json="ds_config_gpt_TEMPLATE.json"
config_json="ds_config_gbs${GLOBAL_BATCH_SIZE}_mbs${MICRO_BATCH_SIZE}_z${ZERO_STAGE}.json"
sed "s/CONFIG_BATCH_SIZE/${GLOBAL_BATCH_SIZE}/" ${template_json} \
    | sed "s/CONFIG_MBSIZE/${MICRO_BATCH_SIZE}/" \
    | sed "s/LOG_INTERVAL/${LOG_INTERVAL}/" \
    | sed "s/ZERO_STAGE/${ZERO_STAGE}/" \
    | sed "s/PRESCALE_GRAD/true/" \
    | sed "s/CONFIG_FP16_ENABLED/true/" \
    | sed "s/CONFIG_BF16_ENABLED/false/" \
      > ${config_json}
deepspeed --num_gpus ${NUM_GPUS_PERNODE} --num_nodes ${NUM_NODE} pretrain_gpt.py \
    --num-layers 24 --hidden-size 1024 --num-attention-heads 16 \
    --seq-length 2048 --max-position-embeddings 2048 \
    --micro-batch-size ${MICRO_BATCH_SIZE} --global-batch-size ${GLOBAL_BATCH_SIZE} \
    --train-samples 300000 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-samples 3000 \
    --fp16 --vocab-file /data/gpt2-vocab.json --merge-file /data/gpt2-merges.txt \
    --data-path /data/pile_text_document --split 949,50,1 --save /ckpt/gpt-350m-rebase \
    --deepspeed --deepspeed_config ${config_json} --zero-stage ${ZERO_STAGE}
