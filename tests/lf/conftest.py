import pytest

from tests.lf.lf_helpers import load_tokenizer, train_tokenizer


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok"))
    train_tokenizer(path)
    return path


@pytest.fixture()
def tokenizer(tokenizer_dir):
    return load_tokenizer(tokenizer_dir)  # a fresh copy: templates may change its eos / pad
