"""bigcode's `--tokenizer-type TokenizerFromFile` / `TokenizerFromFileWithFIM` with `--tokenizer-file tokenizer.json`:
the tokenizer.json is read alone, `<|endoftext|>` (and the four FIM tokens) are added as special tokens and counted
in the vocabulary, and `<|endoftext|>` is the eod, as bigcode-project/Megatron-LM's `_HFTokenizer` builds it
(megatron/tokenizer/tokenizer.py of that repository: PreTrainedTokenizerFast(tokenizer_file=...),
add_special_tokens(additional_special_tokens), eod = vocab['<|endoftext|>'], vocab_size = len(tokenizer))."""
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from fsdp2_core.data.tokenizers import FIM_TOKENS, TokenizerFromFile, build_pretraining_tokenizer
from megatron_compat.translate import translate

TEXT = ["def add(a, b):\n    return a + b\n", "print('hello world')\n", "for i in range(10):\n    x += i\n"] * 20


def _tokenizer_json(tmp_path, specials=()):
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", *specials]))
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return str(path), tok.get_vocab_size()


def test_eod_is_added_and_counted(tmp_path):
    path, base = _tokenizer_json(tmp_path)
    tok = build_pretraining_tokenizer("TokenizerFromFile", tokenizer_model=path)
    assert isinstance(tok, TokenizerFromFile)
    assert tok.vocab_size == base + 1 and tok.eod == base  # appended after the trained vocabulary
    ids = tok.tokenize("def add(a, b):")
    assert ids and tok.detokenize(ids) == "def add(a, b):"
    assert tok.tokenize("x<|endoftext|>y")[1] == tok.eod  # a special token: never split


def test_an_eod_already_in_the_file_keeps_its_id(tmp_path):
    path, base = _tokenizer_json(tmp_path, specials=("<|endoftext|>",))
    tok = build_pretraining_tokenizer("TokenizerFromFile", tokenizer_model=path)
    assert (tok.vocab_size, tok.eod) == (base, 1)


def test_with_fim_adds_the_four_fim_tokens(tmp_path):
    path, base = _tokenizer_json(tmp_path)
    tok = build_pretraining_tokenizer("TokenizerFromFileWithFIM", tokenizer_model=path)
    assert tok.vocab_size == base + 5
    assert [tok.special_tokens[t] for t in ("<|endoftext|>", *FIM_TOKENS)] == list(range(base, base + 5))


def test_a_folder_or_a_missing_file_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--tokenizer-file .* folder"):
        TokenizerFromFile(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="--tokenizer-file"):
        TokenizerFromFile(str(tmp_path / "missing.json"))


def test_bigcode_flags_map(tmp_path):
    path, _ = _tokenizer_json(tmp_path)
    flags = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 128 --max-position-embeddings 128 "
             "--micro-batch-size 1 --global-batch-size 8 --train-iters 10 --lr 1e-4 --mock-data --save /tmp/x "
             f"--tokenizer-type TokenizerFromFile --tokenizer-file {path}").split()
    result = translate(flags, world_size=8)
    assert result.ok, result.problems()
    assert (result.config.model.tokenizer_type, result.config.model.tokenizer_model) == ("TokenizerFromFile", path)


def test_preprocess_data_takes_the_tokenizer_file(tmp_path):
    """bigcode's preprocessing command: the documents end with the eod of the tokenizer built from the file."""
    import json
    import subprocess
    import sys

    from fsdp2_core.data.megatron.indexed_dataset import IndexedDataset

    path, base = _tokenizer_json(tmp_path)
    corpus = tmp_path / "code.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXT[:3]))
    done = subprocess.run([sys.executable, "tools/preprocess_data.py", "--input", str(corpus), "--output-prefix",
                           str(tmp_path / "code"), "--tokenizer-type", "TokenizerFromFile", "--tokenizer-file", path,
                           "--append-eod", "--workers", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = IndexedDataset(str(tmp_path / "code_text_document"))
    assert len(data) == 3 and all(int(data[i][-1]) == base for i in range(3))


def test_fim_runs_on_the_file_tokenizer_with_fim(tmp_path):
    """bigcode's TokenizerFromFileWithFIM feeds fill-in-the-middle data: a PSM sample keeps its length and text."""
    import numpy as np

    from fsdp2_core.data.megatron.fim import FIMSettings, FIMTransform

    path, _ = _tokenizer_json(tmp_path)
    tok = build_pretraining_tokenizer("TokenizerFromFileWithFIM", tokenizer_model=path)
    sample = np.asarray(tok.tokenize("def add(a, b):\n    return a + b\n"), dtype=np.int64)
    got = FIMTransform(FIMSettings(rate=1.0, spm_rate=0.0), tok)(sample, np.random.RandomState(3)).tolist()
    prefix, suffix = tok.special_tokens["<fim_prefix>"], tok.special_tokens["<fim_suffix>"]
    assert len(got) == len(sample) and got[0] == prefix and suffix in got  # PSM, cut back to the sample's length
    assert tok.ids_to_text(got[1:got.index(suffix)]) == tok.detokenize(sample.tolist())[:len(
        tok.ids_to_text(got[1:got.index(suffix)]))]  # the prefix is the document's start
