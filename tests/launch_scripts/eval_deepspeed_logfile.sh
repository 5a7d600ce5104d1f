#!/bin/bash
# Megatron-DeepSpeed's example style: the options are gathered in strings, the DeepSpeed config is
# written by a here-document, and the command is assembled in a string (its output sent to a log file),
# printed, then run with eval.
NUM_NODE=1
NUM_GPUS_PERNODE=8
GLOBAL_BATCH=64
MICRO_BATCH=4
NAME="gpt-350m-lr-3e-4"
LOG_DIR="."
megatron_options=" \
    --num-layers 24 --hidden-size 1024 --num-attention-heads 16 \
    --seq-length 2048 --max-position-embeddings 2048 \
    --micro-batch-size ${MICRO_BATCH} --global-batch-size ${GLOBAL_BATCH} \
    --train-iters 10000 --lr 3.0e-4 --min-lr 1.0e-6 --lr-decay-style cosine --lr-warmup-iters 200 \
    --clip-grad 1.0 --weight-decay 0.1 --adam-beta1 0.9 --adam-beta2 0.95 --init-method-std 0.02 \
    --log-interval 10 --eval-interval 1000 --eval-iters 10 --save-interval 1000 \
    --vocab-file /data/gpt2-vocab.json --merge-file /data/gpt2-merges.txt \
    --data-path /data/pile_text_document --save /ckpt/${NAME}"
config_json="ds_config_${NAME}.json"
cat <<EOT > ${config_json}
{
  "train_batch_size": ${GLOBAL_BATCH},
  "train_micro_batch_size_per_gpu": ${MICRO_BATCH},
  "zero_optimization": {"stage": 0},
  "bf16": {"enabled": true}
}
EOT
deepspeed_options=" \
    --deepspeed \
    --deepspeed_config ${config_json} \
    --pipeline-model-parallel-size 1 \
    --no-pipeline-parallel \
    --bf16"
run_cmd="deepspeed --num_nodes ${NUM_NODE} --num_gpus ${NUM_GPUS_PERNODE} pretrain_gpt.py ${megatron_options} ${deepspeed_options} &> ${LOG_DIR}/${NAME}.log"
echo ${run_cmd}
eval ${run_cmd}
