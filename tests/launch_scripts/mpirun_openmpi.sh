#!/bin/bash
# Open MPI starts one python process per GPU on two nodes; each reads its rank from OMPI_COMM_WORLD_*.
NODES=2
GPUS_PER_NODE=8
HOSTFILE=/etc/mpi/hostfile
export MASTER_ADDR=node001
export MASTER_PORT=6000

MODEL_ARGS="--num-layers 16 --hidden-size 2048 --num-attention-heads 16 --ffn-hidden-size 5632 \
    --seq-length 4096 --max-position-embeddings 4096 --position-embedding-type rope \
    --normalization RMSNorm --swiglu --untie-embeddings-and-output-weights --disable-bias-linear"

mpirun -np $((NODES * GPUS_PER_NODE)) --npernode $GPUS_PER_NODE --hostfile $HOSTFILE \
    -x MASTER_ADDR -x MASTER_PORT -x PATH -x NCCL_DEBUG=WARN \
    --bind-to none --map-by slot --mca btl_tcp_if_include eth0 \
    python -u pretrain_gpt.py \
    --tensor-model-parallel-size 2 \
    $MODEL_ARGS \
    --micro-batch-size 1 --global-batch-size 256 \
    --train-iters 20000 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 200 \
    --bf16 --tokenizer-type Llama2Tokenizer --tokenizer-model /models/llama/tokenizer.model \
    --data-path /data/corpus_text_document --split 99,1,0 \
    --save /ckpt/llama-1b-mpi --log-interval 10
