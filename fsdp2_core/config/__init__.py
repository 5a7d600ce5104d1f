"""The canonical configuration: dataclasses, rules, YAML reading and writing."""
from .arguments import (
    ROUTER_FIELDS,
    SECTIONS,
    DataArguments,
    ModelArguments,
    OptimizationArguments,
    ParallelArguments,
    ProfilingArguments,
    TrainConfig,
    TrainingArguments,
)
from .batch import data_parallel_size, global_batch_size, gradient_accumulation_steps, resolve_batch
from .schema import FIELD_INDEX, ConfigError, coerce, field_section
from .validate import validate
from .vocab import padded_vocab_size
from .yaml_io import (
    build_config,
    config_to_sections,
    dump_yaml,
    flatten_sections,
    load_config,
    parse_overrides,
    read_yaml_values,
    write_text_atomic,
)

__all__ = [
    "ROUTER_FIELDS", "SECTIONS", "DataArguments", "ModelArguments", "OptimizationArguments", "ParallelArguments",
    "ProfilingArguments",
    "TrainConfig", "TrainingArguments", "data_parallel_size", "global_batch_size", "gradient_accumulation_steps",
    "resolve_batch", "FIELD_INDEX", "ConfigError", "coerce", "field_section", "validate", "padded_vocab_size",
    "build_config", "config_to_sections", "dump_yaml", "flatten_sections", "load_config", "parse_overrides",
    "read_yaml_values", "write_text_atomic",
]
