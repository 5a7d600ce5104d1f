"""Fill-in-the-middle samples, token for token, as Megatron-LM's GPTFIMDataset makes them.

Megatron-LM's FIM code is megatron/training/datasets/fim_dataset.py of NVIDIA/Megatron-LM (commit
d98e8a64ddf34856e74b24714e3bedb2f5a39553), not part of the megatron-core package: the expectations below follow its
source, not a run of it. Facts used:
- `_permute` (lines 234-307): `np_rng.binomial(1, fim_rate)` (line 251); the text is `ids_to_text(sample,
  remove_special_tokens=True)` (256); a text starting with `fim_no_prefix` returns the piece unchanged (259-260); then
  `np_rng.randint(low=0, high=len(contents) + 1, size=2)`, sorted, gives the two character boundaries (266-267);
  prefix/middle/suffix go through `text_to_ids` (277-279); `np_rng.binomial(1, fim_spm_rate)` picks SPM
  [prefix_tok, suffix_tok] suffix [middle_tok] prefix middle, else PSM [prefix_tok] prefix [suffix_tok] suffix
  [middle_tok] middle (297-305); GPTFIMDataset calls it with truncate_or_pad=False (line 191), so lines 284-295 do not
  apply.
- `_query_document_sample_shuffle_indices` (104-183): cuts at the eod token, keeps an eod only after a non-empty
  document (156-172), then cuts back or pads with the pad token to the sample's length (175-179).
- `_fim_split_and_permute_sequence` (199-232): one draw at fim_rate for a document holding the split token (213), then
  each fragment at fim_fragment_rate with the split token kept between them (218-230).

The tokenizer has one token per character (tests/data/conftest.py): a..z are ids 0..25, ' ' 26, '#' 27, then
<fim_prefix> 28, <fim_middle> 29, <fim_suffix> 30, <fim_pad> 31, <file_sep> 32, <|endoftext|> 33.
"""
import numpy as np
import pytest

from fsdp2_core.data.megatron.fim import FIMSettings, FIMTransform

P, M, S, PAD, FS, EOD = 28, 29, 30, 31, 32, 33
HASH = 27


def ids(text):
    return [ord(c) - ord("a") if c.isalpha() else {" ": 26, "#": HASH}[c] for c in text]


def run(tokenizer, sample, seed=1234, **settings):
    fim = FIMTransform(FIMSettings(**settings), tokenizer)
    return fim(np.asarray(sample, dtype=np.int64), np.random.RandomState(seed)).tolist()


def test_psm_layout_and_length(fim_tokenizer):
    """RandomState(1234): binomial(1, 1.0) -> 1, randint(0, 9, size=2) -> [6, 5] (boundaries 5, 6 of 'abcdefgh':
    prefix 'abcde', middle 'f', suffix 'gh'), binomial(1, 0.0) -> 0 (PSM); the second document '#xyzw' draws
    binomial -> 1 and is left alone for its '#' prefix. Three sentinels more: the end is cut back by three tokens."""
    sample = ids("abcdefgh") + [EOD] + ids("#xyzw")
    got = run(fim_tokenizer, sample, rate=1.0, spm_rate=0.0, no_prefix="#")
    assert got == [P] + ids("abcde") + [S] + ids("gh") + [M] + ids("f") + [EOD] + ids("#x")
    assert len(got) == len(sample)


def test_spm_layout(fim_tokenizer):
    """The same draws with spm_rate 1: binomial(1, 1.0) -> 1 picks SPM; the boundaries are drawn before it."""
    sample = ids("abcdefgh") + [EOD] + ids("#xyzw")
    got = run(fim_tokenizer, sample, rate=1.0, spm_rate=1.0, no_prefix="#")
    assert got == [P, S] + ids("gh") + [M] + ids("abcde") + ids("f") + [EOD] + ids("#x")


def test_empty_documents_lose_their_eod_and_the_sample_is_padded(fim_tokenizer):
    """An eod that starts the sample or follows another eod closes an empty document, which Megatron skips with
    its eod; the two missing tokens are made up with <fim_pad> at the end."""
    sample = [EOD] + ids("#ab") + [EOD, EOD] + ids("#c")
    assert run(fim_tokenizer, sample, rate=1.0, no_prefix="#") == ids("#ab") + [EOD] + ids("#c") + [PAD, PAD]


