"""Tiny MoE / attention-sink families, packed samples, and rank spawning for the cp / ep tests."""
import os

import numpy as np

from fsdp2_core.testing.spawn import spawn_runs
from fsdp2_core.testing.tiny import VOCAB, SyntheticDataset, tiny_config

QWEN3 = {"model_type": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": VOCAB,
         "max_position_embeddings": 64, "tie_word_embeddings": False}
QWEN3_MOE = {"model_type": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
             "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": True, "vocab_size": VOCAB,
             "max_position_embeddings": 64, "tie_word_embeddings": False, "router_aux_loss_coef": 0.01,
             "output_router_logits": True}
GPT_OSS = {"model_type": "gpt_oss", "hidden_size": 32, "intermediate_size": 16, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "num_local_experts": 4,
           "num_experts_per_tok": 2, "sliding_window": 8, "layer_types": ["sliding_attention", "full_attention"],
           "vocab_size": VOCAB, "max_position_embeddings": 64, "tie_word_embeddings": False,
           "router_aux_loss_coef": 0.01, "output_router_logits": True,
           "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}}


class PackedDataset(SyntheticDataset):
    """Samples holding several documents: positions restart at each (Megatron's reset_position_ids)."""

    def __getitem__(self, i):
        s = super().__getitem__(i)
        cut = 5 + (i * 7) % (self.seq - 10)
        pos = np.concatenate([np.arange(cut), np.arange(self.seq - cut)]).astype(np.int64)
        return {**s, "position_ids": pos}


def datasets(packed: bool = False):
    cls = PackedDataset if packed else SyntheticDataset
    return cls(64), cls(16, seed=1), cls(8, seed=2)


MEGATRON_MIXTRAL = ("--num-layers 2 --hidden-size 32 --num-attention-heads 4 --group-query-attention "
                    "--num-query-groups 2 --seq-length 32 --max-position-embeddings 64 --micro-batch-size 1 "
                    "--global-batch-size 4 --train-iters 10 --lr 1e-3 --save /ckpt/run --data-path "
                    "/data/corpus_text_document --tokenizer-type NullTokenizer --vocab-size 100 "
                    "--position-embedding-type rope --normalization RMSNorm --swiglu --disable-bias-linear "
                    "--num-experts 4 --moe-router-topk 2 --moe-ffn-hidden-size 16 --hidden-dropout 0 "
                    "--attention-dropout 0 --untie-embeddings-and-output-weights "
                    "--expert-model-parallel-size 2").split()


def mixtral_from_megatron_flags() -> dict:
    """The architecture (and ep_size) a Megatron Mixtral script translates to."""
    from megatron_compat.translate import translate
    result = translate(list(MEGATRON_MIXTRAL), world_size=2)
    assert result.ok, result.problems()
    arch = dict(result.config.model.architecture)
    assert arch["model_type"] == "mixtral" and arch["vocab_size"] == VOCAB and result.config.parallel.ep_size == 2
    return arch


def run_layout(run):
    """On every rank: one run_training without checkpoints, run = (output dir, overrides, packed); its summary."""
    from fsdp2_core.train import CheckpointHooks, run_training
    out_dir, over, packed = run
    cfg = tiny_config(out_dir, **over)
    return run_training(cfg, datasets=datasets(packed), checkpoint=CheckpointHooks(), print_fn=lambda s: None)


def spawn_layouts(world, tmp, runs, timeout=600):
    """runs: [(overrides, packed)]; rank 0's summaries."""
    runs = [(os.path.join(str(tmp), f"run{i}"), over, packed) for i, (over, packed) in enumerate(runs)]
    return spawn_runs(world, run_layout, runs, timeout=timeout)[0]


def run_checkpointed(run):
    """On every rank: one run_training with the engine's checkpointing, run = (output dir, overrides)."""
    from fsdp2_core.checkpoint import Checkpointer
    from fsdp2_core.train import run_training
    out_dir, over = run
    cfg = tiny_config(out_dir, **over)
    return run_training(cfg, datasets=datasets(True), checkpoint=Checkpointer(cfg), print_fn=lambda s: None)


def spawn_checkpointed(world, tmp, runs, timeout=600):
    """runs: [(overrides, output dir name)] in order; every rank's summaries."""
    runs = [(os.path.join(str(tmp), name), over) for over, name in runs]
    return spawn_runs(world, run_checkpointed, runs, timeout=timeout)
