"""Pretraining data: Megatron indexed datasets and GPT sample order (`mg` data path)."""
from ..tokenizers import build_pretraining_tokenizer
from .builder import (
    build_pretraining_datasets,
    megatron_sample_counts,
    parse_data_path,
    parse_split,
)
from .fim import FIMSettings, FIMTransform
from .gpt_dataset import BlendedDataset, GPTDataConfig, GPTDataset, MockGPTLowLevelDataset
from .indexed_dataset import (
    DType,
    IndexedDataset,
    IndexedDatasetBuilder,
    IndexedDatasetError,
    get_bin_path,
    get_idx_path,
)
from .raw import ensure_indexed_dataset
from .sampler import MegatronPretrainingSampler

__all__ = [
    "BlendedDataset",
    "DType",
    "FIMSettings",
    "FIMTransform",
    "GPTDataConfig",
    "GPTDataset",
    "IndexedDataset",
    "IndexedDatasetBuilder",
    "IndexedDatasetError",
    "MegatronPretrainingSampler",
    "MockGPTLowLevelDataset",
    "build_pretraining_datasets",
    "build_pretraining_tokenizer",
    "ensure_indexed_dataset",
    "get_bin_path",
    "get_idx_path",
    "megatron_sample_counts",
    "parse_data_path",
    "parse_split",
]
