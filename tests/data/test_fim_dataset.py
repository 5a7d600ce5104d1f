"""FIM pretraining datasets: megatron-core's GPTDataset sample order underneath, Megatron-LM's FIM stream on top.

The FIM facts followed (NVIDIA/Megatron-LM commit d98e8a64ddf34856e74b24714e3bedb2f5a39553):
megatron/training/datasets/fim_dataset.py line 67, in `GPTFIMDataset.__init__`, creates
`np.random.RandomState(seed=self.config.random_seed)` once per dataset, and pretrain_gpt.py line 405 fills random_seed
from --seed; `_query_document_sample_shuffle_indices` (lines 104-152) reads the sample as GPTDataset does before
transforming it. So each split (and each dataset of a blend) has its own stream, drawn in the order samples are read.
bigcode-project/Megatron-LM (commit 2037391bac0e6e70a9e8f1af9fd06b0ff46d1e11) megatron/data/gpt_dataset.py returns
the sample untouched when fim_rate is 0 (`GPTDataset.__getitem__`).
"""
import numpy as np
import pytest

from fsdp2_core.data.megatron import FIMSettings, FIMTransform, build_pretraining_datasets

from .conftest import StubTokenizer, write_corpus
from .test_data_gpt_order import assert_same, megatron

EOD, PAD = 33, 31  # the character tokenizer's <|endoftext|> and <fim_pad> (conftest.save_char_tokenizer)
SIZES = (120, 12, 0)


@pytest.fixture(scope="module")
def char_corpus(tmp_path_factory):
    """Documents of the character tokenizer's ids (specials included), each ending in its eod 33."""
    return write_corpus(str(tmp_path_factory.mktemp("fim") / "chars"), 80, 40, 7, vocab=EOD + 1)


def build(path, tokenizer, fim, seed=1234):
    return build_pretraining_datasets([path], "90,10,0", 32, seed, num_samples=SIZES, tokenizer=tokenizer, fim=fim)


def text_of(sample):
    return np.concatenate([sample["tokens"].numpy(), sample["labels"].numpy()[-1:]])


def test_rate_zero_is_megatron_core_gpt_dataset(tmp_path, corpora, stub_tokenizer):
    """--fim-rate 0: the samples are megatron-core's GPTDataset samples, key for key (the transform is not built,
    as bigcode's gpt_dataset.py returns the sample when fim_rate is 0)."""
    ref = megatron(tmp_path, stub_tokenizer, data_path=[corpora["a"]], split="90,8,2", sizes=(300, 30, 10))
    got = build_pretraining_datasets([corpora["a"]], "90,8,2", 64, 1234, num_samples=(300, 30, 10),
                                     tokenizer=stub_tokenizer, fim=FIMSettings(rate=0.0))
    assert_same(ref, got)


def test_fim_keeps_megatron_core_sample_order(tmp_path, char_corpus, fim_tokenizer):
    """Every document drawn for FIM but left alone (fim_no_prefix '' matches every text): each sample is
    megatron-core's, less the eod of an empty document (at the start or after another eod), padded with
    <fim_pad> at the end. Loss mask and position ids are megatron-core's."""
    ref = megatron(tmp_path, StubTokenizer(vocab_size=EOD + 1), data_path=[char_corpus], split="90,10,0",
                   seq=32, sizes=SIZES)
    got = build(char_corpus, fim_tokenizer, FIMSettings(rate=1.0, no_prefix=""))
    dropped = 0
    for split in (0, 1):
        assert len(got[split]) == len(ref[split])
        for i in range(len(ref[split])):
            plain = text_of(ref[split][i])
            empty = (plain == EOD) & np.concatenate([[True], plain[:-1] == EOD])
            dropped += int(empty.sum())
            expected = np.concatenate([plain[~empty], np.full(int(empty.sum()), PAD)])
            sample = got[split][i]
            assert np.array_equal(text_of(sample), expected), (split, i)
            for key in ("loss_mask", "position_ids"):
                assert np.array_equal(np.asarray(sample[key]), np.asarray(ref[split][i][key])), (split, i, key)
    assert dropped > 0  # the corpus has samples that start with an eod: the rule above was exercised


def test_one_stream_per_dataset_seeded_with_seed(char_corpus, fim_tokenizer):
    """A fresh dataset's first read draws from RandomState(--seed); the next read goes on with the same stream;
    the valid split has a stream of its own; the same seed and reading order give the same samples."""
    settings = FIMSettings(rate=0.8, spm_rate=0.5)
    plain = build(char_corpus, fim_tokenizer, None)
    fim = FIMTransform(settings, fim_tokenizer)

    def expected(split, indices, seed=1234):
        rng = np.random.RandomState(seed)
        return [fim(text_of(plain[split][i]), rng) for i in indices]

    train, valid, _ = build(char_corpus, fim_tokenizer, settings)
    read = [text_of(train[i]) for i in (7, 3, 7)]
    for got, want in zip(read, expected(0, (7, 3, 7))):
        assert np.array_equal(got, want)
    assert np.array_equal(text_of(valid[2]), expected(1, (2,))[0])
    assert not all(np.array_equal(a, b) for a, b in zip(read, [text_of(plain[0][i]) for i in (7, 3, 7)]))

    again = build(char_corpus, fim_tokenizer, settings)[0]
    other_seed = build(char_corpus, fim_tokenizer, settings, seed=99)[0]
    order = range(20)
    first = [text_of(again[i]) for i in order]
    assert all(np.array_equal(a, b) for a, b in zip(first, expected(0, order)))
    other = [text_of(other_seed[i]) for i in order]
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_fim_needs_a_tokenizer_with_the_tokens(char_corpus, stub_tokenizer):
    with pytest.raises(ValueError, match="HuggingFaceTokenizer"):
        build(char_corpus, stub_tokenizer, FIMSettings())
    with pytest.raises(ValueError, match="needs the tokenizer"):
        build(char_corpus, None, FIMSettings())


def test_fim_refuses_mock_data(fim_tokenizer):
    with pytest.raises(ValueError, match="--mock-data"):
        build_pretraining_datasets(None, None, 32, 1234, num_samples=SIZES, tokenizer=fim_tokenizer, mock=True,
                                   fim=FIMSettings())


def test_loader_workers_each_start_from_the_seed(char_corpus, fim_tokenizer):
    """With 2 loader workers (Megatron's default --num-workers), batch k is read by worker k % 2, whose copy of the
    dataset starts from RandomState(--seed): Megatron's DataLoader and the engine's deal batches the same way."""
    from fsdp2_core.train.data import micro_batches

    settings = FIMSettings(rate=0.9)
    plain = build(char_corpus, fim_tokenizer, None)[0]
    fim = FIMTransform(settings, fim_tokenizer)
    train = build(char_corpus, fim_tokenizer, settings)[0]
    batches = micro_batches(train, consumed=0, micro=2, rank=0, dp=1, workers=2)
    got = [next(batches) for _ in range(6)]
    streams = [np.random.RandomState(1234), np.random.RandomState(1234)]
    for k, batch in enumerate(got):
        for j, i in enumerate((2 * k, 2 * k + 1)):
            want = fim(text_of(plain[i]), streams[k % 2])
            assert np.array_equal(np.concatenate([batch["tokens"][j].numpy(), batch["labels"][j].numpy()[-1:]]),
                                  want), (k, j)
    batches.close()
