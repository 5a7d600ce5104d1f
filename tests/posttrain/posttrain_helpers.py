"""Shared helpers for the posttrain tests: a locally trained tokenizer, a tiny Hugging Face Qwen3, instruction data."""
import json
import os

from tests.lf.lf_helpers import ALPACA, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

REAL_ARGV = os.path.join(ROOT, "tests", "reference", "real_launch_argv.json")
FULL_EXAMPLE = "qwen3__tune_qwen3_8b_4K_full_ptd"
LORA_EXAMPLE = "qwen3__tune_qwen3_8b_4K_lora_ptd"

# the public Qwen3-8B examples, shrunk: flag -> tiny value (every other flag kept as the script has it)
TINY = {"--num-layers": "2", "--hidden-size": "64", "--ffn-hidden-size": "128", "--num-attention-heads": "4",
        "--num-query-groups": "2", "--kv-channels": "16", "--max-position-embeddings": "256", "--seq-length": "64",
        "--padded-vocab-size": "512", "--micro-batch-size": "2", "--global-batch-size": "4", "--train-iters": "12",
        "--lr": "2e-3", "--min-lr": "1e-4", "--pipeline-model-parallel-size": "1", "--workers": "1",
        "--save-interval": "1000", "--eval-interval": "1000", "--distributed-backend": "gloo"}


def real_argvs():
    with open(REAL_ARGV, encoding="utf-8") as fh:
        data = json.load(fh)
    return {k: v for k, v in data.items() if k != "_about" and v["entry"] == "posttrain_gpt.py"}


def world_of(launcher):
    def value(*names):
        for i, tok in enumerate(launcher):
            if tok in names:
                return int(launcher[i + 1])
        return 1
    return value("--nproc_per_node", "--nproc-per-node") * value("--nnodes")


def shrink(args, data_path, tokenizer, load, save):
    """A public argv with tiny sizes and local paths."""
    paths = {"--data-path": data_path, "--tokenizer-name-or-path": tokenizer, "--load": load, "--save": save}
    out, i = [], 0
    while i < len(args):
        flag = args[i]
        if flag in TINY or flag in paths:
            out += [flag, TINY.get(flag, paths.get(flag))]
            i += 2
        else:
            out.append(flag)
            i += 1
    return out


def tiny_qwen3(path, seed=0):
    """A random tiny Qwen3 saved as a Hugging Face model directory (what --load points at)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=512, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, max_position_embeddings=256, rope_theta=1e6,
                         tie_word_embeddings=False)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    return path


def preprocess(argv):
    from tools import preprocess_data
    preprocess_data.main(argv)


def instruction_data(tmp, tok, name="alpaca", records=None, handler="AlpacaStyleInstructionHandler", seq=64, extra=()):
    os.makedirs(str(tmp), exist_ok=True)
    src = write_json(os.path.join(str(tmp), f"{name}.json"), records if records is not None else ALPACA)
    prefix = os.path.join(str(tmp), "data", name)
    preprocess(["--input", src, "--output-prefix", prefix, "--handler-name", handler, "--prompt-type", "qwen3",
                "--seq-length", str(seq), "--tokenizer-type", "PretrainedFromHF", "--tokenizer-name-or-path", tok,
                "--workers", "1", *extra])
    return prefix