def test_split_sample_fragments(fim_tokenizer):
    """RandomState(1234): binomial(1, rate 1) -> 1 for the document, binomial(1, fragment 1) -> 1 for 'abcd',
    randint(0, 5, size=2) -> [4, 4] (prefix 'abcd', empty middle and suffix), binomial(1, 0.0) -> 0 (PSM); the
    fragment '#efghij' draws 1 and keeps its '#' prefix; <file_sep> stays between the fragments."""
    sample = ids("abcd") + [FS] + ids("#efghij")
    got = run(fim_tokenizer, sample, rate=1.0, spm_rate=0.0, no_prefix="#", split_sample="<file_sep>",
              fragment_rate=1.0)
    assert got == [P] + ids("abcd") + [S, M, FS] + ids("#efg")


def test_no_fim_leaves_the_sample(fim_tokenizer):
    sample = ids("abc") + [EOD] + ids("de")
    assert run(fim_tokenizer, sample, rate=1e-12) == sample


def test_same_seed_same_samples_and_the_stream_goes_on(fim_tokenizer):
    """One RandomState per dataset (fim_dataset.py, GPTFIMDataset.__init__): the second sample read continues the
    stream of the first, so reading the same sample twice gives two different draws, and a fresh stream repeats."""
    fim = FIMTransform(FIMSettings(rate=1.0), fim_tokenizer)
    sample = np.asarray(ids("the quick brown fox jumps over"), dtype=np.int64)
    rng = np.random.RandomState(5)
    first, second = fim(sample, rng), fim(sample, rng)
    again = np.random.RandomState(5)
    assert np.array_equal(fim(sample, again), first) and np.array_equal(fim(sample, again), second)
    assert not np.array_equal(first, second)


def test_rates_over_many_documents(fim_tokenizer):
    """The share of FIM documents is fim_rate and the share of SPM among them fim_spm_rate (a PSM document with an
    empty prefix, about 1 in 100 here, looks like SPM: the tolerance covers it)."""
    rate, spm = 0.3, 0.7
    fim = FIMTransform(FIMSettings(rate=rate, spm_rate=spm), fim_tokenizer)
    text_rng, rng = np.random.default_rng(0), np.random.RandomState(11)
    fim_count = spm_count = 0
    n = 3000
    for _ in range(n):
        sample = text_rng.integers(0, 27, 200)  # letters and spaces, one document
        out = fim(sample, rng)
        assert out.shape == sample.shape and out.dtype == np.int64
        if out[0] == P:
            fim_count += 1
            spm_count += int(out[1] == S)
    assert abs(fim_count / n - rate) < 0.03
    assert abs(spm_count / fim_count - spm) < 0.05


@pytest.mark.parametrize("missing, flag", [("<fim_pad>", "--fim-pad-token"), ("<fim_middle>", "--fim-middle-token")])
def test_tokenizer_without_fim_tokens_is_refused(tmp_path, missing, flag):
    from fsdp2_core.data.tokenizers import HuggingFaceTokenizer

    from .conftest import FIM_SPECIALS, save_char_tokenizer
    tokenizer = HuggingFaceTokenizer(save_char_tokenizer(tmp_path, [s for s in FIM_SPECIALS if s != missing]))
    with pytest.raises(ValueError) as err:
        FIMTransform(FIMSettings(), tokenizer)
    assert repr(missing) in str(err.value) and flag in str(err.value)


def test_split_token_must_exist(fim_tokenizer):
    with pytest.raises(ValueError, match="--fim-split-sample"):
        FIMTransform(FIMSettings(split_sample="<repo_name>", fragment_rate=0.5), fim_tokenizer)


def test_tokenizer_without_text_codec_is_refused(stub_tokenizer):
    with pytest.raises(ValueError, match="HuggingFaceTokenizer"):
        FIMTransform(FIMSettings(), stub_tokenizer)
