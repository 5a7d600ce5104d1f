#!/bin/bash
#PBS -l select=4:system=polaris
#PBS -l walltime=06:00:00
#PBS -q prod
# A PBS job on a Cray machine: aprun starts 4 ranks on each of 4 nodes (one per GPU), and the
# DeepSpeed config is written by a here-document before the launch.
NNODES=4
NRANKS_PER_NODE=4
NTOTRANKS=$(( NNODES * NRANKS_PER_NODE ))
GBS=64
MBS=2
DS_CONFIG=ds_config_zero1.json
cat <<EOT > $DS_CONFIG
{
  "train_batch_size": $GBS,
  "train_micro_batch_size_per_gpu": $MBS,
  "steps_per_print": 10,
  "zero_optimization": {"stage": 1},
  "gradient_clipping": 1.0,
  "bf16": {"enabled": true}
}
EOT
aprun -n ${NTOTRANKS} -N ${NRANKS_PER_NODE} --cc depth -d 16 \
    python3 pretrain_gpt.py \
    --num-layers 12 --hidden-size 768 --num-attention-heads 12 \
    --seq-length 1024 --max-position-embeddings 1024 \
    --micro-batch-size $MBS --global-batch-size $GBS \
    --train-iters 5000 --lr 6e-4 --min-lr 6e-5 --lr-decay-style cosine --lr-warmup-iters 100 \
    --bf16 --vocab-file /lus/data/gpt2-vocab.json --merge-file /lus/data/gpt2-merges.txt \
    --data-path /lus/data/books_text_document --split 98,2,0 \
    --save /lus/ckpt/gpt-125m \
    --deepspeed --deepspeed_config $DS_CONFIG --zero-stage 1
