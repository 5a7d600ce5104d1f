"""Data for the loop: datasets for the run, and per-rank micro-batch iterators.

Samples are dicts with `tokens`, `labels`, `loss_mask`, `position_ids` (and optionally
`attention_mask`). Micro-batches follow Megatron's pretraining sampler: a global
position `consumed` advances by micro_batch × dp per draw, and rank r takes its slice,
so a resume only needs the consumed-samples count.

With loader workers (dataloader_num_workers > 0) the batches are the same as without: the
loader draws its workers' seeds from a generator of its own, never from the global torch
generator (which dropout and initialisation use), and batches a worker has prefetched are not
counted as consumed, so a resume re-reads them. A dataset must not draw random numbers in
`__getitem__` (each worker process has its own generators); the engine's datasets do not, except
fill-in-the-middle data (fim_data), which draws as Megatron-LM's GPTFIMDataset does: one stream per
dataset and process, so its samples depend on the worker count, as Megatron's do (see data/megatron/fim.py).
"""
import logging
import sys
from typing import Dict, Iterator, Optional, Sequence

import numpy as np
import torch

from fsdp2_core.config import ConfigError
from fsdp2_core.data.megatron.fim import FIMSettings
from fsdp2_core.data.megatron.gpt_dataset import IndexTooLargeError
from fsdp2_core.data.megatron.sampler import MegatronPretrainingRandomSampler, MegatronPretrainingSampler
from fsdp2_core.data.megatron.weighted_split import parse_groups, read_groups_file

from .loader_workers import termination_signals_blocked, worker_init

log = logging.getLogger(__name__)


def _sampler(total: int, consumed: int, micro: int, rank: int, dp: int, order: str = "single",
             data_sharding: bool = True):
    if order == "cyclic":
        return MegatronPretrainingRandomSampler(total_samples=total, consumed_samples=consumed, micro_batch_size=micro,
                                                data_parallel_rank=rank, data_parallel_size=dp,
                                                data_sharding=data_sharding)
    return MegatronPretrainingSampler(total_samples=total, consumed_samples=consumed, micro_batch_size=micro,
                                      data_parallel_rank=rank, data_parallel_size=dp, drop_last=True)


def collate(samples: Sequence[Dict]) -> Dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.stack([np.asarray(s[k]) for s in samples])) for k in samples[0]}


def _loader(dataset, sampler, collate_fn, workers: int, seed: int, persistent: bool, prefetch: Optional[int]):
    """A DataLoader over `sampler` with worker processes that survive preemption signals (loader_workers)."""
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, collate_fn=collate_fn, worker_init_fn=worker_init,
        persistent_workers=persistent, prefetch_factor=prefetch, multiprocessing_context=_worker_start(),
        generator=torch.Generator().manual_seed(seed))  # not the global generator: see the module docstring


def _worker_start() -> Optional[str]:
    """Workers are forked on Linux, whatever multiprocessing's default: they must start with the rank's blocked
    termination signals (loader_workers), and a spawned or forkserver worker would import torch and unpickle the
    dataset again (seconds per pass). That default is not fork in a rank started by multiprocessing's spawn, nor
    from Python 3.14 on. None (the default) elsewhere: macOS and Windows do not fork safely."""
    return "fork" if sys.platform.startswith("linux") else None


