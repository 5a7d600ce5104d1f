"""The pad id of pretraining samples: a tokenizer without one gives -1 (Megatron's rule); any other error of the
tokenizer surfaces instead of silently becoming "no pad"."""
import pytest

from fsdp2_core.data.megatron.builder import _special_ids


class _Tokenizer:
    eod = 7

    def __init__(self, pad_error=None, pad=None):
        self._error, self._pad = pad_error, pad

    @property
    def pad(self):
        if self._error:
            raise self._error
        return self._pad


@pytest.mark.parametrize("error", [AttributeError("no pad"), NotImplementedError("no pad")])
def test_a_tokenizer_without_a_pad_gives_minus_one(error):
    assert _special_ids(_Tokenizer(error))[:2] == (-1, 7)


def test_a_pad_equal_to_eod_is_minus_one_and_a_distinct_pad_is_kept():
    assert _special_ids(_Tokenizer(pad=7))[0] == -1
    assert _special_ids(_Tokenizer(pad=3))[0] == 3


def test_a_broken_tokenizer_is_not_taken_for_one_without_a_pad():
    with pytest.raises(RuntimeError, match="vocab file unreadable"):
        _special_ids(_Tokenizer(RuntimeError("vocab file unreadable")))
