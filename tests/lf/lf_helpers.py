"""Shared helpers for the lf data tests: a locally trained tokenizer, configs, chat templates, tiny files."""
import json
import os

from fsdp2_core.config import build_config
from fsdp2_core.testing.spawn import free_port, spawn  # noqa: F401  (the lf tests spawn through here)

HERE = os.path.dirname(os.path.abspath(__file__))
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
            "<tool_response>", "</tool_response>", "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
            "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|start|>", "<|message|>", "<|end|>", "<|channel|>",
            "<|return|>", "<|pad|>"]
CORPUS = ["Human: hello there, how are you? Assistant: I am fine, thank you.",
          "What is two plus two? Two plus two is four. The answer is 4.",
          "Write a poem about the sea. The sea is blue and deep and wide.",
          "system user assistant tool function observation Action Input name arguments weather city Paris",
          "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
          "You are ChatGPT, a large language model trained by OpenAI. analysis final",
          '{"name": "get_weather", "arguments": {"city": "Paris"}} {"type": "function"} 0123456789',
          "Let me think step by step. First, add the numbers. Then check the result."] * 4


def chat_template(name: str) -> str:
    with open(os.path.join(HERE, "chat_templates", f"{name}.jinja"), encoding="utf-8") as f:
        return f.read()


def train_tokenizer(path: str, chat_template_name: str = None, eos_token: str = "<|endoftext|>", pad_token: str = None):
    """A byte-level BPE tokenizer trained on a few lines, with the chat special tokens; saved to `path`.
    gpt-oss's own tokenizer ends generation with eos <|return|> and pads with <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    named = (eos_token, pad_token, "<|begin_of_text|>")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos_token, bos_token="<|begin_of_text|>",
                                   pad_token=pad_token,
                                   additional_special_tokens=[s for s in SPECIALS if s not in named])
    if chat_template_name:
        fast.chat_template = chat_template(chat_template_name)
    fast.save_pretrained(path)
    return fast


def load_tokenizer(path: str):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(path)


def write_json(path: str, obj) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False)
    return path


def write_jsonl(path: str, rows) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def data_config(tmp, **data):
    values = {"architecture": {"model_type": "qwen3", "vocab_size": 512}, "output_dir": os.path.join(str(tmp), "out"),
              "max_steps": 2, "stage": "sft", "data_manager_type": "lf", "template": "qwen3", "cutoff_len": 64,
              "dataset_dir": str(tmp)}
    values.update(data)
    return build_config(values)


ALPACA = [{"instruction": f"What is {i} plus {i}?", "input": "" if i % 2 else "Answer briefly.",
           "output": f"{i} plus {i} is {2 * i}."} for i in range(12)]
SHAREGPT = [{"conversations": [{"from": "human", "value": f"hello {i}"}, {"from": "gpt", "value": f"hi {i}"},
                               {"from": "human", "value": "how are you?"}, {"from": "gpt", "value": "fine"}],
             "system": "Be brief."} for i in range(6)]


TINY_QWEN3 = {"model_type": "qwen3", "vocab_size": 512, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
              "max_position_embeddings": 256, "tie_word_embeddings": False}


def sft_yaml_doc(tmp, tokenizer_dir, dataset_dir, **data):
    d = {"dataset": "alp,sg", "dataset_dir": str(dataset_dir), "template": "qwen3", "cutoff_len": 64,
         "data_manager_type": "lf", "val_size": 4}
    d.update(data)
    return {"model": {"architecture": dict(TINY_QWEN3), "tokenizer_name_or_path": tokenizer_dir,
                      "train_from_scratch": True},
            "data": d,
            "parallel": {"param_dtype": "fp32", "reduce_dtype": "fp32"},
            "training": {"stage": "sft", "output_dir": os.path.join(str(tmp), "out"), "max_steps": 12, "lr": 1e-2,
                         "min_lr": 1e-3, "lr_warmup_steps": 1, "per_device_train_batch_size": 2,
                         "global_batch_size": 4, "logging_steps": 1, "eval_interval": 6, "eval_iters": 1,
                         "save_steps": 0, "save_hf_weights": False, "seed": 3}}


def write_sft_dataset_dir(path) -> str:
    write_json(os.path.join(str(path), "alpaca.json"), ALPACA)
    write_jsonl(os.path.join(str(path), "sg.jsonl"), SHAREGPT)
    write_json(os.path.join(str(path), "dataset_info.json"), {
        "alp": {"file_name": "alpaca.json"},
        "sg": {"file_name": "sg.jsonl", "formatting": "sharegpt",
               "columns": {"messages": "conversations", "system": "system"}}})
    return str(path)
