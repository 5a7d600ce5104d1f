"""The seam for checkpointing; `fsdp2_core.checkpoint.Checkpointer` is the engine's implementation.

The loop calls these at fixed points; the default does nothing. A resume sets
`state.iteration` and `state.consumed_train_samples` in `load`, and the data loader is
built after it from the consumed-samples position, so resuming skips no data and
reads none twice, in O(1).
"""


class CheckpointHooks:
    def setup(self, **run) -> None:
        """Once, before `load`, on every rank: what the run knows (device, tokenizer, train_iters, global_batch,
        steps_per_epoch, print_fn). Optional: hooks without it are still accepted."""

    def load(self, state, model, optimizer, schedule) -> None:
        """Before training: restore state (iteration, consumed samples, counters), weights, optimizer."""

    def after_step(self, state, model, optimizer, schedule) -> bool:
        """After each iteration: save if due. Return True to stop training (exit interval, signal)."""
        return False

    def batch_size_changed(self, state, model, optimizer, schedule) -> None:
        """Before the first iteration with a new number of micro-batches (ramp-up): Megatron saves here.
        Optional: hooks without it are still accepted."""

    def finish(self, state, model, optimizer, schedule) -> None:
        """After the last iteration: final save / export."""

    def close(self) -> None:
        """When the run ends, however it ends (an error included): let go of what `setup` took."""
