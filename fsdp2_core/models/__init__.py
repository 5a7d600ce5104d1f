"""Hugging Face models: build from a directory or a config, meta-device init, token additions."""
from .build import build_model, copy_full_into, count_parameters, hf_config, init_weights, materialize
from .tokens import extend_tokenizer, resize_model_vocab

__all__ = ["build_model", "copy_full_into", "count_parameters", "hf_config", "init_weights", "materialize",
           "extend_tokenizer", "resize_model_vocab"]
