#!/usr/bin/env bash
# Quickstart: from a fresh machine with only Python to a trained, exported and sampled model, on CPU.
#
#     python3 -m venv .venv && . .venv/bin/activate && bash examples/quickstart.sh
#
#   1. installs the project (torch first: the pinned CPU wheel where it is at hand, else any torch >= 2.6)
#   2. writes a small corpus from the standard library's docstrings and trains a BPE tokenizer on it
#   3. tokenizes the corpus into Megatron .bin/.idx files with tools/preprocess_data.py
#   4. converts a shipped Megatron-LM launch script (examples/megatron_lm/llama3_8b_cpu.sh) with tools/convert_args.py
#   5. trains the small Llama-shaped model it describes on 2 CPU ranks for 100 iterations (checkpoints, HF export)
#   6. generates a few tokens from the Hugging Face export with transformers
#   7. draws loss, learning rate, grad norm and throughput to a PNG (tools/plot_metrics.py)
#
# Everything lands in ./output_quickstart/ (QUICKSTART_DIR). Nothing is downloaded but pip packages.
# Knobs (for tests and slow machines): QUICKSTART_SKIP_INSTALL=1, QUICKSTART_ITERS, QUICKSTART_DOCS, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
OUT=${QUICKSTART_DIR:-output_quickstart}
ITERS=${QUICKSTART_ITERS:-100}
DOCS=${QUICKSTART_DOCS:-6000}
START=$SECONDS

step() { echo; echo "== [$1/7] $2  (+$((SECONDS - START)) s)"; }

step 1 "install"
if [ "${QUICKSTART_SKIP_INSTALL:-0}" = 1 ]; then
    echo "skipped (QUICKSTART_SKIP_INSTALL=1)"
else
    if "$PYTHON" -c "import sys, torch; sys.exit(tuple(map(int, torch.__version__.split('+')[0].split('.')[:2])) < (2, 6))" 2>/dev/null; then
        echo "torch $("$PYTHON" -c 'import torch; print(torch.__version__)') already installed"
    else
        # The pinned CPU wheel where it is at hand (it keeps pip from pulling a CUDA build); otherwise any torch.
        "$PYTHON" -m pip install --no-compile torch==2.13.0 || "$PYTHON" -m pip install --no-compile "torch>=2.6"
    fi
    "$PYTHON" -m pip install --no-compile -e ".[plot]"    # --no-compile: bytecode is written on first import instead
fi

step 2 "corpus and tokenizer from the standard library's docstrings -> $OUT/"
"$PYTHON" examples/make_example_data.py "$OUT" --max-docs "$DOCS"

step 3 "tokenize into Megatron .bin/.idx (tools/preprocess_data.py)"
"$PYTHON" tools/preprocess_data.py --input "$OUT/corpus.jsonl" --output-prefix "$OUT/data/stdlib" \
    --tokenizer-type HuggingFaceTokenizer --tokenizer-model "$OUT/tokenizer" --append-eod --workers 2

step 4 "convert the Megatron-LM launch script (tools/convert_args.py)"
"$PYTHON" tools/convert_args.py examples/megatron_lm/llama3_8b_cpu.sh \
    -o "$OUT/llama3_cpu.yaml" --script-out "$OUT/llama3_cpu_fsdp2.sh" -- "$OUT" "$ITERS"

step 5 "train on 2 CPU ranks: torchrun train_fsdp2.py $OUT/llama3_cpu.yaml"
rm -rf "$OUT/checkpoints"    # a fresh run (the script's --load equals --save: it would resume otherwise)
bash "$OUT/llama3_cpu_fsdp2.sh"

step 6 "generate from the Hugging Face export with transformers"
"$PYTHON" examples/generate.py "$OUT/checkpoints/hf_model"

step 7 "plot the run"
if "$PYTHON" -c "import matplotlib" 2>/dev/null; then
    "$PYTHON" tools/plot_metrics.py "$OUT/checkpoints" -o "$OUT/metrics.png"
else
    echo "matplotlib is not installed (pip install -e \".[plot]\"): no plot"
fi

echo
echo "quickstart done in $((SECONDS - START)) s: config $OUT/llama3_cpu.yaml, checkpoints $OUT/checkpoints/," \
     "Hugging Face model $OUT/checkpoints/hf_model/"
