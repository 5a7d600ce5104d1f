"""One of this engine's checkpoints, written in the layout the Saver writes (DCP `model.*` tensors, .metadata,
checkpoint_info.json, config.json, tracker), from a tiny Llama in one process."""
import json
import os
import warnings

import torch

from fsdp2_core.checkpoint.layout import INFO, iter_dir, write_tracker


def write_our_checkpoint(save_dir: str, iteration: int = 3, consumed: int = 12) -> str:
    import torch.distributed.checkpoint as dcp
    from transformers import AutoModelForCausalLM, LlamaConfig
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=120, max_position_embeddings=64, tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    path = iter_dir(save_dir, iteration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": model.state_dict()}, checkpoint_id=path, no_dist=True)
    with open(os.path.join(path, INFO), "w") as fh:
        json.dump({"format": "fsdp2_core.checkpoint/1", "iteration": iteration, "world_size": 1,
                   "consumed_train_samples": consumed, "global_batch_size": 4}, fh)
    model.config.save_pretrained(path)
    write_tracker(save_dir, iteration)
    return path
