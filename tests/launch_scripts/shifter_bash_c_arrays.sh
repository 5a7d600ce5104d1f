#!/bin/bash
#SBATCH --nodes=2
#SBATCH --gpus-per-node=4
#SBATCH --image=nersc/pytorch:25.02.01
# A NERSC-style job: a first shifter call installs a package, the training command is assembled from bash arrays
# into one string, echoed, and run by `bash -c` inside the shifter container (the image and modules as options).
set -ex

IMAGE=nersc/pytorch:25.02.01
MODULES=gpu,nccl-plugin
shifter --image=$IMAGE --module=$MODULES bash -c "pip install --user sentencepiece"

export MASTER_ADDR=nid001
export MASTER_PORT=29500
RUN_DIR=/pscratch/run/gpt-350m

LAUNCH=(
    --nproc_per_node=4
    --nnodes=2
    --rdzv_backend=c10d
    --rdzv_endpoint=$MASTER_ADDR:$MASTER_PORT
)
MODEL=(
    --num-layers 24 --hidden-size 1024 --num-attention-heads 16
    --seq-length 2048 --max-position-embeddings 2048
)
TRAIN=(
    --micro-batch-size 2 --global-batch-size 128 --train-iters 20000
    --lr 3.0e-4 --min-lr 3.0e-5 --lr-decay-style cosine --lr-warmup-fraction .01
    --weight-decay 0.1 --clip-grad 1.0 --bf16
)
DATA=(
    --data-path /pscratch/data/openwebtext_text_document
    --vocab-file /pscratch/data/gpt2-vocab.json --merge-file /pscratch/data/gpt2-merges.txt
    --split 969,30,1
    --save $RUN_DIR/ckpt --save-interval 1000 --log-interval 10
)

cmd="torchrun ${LAUNCH[@]} /pscratch/Megatron-LM/pretrain_gpt.py ${MODEL[@]} ${TRAIN[@]} ${DATA[@]}"
echo "${cmd}"

shifter --image=$IMAGE --module=$MODULES \
    bash -c "$cmd"
