"""The --fim-* flags: Megatron-LM's (--fim-data and its settings) and bigcode's (--fim-rate alone) reach the data
config, refusals name the flag, and a translated script's datasets hold FIM samples."""
import numpy as np

from fsdp2_core.train.data import build_datasets, build_tokenizer
from tests.data.conftest import save_char_tokenizer, write_corpus
from tests.translate_helpers import ok, refused

MODEL = ("--num-layers 2 --hidden-size 64 --num-attention-heads 4 --seq-length 32 --max-position-embeddings 32 "
         "--micro-batch-size 2 --global-batch-size 8 --train-iters 10 --lr 1e-3 --eval-iters 0").split()
NULL_TOKENIZER = "--tokenizer-type NullTokenizer --vocab-size 100".split()
BASE = MODEL + NULL_TOKENIZER + ["--data-path", "/data/corpus_text_document"]


def test_bigcode_fim_rate_turns_fim_on():
    """bigcode's scripts give --fim-rate 0.5 --fim-spm-rate 0.5 without --fim-data (their fork had none)."""
    _, cfg = ok(BASE + "--fim-rate 0.5 --fim-spm-rate 0.25".split())
    d = cfg.data
    assert (d.fim_data, d.fim_rate, d.fim_spm_rate) == (True, 0.5, 0.25)


def test_megatron_fim_data_and_settings():
    _, cfg = ok(BASE + ["--fim-data", "--fim-split-sample", "<file_sep>", "--fim-fragment-rate", "0.4",
                        "--fim-no-prefix", "<repo>", "--fim-pad-token", "<pad>", "--fim-eod-token", "</s>"])
    d = cfg.data
    assert d.fim_data and d.fim_rate == 0.5 and d.fim_split_sample == "<file_sep>" and d.fim_fragment_rate == 0.4
    assert (d.fim_no_prefix, d.fim_pad_token, d.fim_eod_token) == ("<repo>", "<pad>", "</s>")
    assert ok(BASE)[1].data.fim_data is False


def test_refusals_name_the_flag():
    assert "--fim-fragment-rate" in refused(BASE + ["--fim-data", "--fim-split-sample", "<file_sep>"])
    assert "fim_rate" in refused(BASE + ["--fim-data", "--fim-rate", "1.5"])
    assert "--mock-data" in refused(MODEL + NULL_TOKENIZER + ["--mock-data", "--fim-data"])


def test_translated_script_reads_fim_samples(tmp_path):
    """From the flags to the datasets: the char tokenizer (tests/data/conftest.py) has the FIM tokens, and with
    --fim-rate 1 every sample starts with <fim_prefix> (id 28) unless it starts at an empty document."""
    tok = save_char_tokenizer(tmp_path / "tok")
    prefix = write_corpus(str(tmp_path / "chars"), 40, 60, 3, vocab=34)
    _, cfg = ok(MODEL + ["--tokenizer-type", "HuggingFaceTokenizer", "--tokenizer-model", tok, "--data-path", prefix,
                         "--split", "100,0,0", "--fim-rate", "1"])
    train = build_datasets(cfg, 10, 8, build_tokenizer(cfg))[0]
    starts = np.array([int(train[i]["tokens"][0]) for i in range(len(train))])
    assert np.mean(starts == 28) > 0.8 and len(train) >= 80
