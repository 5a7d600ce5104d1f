#!/bin/bash
#SBATCH --job-name=gpt-small
#SBATCH --nodes=2
#SBATCH --gres=gpu:4
#SBATCH --time=04:00:00
# A Slurm job that writes the per-node command into a small runner script with an unquoted here-document (so the
# command is expanded when the file is written), then has srun start that runner inside a container on every node.
# The rendezvous host is computed with backquotes; the node count is Slurm's.

export GPUS_PER_NODE=4
export MASTER_ADDR=`hostname -s`
export MASTER_PORT=6007
export NNODES=2

DATA=/scratch/corpus/wiki_text_document
TOK=/scratch/tokenizer

options=" \
    --num-layers 8 --hidden-size 512 --num-attention-heads 8 \
    --seq-length 1024 --max-position-embeddings 1024 \
    --micro-batch-size 4 --global-batch-size 64 \
    --train-iters 500 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 50 \
    --weight-decay 0.1 --clip-grad 1.0 --fp16 \
    --data-path ${DATA} --split 949,50,1 \
    --vocab-file ${TOK}/vocab.json --merge-file ${TOK}/merges.txt \
    --save /scratch/ckpt/gpt-small --save-interval 100 --log-interval 10"

run_cmd="torchrun --nproc_per_node ${GPUS_PER_NODE} --nnodes ${NNODES} --rdzv_backend c10d \
    --rdzv_endpoint ${MASTER_ADDR}:${MASTER_PORT} pretrain_gpt.py ${options}"

cat <<EOT > node_runner.sh
#!/bin/bash
hostname -s
$run_cmd
EOT

srun --mpi=pmix -l singularity exec --nv /containers/megatron.sif bash node_runner.sh
