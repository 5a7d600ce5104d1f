#!/bin/bash
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1   # one torchrun per node, which starts the GPUs' ranks
#SBATCH --gres=gpu:8

GPUS_PER_NODE=8
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=6000
NNODES=$SLURM_NNODES

LAUNCHER="python -u -m torch.distributed.run \
    --nproc_per_node $GPUS_PER_NODE --nnodes $NNODES \
    --rdzv_backend c10d --rdzv_endpoint $MASTER_ADDR:$MASTER_PORT --max_restarts 0"

CMD="pretrain_gpt.py \
    --tensor-model-parallel-size 2 \
    --num-layers 16 --hidden-size 2048 --num-attention-heads 16 --ffn-hidden-size 5632 \
    --seq-length 4096 --max-position-embeddings 4096 --position-embedding-type rope \
    --normalization RMSNorm --swiglu --untie-embeddings-and-output-weights --disable-bias-linear \
    --micro-batch-size 1 --global-batch-size 128 \
    --train-iters 5000 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 50 \
    --bf16 --tokenizer-type Llama2Tokenizer --tokenizer-model /models/llama/tokenizer.model \
    --data-path /data/corpus_text_document --split 99,1,0 \
    --tensorboard-dir '/logs/run one' --save /ckpt/llama-1b-srun"

srun --wait=60 --kill-on-bad-exit=1 --jobid $SLURM_JOB_ID \
    bash -c "$LAUNCHER --node_rank \$SLURM_PROCID $CMD" 2>&1 | tee train.log
