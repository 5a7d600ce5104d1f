"""A hybrid Mamba model from Megatron's flags (pretrain_hybrid.py: Mamba2, attention and squared-ReLU MLP layers by
--hybrid-layer-pattern) trains under FSDP2 on 2 gloo ranks with the losses of one process and a falling loss, and its
Hugging Face export loads with from_pretrained and gives the trained model's logits."""
import os

import numpy as np
import pytest
import torch

from fsdp2_core.testing.spawn import spawn_runs
from tests.arch.arch_helpers import PatternDataset, RecordAndExport, export_with_trained_logits

pytestmark = [pytest.mark.dist, pytest.mark.slow]

# 4 layers (Mamba2, attention, MLP, Mamba2); Mamba2 with 8 heads of 8 in 2 groups, state 8, chunks of 8 (4 per
# sequence, so the scan's chunk-to-chunk state passing is trained too)
HYBRID = ("--hybrid-layer-pattern M*-M --hidden-size 32 --num-attention-heads 4 --group-query-attention "
          "--num-query-groups 2 --position-embedding-type none --normalization RMSNorm --squared-relu "
          "--disable-bias-linear --hidden-dropout 0 --attention-dropout 0 --untie-embeddings-and-output-weights "
          "--mamba-state-dim 8 --mamba-head-dim 8 --mamba-num-groups 2 --mamba-chunk-size 8 "
          "--seq-length 32 --max-position-embeddings 64 --micro-batch-size 1 --global-batch-size 4 --train-iters 8 "
          "--lr 3e-3 --min-lr 3e-4 --lr-warmup-iters 1 --save /ckpt/run --data-path /data/corpus_text_document "
          "--tokenizer-type NullTokenizer --vocab-size 127 --make-vocab-size-divisible-by 64 --seed 11 "
          "--log-interval 1").split()
PROBE = torch.as_tensor(np.random.default_rng(5).integers(0, 128, size=(2, 32)))


def run_hybrid(run):
    """On every rank: translate the flags as pretrain_hybrid.py's, train, export to <out>/hf, probe the logits."""
    from fsdp2_core.train import run_training
    from megatron_compat.entry_points import judge_entry
    from megatron_compat.translate import translate
    out_dir, probe = run
    judged = judge_entry("pretrain_hybrid.py", HYBRID)
    result = translate(HYBRID + ["--output_dir", out_dir], world_size=int(os.environ["WORLD_SIZE"]),
                       entry=judged.translate_as)
    assert result.ok, result.problems()
    hooks = RecordAndExport(os.path.join(out_dir, "hf"), probe)
    summary = run_training(result.config, datasets=(PatternDataset(64),), checkpoint=hooks,
                           print_fn=hooks.lines.append)
    summary.update(hf_dir=hooks.hf_dir, probe_logits=hooks.probe_logits.numpy(),
                   model_type=result.config.model.architecture["model_type"])
    return summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hybrid")
    two = spawn_runs(2, run_hybrid, [(str(tmp / "dp2"), PROBE)], timeout=900)
    one = spawn_runs(1, run_hybrid, [(str(tmp / "single"), PROBE)], timeout=900)
    return two[0][0], two[1][0], one[0][0]


def test_fsdp2_on_two_ranks_trains_as_one_process_with_a_falling_loss(runs):
    rank0, rank1, single = runs
    assert rank0["model_type"] == "nemotron_h"
    losses = rank0["losses"]
    assert len(losses) == 8 and losses == rank1["losses"]
    np.testing.assert_allclose(losses, single["losses"], rtol=1e-4)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses


def test_hf_export_loads_with_the_trained_logits(runs):
    rank0 = runs[0]
    hf = export_with_trained_logits(rank0, PROBE)
    assert hf.config.model_type == "nemotron_h"
    assert hf.config.layers_block_type == ["linear_attention", "full_attention", "mlp", "linear_attention"]
