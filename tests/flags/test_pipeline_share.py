"""Pipeline ranks that share samples (megatron_compat/pipeline_share.py): when folding --pipeline-model-parallel-size
into data parallelism leaves too few samples per step, the pipeline ranks become context- or tensor-parallel ranks,
keeping Megatron's dp, micro batch and accumulation; trained on 2 CPU ranks it gives one process's losses."""
import numpy as np
import pytest

from fsdp2_core.testing.spawn import spawn
from megatron_compat import pipeline_share
from megatron_compat.pipeline_share import Share
from megatron_compat.translate import translate
from tests.translate_helpers import ok, refused

FLAGS = ("--num-layers 2 --hidden-size 32 --ffn-hidden-size 64 --num-attention-heads 4 --seq-length 32 "
         "--max-position-embeddings 32 --position-embedding-type rope --normalization RMSNorm --swiglu "
         "--disable-bias-linear --hidden-dropout 0 --attention-dropout 0 --untie-embeddings-and-output-weights "
         "--micro-batch-size 1 --global-batch-size 3 --train-iters 4 --lr 1e-2 --mock-data "
         "--tokenizer-type NullTokenizer --vocab-size 60 --log-interval 1 --seed 3").split()
PP2 = ["--pipeline-model-parallel-size", "2"]


def _arch(**over):
    return dict({"num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 64}, **over)


def test_context_parallelism_first_then_tensor_parallelism_then_both():
    values = {"architecture": _arch(), "cutoff_len": 32}
    assert pipeline_share.choose(values, {}, 4)[0] == Share(4, 1)
    linear = {"architecture": _arch(layer_types=["linear_attention", "full_attention"]), "cutoff_len": 32}
    share, reasons = pipeline_share.choose(linear, {}, 2)
    assert share == Share(1, 2) and "linear_attention layers are not split" in reasons[0]
    mixed = {"architecture": _arch(num_attention_heads=4), "cutoff_len": 32}
    assert pipeline_share.choose(mixed, {}, 4)[0] == Share(4, 1)
    narrow = dict(mixed, cutoff_len=34)  # 34 tokens split over 2 ranks, not 4; 2 kv heads forbid tp 4
    assert pipeline_share.choose(narrow, {}, 4)[0] is None
    assert pipeline_share.choose(narrow, {}, 2)[0] == Share(2, 1)


def test_tensor_parallelism_keeps_out_of_experts_mtp_and_keeps_megatrons_vocabulary_padding():
    linear = _arch(layer_types=["linear_attention"])
    assert pipeline_share.choose({"architecture": linear, "ep_size": 2}, {}, 2)[0] is None
    assert pipeline_share.choose({"architecture": linear, "mtp_num_layers": 1}, {}, 2)[0] is None
    values = {"architecture": linear, "make_vocab_size_divisible_by": 128}
    assert pipeline_share.apply(values, Share(1, 2)) == "tensor parallelism (tp 1 → 2)"
    assert values["tp_size"] == 2 and values["make_vocab_size_divisible_by"] == 64  # 64 × 2 pads as 128 × 1
    odd = {"architecture": linear, "make_vocab_size_divisible_by": 1}
    assert "pads the vocabulary" in pipeline_share.choose(odd, {}, 2)[1][-1]


def test_a_batch_too_small_for_the_folded_ranks_shares_samples_over_context_parallelism():
    result, cfg = ok(FLAGS + PP2 + ["--save", "/ckpt/x"], world_size=2)
    assert (cfg.parallel.cp_size, cfg.parallel.tp_size) == (2, 1)
    t = cfg.training
    assert (t.global_batch_size, t.per_device_train_batch_size, t.gradient_accumulation_steps) == (3, 1, 3)
    line = next(line for line in result.lines if line.flag == "--pipeline-model-parallel-size")
    assert "share samples as context parallelism (cp 1 → 2)" in line.text and "dp is 1, as in Megatron" in line.text
    assert not any("folded into FSDP sharding" in n for n in result.notes)
    # a batch the folded ranks can share still folds into data parallelism
    _, folded = ok(FLAGS + PP2 + ["--save", "/ckpt/x", "--global-batch-size", "4"], world_size=2)
    assert (folded.parallel.cp_size, folded.training.gradient_accumulation_steps) == (1, 2)


def test_a_part_of_the_pipeline_ranks_when_all_of_them_do_not_fit():
    """8 ranks, pp 4, 2 heads: Megatron's dp is 2; 4 ranks cannot split 2 heads, 2 can, and the other 2 fold into
    dp 4, which the global batch 4 still fills (bigscience's gpt2-meg base script, in small)."""
    result, cfg = ok(FLAGS + ["--pipeline-model-parallel-size", "4", "--global-batch-size", "4",
                              "--num-attention-heads", "2", "--save", "/c"], world_size=8)
    assert (cfg.parallel.cp_size, cfg.parallel.tp_size, cfg.training.gradient_accumulation_steps) == (2, 1, 1)
    line = next(line for line in result.lines if line.flag == "--pipeline-model-parallel-size")
    assert "2 of its 4 pipeline ranks share samples as context parallelism (cp 1 → 2) and the other 2 fold" in line.text
    assert "dp is 4 (Megatron's 2: the same global batch in 1 accumulation step(s) for its 2)" in line.text


def test_refused_when_no_split_fits_naming_each():
    text = refused(FLAGS + ["--pipeline-model-parallel-size", "8", "--global-batch-size", "1", "--save", "/c"],
                   world_size=8)
    assert "global batch size 1 is smaller than the data-parallel size 8" in text
    assert "cp × 8, tp × 1: its 4 heads / tp 1 do not divide by cp 8" in text
    assert "Pipeline parallelism is not available" in text


def test_glm45_air_like_experts_take_context_parallelism():
    """MindSpeed-LLM's GLM-4.5-Air pretrain: 128 ranks, pp 4, ep 16, global batch 64: Megatron's dp is 32."""
    argv = FLAGS + ["--pipeline-model-parallel-size", "4", "--global-batch-size", "64", "--num-attention-heads", "8",
                    "--expert-model-parallel-size", "16", "--num-experts", "16", "--moe-router-topk", "2",
                    "--moe-ffn-hidden-size", "16", "--save", "/c"]
    result = translate(argv, world_size=128)
    assert result.values["cp_size"] == 4 and result.values["gradient_accumulation_steps"] == 2, result.problems()


def _train(argv, world):
    from fsdp2_core.train import CheckpointHooks, run_training
    result = translate(argv, world_size=world)
    assert result.ok, result.problems()
    summary = run_training(result.config, checkpoint=CheckpointHooks(), print_fn=lambda _: None)
    return summary["losses"], result.config.parallel.cp_size


@pytest.mark.dist
@pytest.mark.slow
def test_shared_pipeline_ranks_train_like_one_process(tmp_path):
    one, cp1 = spawn(1, _train, FLAGS + ["--save", str(tmp_path / "one")], 1)[0]
    two, cp2 = spawn(2, _train, FLAGS + PP2 + ["--save", str(tmp_path / "two")], 2)[0]
    assert (cp1, cp2) == (1, 2) and len(one) == 4
    np.testing.assert_allclose(np.asarray(two), np.asarray(one), rtol=1e-4)
