"""Fine-tuning data in LLaMA-Factory's conventions (`data_manager_type: lf`).

One concern per module: dataset_info (what the datasets are), loader (reading files),
converters (alpaca / sharegpt / openai → standard messages), templates and
tool_formats (messages → text), processor (text → input_ids / labels within cutoff_len),
packing, mixing (mix strategies, validation split), collator (micro-batches), build
(the whole path, caching, ranks).
"""
from .build import SFTDataset, StreamingSFTDataset, build_engine_datasets, build_sft_datasets, prepare
from .collator import SFTCollator
from .processor import IGNORE_INDEX, infer_seqlen
from .templates import TEMPLATES, Template, get_template

__all__ = ["build_sft_datasets", "build_engine_datasets", "prepare",
           "SFTCollator", "SFTDataset", "StreamingSFTDataset", "TEMPLATES",
           "Template", "get_template", "infer_seqlen", "IGNORE_INDEX"]
