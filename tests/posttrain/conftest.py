
import pytest

from tests.lf.lf_helpers import train_tokenizer


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok"))
    train_tokenizer(path)
    return path
