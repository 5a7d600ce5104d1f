import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from posttrain_helpers import train_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tok"))
    train_tokenizer(path)
    return path
