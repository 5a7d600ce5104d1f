"""Megatron's vocabulary padding, shared by the flag translation and model building."""


def padded_vocab_size(vocab_size: int, make_vocab_size_divisible_by: int = 128, tp_size: int = 1) -> int:
    """Round up to a multiple of make_vocab_size_divisible_by × tp_size, exactly as Megatron does."""
    multiple = make_vocab_size_divisible_by * tp_size
    return ((vocab_size + multiple - 1) // multiple) * multiple
