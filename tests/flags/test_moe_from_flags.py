"""A Megatron MoE script's flags (no model_id anywhere) train with expert parallelism on 2 CPU ranks."""
import pytest

from fsdp2_core.testing.spawn import spawn

pytestmark = [pytest.mark.dist, pytest.mark.slow]

MOE_FLAGS = ("--num-layers 2 --hidden-size 32 --ffn-hidden-size 64 --num-attention-heads 4 --seq-length 32 "
             "--max-position-embeddings 32 --position-embedding-type rope --normalization RMSNorm --swiglu "
             "--disable-bias-linear --hidden-dropout 0 --attention-dropout 0 --num-experts 4 --moe-router-topk 2 "
             "--moe-ffn-hidden-size 32 --moe-aux-loss-coeff 0.01 --expert-model-parallel-size 2 "
             "--micro-batch-size 2 --global-batch-size 4 --train-iters 12 --lr 1e-2 --min-lr 1e-3 "
             "--lr-decay-style cosine --lr-warmup-iters 2 --mock-data --tokenizer-type NullTokenizer --vocab-size 60 "
             "--log-interval 1 --seed 3").split()


def train_from_flags(out_dir):
    from fsdp2_core.train import CheckpointHooks, run_training
    from megatron_compat.translate import translate
    result = translate(MOE_FLAGS + ["--save", out_dir], world_size=2)
    assert result.ok, result.problems()
    cfg = result.config
    summary = run_training(cfg, checkpoint=CheckpointHooks(), print_fn=lambda s: None)
    return cfg.model.model_id, cfg.parallel.ep_size, summary["losses"]


def test_moe_flags_with_expert_parallelism_train(tmp_path):
    model_id, ep, losses = spawn(2, train_from_flags, str(tmp_path / "out"))[0]
    assert model_id == "qwen3_moe" and ep == 2  # set by the translation: the flags built a Mixtral
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5
