#!/bin/bash
# A submit script: the job is the here-document handed to sbatch, its variables expanded by this shell;
# inside it, mpiexec starts one python process per GPU (8 per node on 2 nodes).
NODES=2
GPUS_PER_NODE=8
MODEL_ARGS="--num-layers 32 --hidden-size 4096 --ffn-hidden-size 11008 --num-attention-heads 32 \
    --seq-length 4096 --max-position-embeddings 4096 --position-embedding-type rope --normalization RMSNorm \
    --swiglu --disable-bias-linear --untie-embeddings-and-output-weights --hidden-dropout 0 --attention-dropout 0"
sbatch <<EOF
#!/bin/bash
#SBATCH --job-name=llama-7b
#SBATCH --nodes=${NODES}
#SBATCH --ntasks-per-node=${GPUS_PER_NODE}
#SBATCH --time=24:00:00
export CUDA_DEVICE_MAX_CONNECTIONS=1
mpiexec -n $(( NODES * GPUS_PER_NODE )) -ppn ${GPUS_PER_NODE} python pretrain_gpt.py \
    ${MODEL_ARGS} \
    --tensor-model-parallel-size 2 --use-distributed-optimizer \
    --micro-batch-size 1 --global-batch-size 256 \
    --train-iters 20000 --lr 3e-4 --min-lr 3e-5 --lr-decay-style cosine --lr-warmup-iters 2000 \
    --weight-decay 0.1 --clip-grad 1.0 --bf16 \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model /models/llama-2-7b \
    --data-path /data/redpajama_text_document --split 99,1,0 \
    --save /ckpt/llama-7b --save-interval 1000
EOF
