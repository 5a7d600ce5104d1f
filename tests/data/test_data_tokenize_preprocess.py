"""Pretraining tokenizers, tools/preprocess_data.py, tools/merge_datasets.py, raw-file caching."""
import json
import os

import numpy as np
import pytest

from fsdp2_core.data.megatron import (
    build_pretraining_datasets,
    build_pretraining_tokenizer,
    ensure_indexed_dataset,
)
from tools import merge_datasets, preprocess_data

mg = pytest.importorskip("megatron.core.datasets.indexed_dataset")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TEXTS = [
    "The quick brown fox jumps over the lazy dog. It was not amused!",
    "Megatron files keep tokens as uint16 when the vocabulary is small.",
    "",
    "Données en français, avec des accents; and some numbers 12345 67.",
    "Short one.",
] * 6


@pytest.fixture(scope="module")
def tok_files(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("tok")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TEXTS * 3, vocab_size=400, special_tokens=["<|endoftext|>"])
    bpe.save_model(str(root))
    hf = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    hf.save_pretrained(str(root / "hf"))
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS * 20), model_prefix=str(root / "sp"),
                                   vocab_size=120, model_type="bpe", minloglevel=2)
    return {"vocab": str(root / "vocab.json"), "merges": str(root / "merges.txt"),
            "hf": str(root / "hf"), "sp": str(root / "sp.model")}


