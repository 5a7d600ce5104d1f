#!/bin/bash
#SBATCH --job-name=gpt-350m-det
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --exclusive
# A Megatron-DeepSpeed job on a Slurm cluster: the global batch is computed from the job's node count through a
# variable, and the DeepSpeed config is a file kept in the authors' repository (not in this folder). Deterministic
# kernels for a debugging run.
NODES=$SLURM_NNODES
GPUS_PER_NODE=8
MBS=2
GBS=$((NODES * GPUS_PER_NODE * MBS))
DS_CONFIG=configs/ds_zero1_bf16.json

options=" \
    --num-layers 24 --hidden-size 1024 --num-attention-heads 16 \
    --seq-length 2048 --max-position-embeddings 2048 \
    --micro-batch-size ${MBS} --global-batch-size ${GBS} \
    --train-iters 20000 --lr 3.0e-4 --min-lr 3.0e-5 --lr-decay-style cosine --lr-warmup-iters 200 \
    --clip-grad 0.8 --bf16 --deterministic-mode \
    --vocab-file /data/gpt2-vocab.json --merge-file /data/gpt2-merges.txt \
    --data-path /data/pile_text_document --split 98,2,0 \
    --save /checkpoints/gpt-350m \
    --deepspeed --deepspeed_config ${DS_CONFIG} --zero-stage 1"

run_cmd="python -u pretrain_gpt.py ${options}"

srun -l --output=logs/%x_%j.log sh -c "${run_cmd}"
