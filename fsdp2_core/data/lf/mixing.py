"""Mixing several datasets and splitting off a validation set.

mix_strategy: concat (one after another), interleave_under (sample by `interleave_probs`
until the first dataset runs out), interleave_over (until every dataset has run out,
repeating the short ones). val_size: a fraction in (0, 1) or a sample count; streaming
needs a count and takes the first `val_size` samples of the shuffled stream.
"""
import logging
from typing import List, Optional, Tuple

log = logging.getLogger(__name__)


def parse_probs(text: Optional[str], n: int) -> Optional[List[float]]:
    if not text:
        return None
    probs = [float(x) for x in str(text).split(",")]
    if len(probs) != n:
        raise ValueError(f"interleave_probs has {len(probs)} values for {n} datasets")
    if abs(sum(probs) - 1.0) > 1e-6:
        raise ValueError(f"interleave_probs must sum to 1, got {sum(probs)}")
    return probs


def merge(datasets_: List, strategy: str, probs_text: Optional[str], seed: int, streaming: bool):
    import datasets
    if len(datasets_) == 1:
        return datasets_[0]
    if strategy == "concat":
        if streaming:
            log.warning("mix_strategy concat with streaming reads the datasets one after another (no mixing); "
                        "use interleave_under or interleave_over to mix them")
        return datasets.concatenate_datasets(datasets_)
    if strategy in ("interleave_under", "interleave_over"):
        stopping = "first_exhausted" if strategy == "interleave_under" else "all_exhausted"
        return datasets.interleave_datasets(datasets_, probabilities=parse_probs(probs_text, len(datasets_)),
                                            seed=seed, stopping_strategy=stopping)
    raise ValueError(f"mix_strategy {strategy!r} is not one of concat, interleave_under, interleave_over")


def split_validation(dataset, val_size: float, seed: int, streaming: bool, buffer_size: int) -> Tuple[object, object]:
    """(train, validation) with validation None when val_size is 0."""
    if not val_size:
        return (dataset.shuffle(buffer_size=buffer_size, seed=seed) if streaming else dataset), None
    if streaming:
        if float(val_size) != int(val_size) or val_size < 1:
            raise ValueError(f"streaming needs an integer val_size (a sample count), got {val_size}")
        dataset = dataset.shuffle(buffer_size=buffer_size, seed=seed)
        return dataset.skip(int(val_size)), dataset.take(int(val_size))
    size = int(val_size) if val_size >= 1 else float(val_size)
    if isinstance(size, int) and size >= len(dataset):
        raise ValueError(f"val_size {size} leaves no training samples out of {len(dataset)}")
    parts = dataset.train_test_split(test_size=size, seed=seed)
    return parts["train"], parts["test"]
