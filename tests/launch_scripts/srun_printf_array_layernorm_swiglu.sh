#!/bin/bash
#SBATCH --job-name=llama-ln
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
# A Llama-style model whose script keeps Megatron's default LayerNorm (no --normalization): rope, SwiGLU, no linear
# biases, grouped-query attention. The torchrun command is built as an array and handed through `srun bash -lc`
# as one string made with printf %q, so the data path with a blank survives the second reading.
NNODES=$SLURM_NNODES
DATA="/datasets/web corpus/text_document"

TORCHRUN_ARGS=(
  --nnodes=2 --nproc_per_node=8
  --rdzv_backend=c10d --rdzv_endpoint=head-node:29500
  pretrain_gpt.py
  --num-layers 16 --hidden-size 2048 --num-attention-heads 16
  --group-query-attention --num-query-groups 4
  --ffn-hidden-size 5632 --swiglu --disable-bias-linear
  --position-embedding-type rope --rotary-base 500000
  --seq-length 4096 --max-position-embeddings 4096
  --micro-batch-size 1 --global-batch-size 128
  --train-iters 50000 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 2000
  --bf16 --hidden-dropout 0 --attention-dropout 0 --untie-embeddings-and-output-weights
  --tokenizer-type HuggingFaceTokenizer --tokenizer-model /models/llama-tokenizer
  --data-path "$DATA" --split 99,1,0
  --save /checkpoints/llama-ln
)
TORCHRUN_STR=$(printf " %q" "${TORCHRUN_ARGS[@]}")

srun --kill-on-bad-exit=1 bash -lc 'torchrun '"$TORCHRUN_STR"
