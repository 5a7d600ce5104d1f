"""Tiny Llama-shaped models and deterministic Megatron-style samples for tests and benchmarks."""
import numpy as np

from fsdp2_core.config import build_config

VOCAB, SEQ = 128, 32
LLAMA = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": VOCAB,
         "max_position_embeddings": 64, "tie_word_embeddings": False}


class SyntheticDataset:
    """Deterministic Megatron-style samples: tokens, labels shifted by one, a loss mask, positions."""

    def __init__(self, n: int, seq: int = SEQ, vocab: int = VOCAB, seed: int = 0, ragged_mask: bool = False):
        rng = np.random.default_rng(seed)
        self.text = rng.integers(0, vocab, size=(n, seq + 1), dtype=np.int64)
        self.mask = np.ones((n, seq), dtype=np.float32)
        if ragged_mask:  # different token counts per sample, to exercise per-token normalisation
            for i in range(n):
                self.mask[i, rng.integers(seq // 4, seq):] = 0.0
        self.seq = seq

    def __len__(self):
        return len(self.text)

    def __getitem__(self, i):
        return {"tokens": self.text[i, :-1], "labels": self.text[i, 1:], "loss_mask": self.mask[i],
                "position_ids": np.arange(self.seq, dtype=np.int64)}


def tiny_config(tmp, **over):
    values = {"architecture": dict(LLAMA), "output_dir": str(tmp), "param_dtype": "fp32", "reduce_dtype": "fp32",
              "cutoff_len": SEQ, "max_steps": 10, "lr": 1e-3, "min_lr": 1e-4, "warmup_ratio": 0.1,
              "per_device_train_batch_size": 1, "global_batch_size": 4, "seed": 7, "stage": "pt",
              "data_manager_type": "mg", "logging_steps": 1, "train_from_scratch": True}
    values.update(over)
    return build_config(values)


def datasets(ragged_mask: bool = False):
    return (SyntheticDataset(64, ragged_mask=ragged_mask), SyntheticDataset(16, seed=1, ragged_mask=ragged_mask),
            SyntheticDataset(8, seed=2, ragged_mask=ragged_mask))
