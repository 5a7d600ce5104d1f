"""FIM on 2 data-parallel gloo ranks: each rank reads its slice of every global batch, drawing from its own
RandomState(--seed), as each of Megatron's data-parallel ranks builds its own GPTFIMDataset (fim_dataset.py line 67,
NVIDIA/Megatron-LM commit d98e8a64ddf34856e74b24714e3bedb2f5a39553)."""
import numpy as np
import pytest
import torch.distributed as dist

from fsdp2_core.data.megatron import FIMSettings, FIMTransform, build_pretraining_datasets
from fsdp2_core.data.tokenizers import HuggingFaceTokenizer
from fsdp2_core.testing.spawn import spawn

from .conftest import save_char_tokenizer, write_corpus

pytestmark = [pytest.mark.dist]
SETTINGS = FIMSettings(rate=0.9, spm_rate=0.5)
MICRO, BATCHES = 2, 4


def _datasets(prefix, tokenizer_dir, fim):
    return build_pretraining_datasets([prefix], "100,0,0", 32, 1234, num_samples=(40, 0, 0),
                                      tokenizer=HuggingFaceTokenizer(tokenizer_dir), fim=fim)[0]


def _rank_reads(prefix, tokenizer_dir):
    from fsdp2_core.train.data import micro_batches
    dist.init_process_group("gloo")
    try:
        train = _datasets(prefix, tokenizer_dir, SETTINGS)
        batches = micro_batches(train, consumed=0, micro=MICRO, rank=dist.get_rank(), dp=2)
        return [next(batches)["tokens"].numpy() for _ in range(BATCHES)]
    finally:
        dist.destroy_process_group()


def test_each_rank_draws_its_own_stream(tmp_path):
    tokenizer_dir = save_char_tokenizer(tmp_path / "tok")
    prefix = write_corpus(str(tmp_path / "chars"), 60, 40, 5, vocab=34)
    per_rank = spawn(2, _rank_reads, prefix, tokenizer_dir)
    plain = _datasets(prefix, tokenizer_dir, None)
    fim = FIMTransform(SETTINGS, HuggingFaceTokenizer(tokenizer_dir))
    for rank, read in enumerate(per_rank):
        rng = np.random.RandomState(1234)
        for k, tokens in enumerate(read):
            for j in range(MICRO):
                index = k * MICRO * 2 + rank * MICRO + j  # Megatron's pretraining sampler: rank r's slice
                sample = plain[index]
                text = np.concatenate([sample["tokens"].numpy(), sample["labels"].numpy()[-1:]])
                assert np.array_equal(tokens[j], fim(text, rng)[:-1]), (rank, k, j)
