#!/bin/bash
#SBATCH --job-name=llama-1b
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8   # one task per GPU: srun starts every rank
#SBATCH --gpus-per-node=8
#SBATCH --time=12:00:00

export CUDA_DEVICE_MAX_CONNECTIONS=1
export NCCL_IB_TIMEOUT=22
CKPT=/ckpt/llama-1b-$SLURM_JOB_ID

srun --cpu-bind=none -l --container-image nvcr.io#nvidia/pytorch:24.05-py3 \
    python pretrain_gpt.py \
    --tensor-model-parallel-size 4 \
    --num-layers 16 --hidden-size 2048 --num-attention-heads 16 --ffn-hidden-size 5632 \
    --seq-length 4096 --max-position-embeddings 4096 --position-embedding-type rope \
    --normalization RMSNorm --swiglu --untie-embeddings-and-output-weights --disable-bias-linear \
    --micro-batch-size 2 --global-batch-size 512 \
    --train-iters 10000 --lr 2e-4 --min-lr 2e-5 --lr-decay-style cosine --lr-warmup-iters 100 \
    --bf16 --tokenizer-type Llama2Tokenizer --tokenizer-model /models/llama/tokenizer.model \
    --data-path /data/corpus_text_document --split 99,1,0 \
    --save /ckpt/llama-1b-slurm --log-interval 10