def micro_batches(dataset, consumed: int, micro: int, rank: int, dp: int, workers: int = 0,
                  cyclic: bool = False, seed: int = 0, persistent_workers: bool = False,
                  prefetch_factor: Optional[int] = None, order: str = "single",
                  data_sharding: bool = True) -> Iterator[Dict[str, torch.Tensor]]:
    """This rank's micro-batches from global position `consumed`; `cyclic` restarts at the end (eval, epochs).

    `order` is the data loader type: single (dataset order) or cyclic (Megatron's random sampler, whose epochs
    follow one another: it never ends). `workers` > 0 reads through a DataLoader with that many processes, each
    keeping `prefetch_factor` batches ready; `persistent_workers` keeps them from one pass to the next."""
    collate_fn = getattr(dataset, "collate_fn", collate)  # a dataset may bring its own (lf: padding, packing)
    draw = micro * dp
    if cyclic and len(dataset) < draw:  # nothing to draw: cycling would spin forever
        raise ConfigError(f"a split holds {len(dataset)} samples, fewer than one draw of micro batch {micro} "
                          f"× data-parallel size {dp}; give it more data or lower per_device_train_batch_size")
    if cyclic and order == "single":
        consumed %= len(dataset) // draw * draw  # a resume in a later pass starts inside that pass
    sampler = _sampler(len(dataset), consumed, micro, rank, dp, order, data_sharding)
    loader = _loader(dataset, sampler, collate_fn, workers, seed, persistent_workers,
                     prefetch_factor) if workers > 0 else None
    while True:
        if loader is None:
            for indices in sampler:
                yield collate_fn([dataset[i] for i in indices])
        else:
            with termination_signals_blocked():
                batches = iter(loader)  # forks the workers (once, with persistent_workers)
            yield from batches
            del batches
        if order == "cyclic":
            continue  # the random sampler goes on with the next epoch
        if not cyclic:
            return
        sampler.consumed_samples = 0  # the next pass, on the same loader


def build_datasets(cfg, train_iters: int, global_batch: int, tokenizer=None, train_samples: Optional[int] = None):
    """(train, valid, test) for the configured data manager; mg = Megatron .bin/.idx pretraining data.

    `train_samples`: the training samples to provide when not train_iters × global_batch (a run given in samples,
    a batch-size ramp-up)."""
    d, t = cfg.data, cfg.training
    if d.data_manager_type == "lf":  # fine-tuning data (LLaMA-Factory conventions)
        from fsdp2_core.data.lf import build_engine_datasets
        try:
            samples = train_iters * global_batch if train_iters > 0 else None  # None: by epochs, the set as it is
            return build_engine_datasets(cfg, tokenizer, train_samples or samples, global_batch)
        except ValueError as exc:
            raise ConfigError(f"data: {exc}") from None
    from fsdp2_core.data.megatron import build_pretraining_datasets, megatron_sample_counts
    counts = megatron_sample_counts(train_iters, global_batch, t.eval_interval or train_iters, t.eval_iters,
                                    train_samples=train_samples)
    if d.is_instruction_dataset:  # MindSpeed-LLM instruction .bin/.idx (--is-instruction-dataset)
        from fsdp2_core.data.mindspeed.instruction import build_instruction_datasets
        try:
            return build_instruction_datasets(cfg, tokenizer, counts)
        except (ValueError, FileNotFoundError) as exc:
            raise ConfigError(f"data: {exc}") from None
    split_paths = lambda text: text.split() if text else None  # noqa: E731
    try:
        return build_pretraining_datasets(
            _mg_data_path(d.dataset), d.split, d.cutoff_len, t.seed,
            num_samples=counts, cache_dir=d.data_cache_path, tokenizer=tokenizer,
            train_data_path=split_paths(d.train_data_path), valid_data_path=split_paths(d.valid_data_path),
            test_data_path=split_paths(d.test_data_path), mock=d.mock_data, reset_position_ids=d.reset_position_ids,
            reset_attention_mask=d.reset_attention_mask, eod_mask_loss=d.eod_mask_loss,
            create_attention_mask=needs_dense_mask(d),
            no_shared_storage=bool(d.no_shared_storage), fim=fim_settings(d), weighted_groups=_weighted_groups(d))
    except IndexTooLargeError as exc:
        raise ConfigError(f"data: {exc} (samples asked: train {counts[0]:,} = {train_iters:,} iterations × global "
                          f"batch {global_batch}, valid {counts[1]:,}, test {counts[2]:,})") from None
    except (ValueError, FileNotFoundError) as exc:  # data errors name the file and what to do
        raise ConfigError(f"data: {exc}") from None


def needs_dense_mask(d) -> bool:
    """Whether the data builds the [L, L] attention mask: when asked, and for reset_attention_mask without
    reset_position_ids, whose documents nothing else carries (restarting positions are how they otherwise reach
    attention, models/packed.py)."""
    return bool(d.create_attention_mask_in_dataloader or (d.reset_attention_mask and not d.reset_position_ids))


def _weighted_groups(d):
    """(train group, valid groups, test groups) of bigscience's / bigcode's second data mode, None when unused;
    several valid (test) groups come back as a list of named datasets, each evaluated on its own."""
    if not (d.train_weighted_split_paths or d.train_weighted_split_paths_path):
        return None
    train, valid, test = (_groups(d, split) for split in ("train", "valid", "test"))
    return train[0], valid, test


