#!/bin/bash
#SBATCH --job-name=gpt-1b
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --time=12:00:00
# LUMI-style job: srun starts one task per GPU inside a container, and each task runs a small launch.sh kept next
# to Megatron (it sets RANK/LOCAL_RANK/WORLD_SIZE from Slurm and runs `python -u "$@"`), which is not in this folder.
# The container binds the folder the job is submitted from.
if [ -z "$SLURM_JOB_ID" ]; then
    mkdir -p logs
    sbatch "$0" "$@"
    exit
fi

BASE_DIR="$PWD"
MEGATRON_PATH=/project/megatron-lm
CONTAINER=/appl/containers/pytorch.sif

GPT_ARGS=(
    --num-layers 16 --hidden-size 2048 --num-attention-heads 16 --seq-length 2048 --max-position-embeddings 2048
    --position-embedding-type rope --normalization RMSNorm --swiglu --disable-bias-linear --untie-embeddings-and-output-weights
    --micro-batch-size 2 --global-batch-size 256 --train-iters 10000 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine
    --lr-warmup-iters 500 --bf16 --tokenizer-type HuggingFaceTokenizer --tokenizer-model /project/tokenizer
    --data-path /project/data/fineweb_text_document --split 99,1,0 --save "$BASE_DIR/checkpoints"
)

srun --label \
    singularity exec -B "$BASE_DIR" -B /project "$CONTAINER" \
    $MEGATRON_PATH/launch.sh \
    $MEGATRON_PATH/pretrain_gpt.py "${GPT_ARGS[@]}"
