#!/bin/bash
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=72
# One python process per GPU under srun; each task's bash -c sets RANK and LOCAL_RANK from srun's own
# variables (escaped, so each task expands them) and binds memory with a numactl prefix.
export MASTER_ADDR=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -n 1)
export MASTER_PORT=25678
export WORLD_SIZE=$(( SLURM_NNODES * SLURM_NTASKS_PER_NODE ))
CMD_PREFIX="numactl --membind=0-3"
TRAINING_CMD="python3 pretrain_gpt.py \
    --num-layers 16 --hidden-size 2048 --ffn-hidden-size 8192 --num-attention-heads 32 --group-query-attention \
    --num-query-groups 8 --seq-length 8192 --max-position-embeddings 8192 --position-embedding-type rope \
    --rotary-base 500000 --normalization RMSNorm --swiglu --disable-bias-linear \
    --untie-embeddings-and-output-weights --hidden-dropout 0 --attention-dropout 0 \
    --micro-batch-size 1 --global-batch-size 512 --train-iters 50000 \
    --lr 3e-4 --min-lr 3e-5 --lr-decay-style WSD --lr-wsd-decay-style linear --lr-wsd-decay-iters 5000 \
    --lr-warmup-iters 2000 --weight-decay 0.1 --clip-grad 1.0 --bf16 --use-distributed-optimizer \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model /capstor/models/llama3-tokenizer \
    --data-path /capstor/data/fineweb_text_document --split 99,1,0 --save /capstor/ckpt/llama3-1b"
srun --cpus-per-task $SLURM_CPUS_PER_TASK -lu bash -c "RANK=\$SLURM_PROCID LOCAL_RANK=\$SLURM_LOCALID $CMD_PREFIX $TRAINING_CMD"
