#!/bin/bash
# One rank of a job: a cluster wrapper runs `mpirun -np 16 --hostfile hosts bash this.sh HOST PORT --key=value...`,
# so every process runs this script and passes its own rank (Open MPI's variables) to the training script, which
# meets the others at --dist-url. Paths come as --key=value arguments read by a loop.
for arg in "$@"; do
    case $arg in
        --data_path=*) DATA=${arg#*=} ;;
        --tokenizer_path=*) TOKENIZER=${arg#*=} ;;
    esac
done
HOST=$1
PORT=$2
RANK=$OMPI_COMM_WORLD_RANK
LOCAL_RANK=$OMPI_COMM_WORLD_LOCAL_RANK
WORLD_SIZE=$OMPI_COMM_WORLD_SIZE
export NCCL_IB_DISABLE=0
python -u pretrain_gpt.py \
    --rank ${RANK} --world-size ${WORLD_SIZE} --local-rank ${LOCAL_RANK} --dist-url tcp://${HOST}:${PORT} \
    --num-layers 8 --hidden-size 1024 --num-attention-heads 16 --seq-length 2048 --max-position-embeddings 2048 \
    --position-embedding-type rope --normalization RMSNorm --swiglu --disable-bias-linear \
    --attention-dropout 0 --hidden-dropout 0 --tensor-model-parallel-size 2 \
    --micro-batch-size 1 --global-batch-size 64 --train-iters 1000 --lr 2e-4 --min-lr 2e-5 --bf16 \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model $TOKENIZER \
    --data-path $DATA --split 98,2,0 --save /ckpt/per-rank