def _groups(d, split):
    """A split's groups: given in the config, or read now from the file the config names (translated elsewhere)."""
    inline, path = getattr(d, f"{split}_weighted_split_paths"), getattr(d, f"{split}_weighted_split_paths_path")
    if path is None:
        return [inline] if split == "train" and inline else inline
    field_name = f"data.{split}_weighted_split_paths_path"
    groups = read_groups_file(path, field_name)
    parse_groups(groups, f"{field_name} {path}:", single=(split == "train"))
    return groups


def fim_settings(d):
    """The FIM settings of data section `d`, None when fim_data is off."""
    if not d.fim_data:
        return None
    return FIMSettings(rate=d.fim_rate, spm_rate=d.fim_spm_rate, split_sample=d.fim_split_sample,
                       fragment_rate=d.fim_fragment_rate, no_prefix=d.fim_no_prefix,
                       prefix_token=d.fim_prefix_token, middle_token=d.fim_middle_token,
                       suffix_token=d.fim_suffix_token, pad_token=d.fim_pad_token, eod_token=d.fim_eod_token)


def check_token_ids(datasets, vocab_size: Optional[int]) -> None:
    """Every token id of the data indexes the model's embedding: a data set tokenized for another vocabulary is
    refused at start, naming the file, not met as an IndexError deep in the embedding at some iteration."""
    if not vocab_size:
        return
    for dataset in datasets:
        ranges = dataset.token_id_ranges() if hasattr(dataset, "token_id_ranges") else {}
        for name, (low, high) in sorted(ranges.items()):
            if high >= vocab_size or low < 0:
                bad = high if high >= vocab_size else low
                raise ConfigError(
                    f"data: {name} holds token id {bad}, outside the model's vocabulary of {vocab_size} ids "
                    f"(0..{vocab_size - 1}); the data was tokenized with another tokenizer. Use the tokenizer it "
                    "was made with (--tokenizer-model / --tokenizer-type), or a model whose vocabulary covers it "
                    "(--vocab-size / --padded-vocab-size, or model.architecture.vocab_size)")


def _mg_data_path(dataset):
    """--data-path tokens; MindSpeed's `dataset: {file_name: raw.jsonl}` names one raw file, tokenized once and
    cached."""
    if isinstance(dataset, dict):
        if "file_name" not in dataset:
            raise ConfigError(f"data.dataset {dataset!r}: for data_manager_type mg give a file_name, or a "
                              "--data-path list")
        return [dataset["file_name"]]
    return dataset.split() if dataset else None


def build_tokenizer(cfg):
    """The Megatron tokenizer for mg data, or a Hugging Face tokenizer; None when neither is configured."""
    m = cfg.model
    if cfg.data.data_manager_type == "mg" and m.tokenizer_type:
        from fsdp2_core.data.megatron import build_pretraining_tokenizer
        return build_pretraining_tokenizer(m.tokenizer_type or "HuggingFaceTokenizer",
                                           tokenizer_model=m.tokenizer_model,
                                           vocab_file=m.vocab_file, merge_file=m.merge_file, vocab_size=m.vocab_size,
                                           tokenizer_name_or_path=m.tokenizer_name_or_path or m.model_name_or_path,
                                           trust_remote_code=m.trust_remote_code, use_fast=m.use_fast_tokenizer,
                                           tokenizer_kwargs=m.tokenizer_kwargs)
    path = m.tokenizer_name_or_path or m.model_name_or_path
    if path:
        from transformers import AutoTokenizer
        return AutoTokenizer.from_pretrained(path, use_fast=m.use_fast_tokenizer, trust_remote_code=m.trust_remote_code,
                                             split_special_tokens=m.split_special_tokens, **(m.tokenizer_kwargs or {}))
    return None


def epochs_to_steps(train_len: int, epochs: float, global_batch: int) -> int:
    steps = int(epochs * (train_len // global_batch))
    if steps < 1:
        raise ConfigError(f"{epochs} epochs of {train_len} samples at global batch {global_batch} is no full step; "
                          "set max_steps or a smaller global batch")
    return steps
