"""The training engine: loop, loss, optimizer, LR schedule, evaluation, metrics, profiler."""
from .checkpoint_hooks import CheckpointHooks
from .entry import build_parallel_model, run_training
from .loop import TrainState

__all__ = ["run_training", "build_parallel_model", "CheckpointHooks", "TrainState"]