def test_tokenizer_kwargs_name_the_eos_a_tokenizer_lacks(tok_files, tmp_path):
    """ModelLink's --tokenizer-kwargs eos_token X (Qwen-1's tokenizer has no eos): X becomes Megatron's eod, and
    without it the error names the flag."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    table = Tokenizer.from_file(os.path.join(tok_files["hf"], "tokenizer.json"))
    bare = PreTrainedTokenizerFast(tokenizer_object=table)
    bare.save_pretrained(str(tmp_path / "no_eos"))
    with pytest.raises(ValueError, match="--tokenizer-kwargs eos_token"):
        build_pretraining_tokenizer("PretrainedFromHF", tokenizer_name_or_path=str(tmp_path / "no_eos"))
    tok = build_pretraining_tokenizer("PretrainedFromHF", tokenizer_name_or_path=str(tmp_path / "no_eos"),
                                      tokenizer_kwargs={"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})
    assert tok.eod == tok.pad == json.load(open(tok_files["vocab"]))["<|endoftext|>"]


def test_gpt2_bpe_matches_reference_and_eod(tok_files):
    from transformers import GPT2Tokenizer

    ours = build_pretraining_tokenizer("GPT2BPETokenizer", vocab_file=tok_files["vocab"],
                                       merge_file=tok_files["merges"])
    reference = GPT2Tokenizer(tok_files["vocab"], tok_files["merges"])  # Python BPE, as Megatron's
    vocab = json.load(open(tok_files["vocab"]))
    assert ours.eod == vocab["<|endoftext|>"] and ours.vocab_size == len(vocab)
    for text in TEXTS[:5] + ["  spaces   and\nnewlines\t", "it's we'll they've"]:
        assert ours.tokenize(text) == reference.encode(text)
        assert ours.detokenize(ours.tokenize(text)) == text


def test_hf_null_and_sentencepiece_special_ids(tok_files):
    import sentencepiece as spm

    hf = build_pretraining_tokenizer("HuggingFaceTokenizer", tokenizer_model=tok_files["hf"])
    assert hf.eod == 0 and hf.vocab_size == len(json.load(open(tok_files["vocab"])))
    with pytest.raises(AttributeError):
        hf.pad  # no pad token: the dataset then pads with -1 as Megatron does
    assert build_pretraining_tokenizer("PretrainedFromHF", tokenizer_name_or_path=tok_files["hf"]).eod == 0
    null = build_pretraining_tokenizer("NullTokenizer", vocab_size=500)
    assert (null.eod, null.vocab_size, null.tokenize("3 4 5")) == (500, 501, [3, 4, 5])
    sp = spm.SentencePieceProcessor(model_file=tok_files["sp"])
    llama = build_pretraining_tokenizer("Llama2Tokenizer", tokenizer_model=tok_files["sp"])
    assert llama.tokenize("Short one.") == [sp.bos_id()] + sp.encode("Short one.")
    assert llama.eod == sp.eos_id() and llama.vocab_size == sp.vocab_size()
    gsp = build_pretraining_tokenizer("GPTSentencePieceTokenizer", tokenizer_model=tok_files["sp"])
    assert gsp.tokenize("Short one.") == sp.encode("Short one.") and gsp.eod == sp.eos_id()
    spt = build_pretraining_tokenizer("SentencePieceTokenizer", tokenizer_model=tok_files["sp"])
    n = sp.get_piece_size()
    # <CLS> <SEP> <EOD> <MASK> appended; the model's own pad/bos/eos pieces reused (pad absent -> <PAD>)
    assert spt.eod == n + 2 and spt.vocab_size == n + 5 and spt.pad == n + 4
    assert spt.tokenize("a<EOD>b") == sp.encode_as_ids("a") + [n + 2] + sp.encode_as_ids("b")
    with pytest.raises(ValueError, match="--tokenizer-type 'Bogus'"):
        build_pretraining_tokenizer("Bogus")
    with pytest.raises(FileNotFoundError, match="nowhere.model"):
        build_pretraining_tokenizer("Llama2Tokenizer", tokenizer_model="nowhere.model")


def _expected_megatron_bytes(tokenizer, texts, out_prefix, append_eod, order):
    """What Megatron-LM's preprocess_data.py writes, assembled with megatron-core's builder."""
    dtype = mg.DType.optimal_dtype(tokenizer.vocab_size)
    builder = mg.IndexedDatasetBuilder(out_prefix + ".bin", dtype=dtype)
    for i in order:
        ids = tokenizer.tokenize(texts[i]) if texts[i] else []
        lens = [len(ids)] if ids else []
        if ids and append_eod:
            ids = ids + [tokenizer.eod]
            lens[-1] += 1
        builder.add_document(ids, lens)
    builder.finalize(out_prefix + ".idx")
    return open(out_prefix + ".bin", "rb").read(), open(out_prefix + ".idx", "rb").read()


def _read(prefix):
    return open(prefix + ".bin", "rb").read(), open(prefix + ".idx", "rb").read()


@pytest.fixture(scope="module")
def corpus_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("raw") / "corpus.jsonl"
    with open(path, "w") as out:
        for i, text in enumerate(TEXTS):
            out.write(json.dumps({"text": text, "title": f"doc {i}"}) + "\n")
    return str(path)


@pytest.mark.parametrize("workers,partitions", [(1, 1), (2, 1), (1, 3)])
def test_preprocess_matches_megatron_output(tmp_path, tok_files, corpus_jsonl, workers, partitions):
    prefix = str(tmp_path / "out")
    preprocess_data.main([
        "--input", corpus_jsonl, "--output-prefix", prefix, "--json-keys", "text", "title",
        "--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", tok_files["hf"],
        "--append-eod", "--workers", str(workers), "--partitions", str(partitions),
        "--log-interval", "5",
    ])
    tok = build_pretraining_tokenizer("HuggingFaceTokenizer", tokenizer_model=tok_files["hf"])
    order = [i for p in range(partitions) for i in range(len(TEXTS)) if i % partitions == p]
    expected = _expected_megatron_bytes(tok, TEXTS, str(tmp_path / "ref"), True, order)
    assert _read(prefix + "_text_document") == expected
    titles = [f"doc {i}" for i in range(len(TEXTS))]
    assert _read(prefix + "_title_document") == _expected_megatron_bytes(
        tok, titles, str(tmp_path / "ref_title"), True, order)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_preprocess_parquet_equals_jsonl(tmp_path, tok_files, corpus_jsonl):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": TEXTS}), str(tmp_path / "corpus.parquet"))
    common = ["--tokenizer-type", "GPT2BPETokenizer", "--vocab-file", tok_files["vocab"],
              "--merge-file", tok_files["merges"], "--workers", "1", "--no-progress-bar"]
    preprocess_data.main(["--input", str(tmp_path / "corpus.parquet"), "--output-prefix",
                          str(tmp_path / "pq")] + common)
    preprocess_data.main(["--input", corpus_jsonl, "--output-prefix", str(tmp_path / "js")] + common)
    assert _read(str(tmp_path / "pq_text_document")) == _read(str(tmp_path / "js_text_document"))


def test_merge_datasets_matches_megatron(tmp_path, tok_files, corpus_jsonl):
    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(3):
        builder = mg.IndexedDatasetBuilder(str(shards / f"s{k}.bin"), dtype=np.uint16)
        for d in range(4 + k):
            builder.add_document(np.arange(d + 1 + k), [d + 1 + k])
        builder.finalize(str(shards / f"s{k}.idx"))
    merge_datasets.main(["--input", str(shards), "--output-prefix", str(tmp_path / "merged")])
    ref = mg.IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.uint16)
    for k in range(3):
        ref.add_index(str(shards / f"s{k}"))
    ref.finalize(str(tmp_path / "ref.idx"))
    assert _read(str(tmp_path / "merged")) == _read(str(tmp_path / "ref"))


def test_raw_file_is_tokenized_once(tmp_path, tok_files, corpus_jsonl, monkeypatch):
    from fsdp2_core.data.megatron import preprocess as pp

    tok = build_pretraining_tokenizer("HuggingFaceTokenizer", tokenizer_model=tok_files["hf"])
    calls = []
    original = pp.preprocess
    monkeypatch.setattr(pp, "preprocess", lambda *a, **k: calls.append(1) or original(*a, **k))
    first = ensure_indexed_dataset(corpus_jsonl, tok, str(tmp_path / "cache"))
    second = ensure_indexed_dataset(corpus_jsonl, tok, str(tmp_path / "cache"))
    assert first == second and calls == [1]
    train, _, _ = build_pretraining_datasets([corpus_jsonl], "100,0,0", 8, 1, (20, 0, 0),
                                             cache_dir=str(tmp_path / "cache"), tokenizer=tok)
    assert calls == [1] and len(train) >= 20
    expected = _expected_megatron_bytes(tok, TEXTS, str(tmp_path / "ref"), True, range(len(TEXTS)))
    assert _read(first) == expected
