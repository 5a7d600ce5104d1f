"""Batch arithmetic shared by the flag translation and the engine.

Data-parallel size = world / (tp × cp): context-parallel ranks share samples, and
pipeline ranks of a Megatron script fold into FSDP sharding (they are ordinary
data-parallel ranks here). Expert parallelism does not change it.
"""
from .schema import ConfigError


def data_parallel_size(world_size: int, tp_size: int, cp_size: int) -> int:
    if world_size % (tp_size * cp_size):
        raise ConfigError(
            f"world size {world_size} is not divisible by tp_size {tp_size} × cp_size {cp_size}; "
            "change the number of processes or the parallel sizes")
    return world_size // (tp_size * cp_size)


def gradient_accumulation_steps(global_batch: int, micro_batch: int, dp_size: int) -> int:
    """global batch / (micro batch × dp), refusing anything that does not divide."""
    per_step = micro_batch * dp_size
    if global_batch % per_step:
        raise ConfigError(
            f"global batch size {global_batch} is not divisible by micro batch size {micro_batch} × "
            f"data-parallel size {dp_size} (= {per_step}); choose a global batch that is a multiple of {per_step}")
    return global_batch // per_step


def resolve_batch(cfg, world_size: int) -> int:
    """Set gradient_accumulation_steps from global_batch_size for this world; return the dp size."""
    p, t = cfg.parallel, cfg.training
    dp = data_parallel_size(world_size, p.tp_size, p.cp_size)
    if t.global_batch_size is not None:
        t.gradient_accumulation_steps = gradient_accumulation_steps(t.global_batch_size,
                                                                    t.per_device_train_batch_size, dp)
    return dp


def global_batch_size(cfg, dp_size: int) -> int:
    t = cfg.training
    return t.per_device_train_batch_size * t.gradient_accumulation_steps * dp_size
