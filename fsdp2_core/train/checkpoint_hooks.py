"""The seam for checkpointing (DCP save/resume, HF export, signals: a later issue).

The loop calls these at fixed points; the default does nothing. A resume sets
`state.iteration` and `state.consumed_train_samples` in `load`, and the data loader is
built after it from the consumed-samples position, so resuming skips no data and
reads none twice, in O(1).
"""


class CheckpointHooks:
    def load(self, state, model, optimizer, schedule) -> None:
        """Before training: restore state (iteration, consumed samples, counters), weights, optimizer."""

    def after_step(self, state, model, optimizer, schedule) -> bool:
        """After each iteration: save if due. Return True to stop training (exit interval, signal)."""
        return False

    def finish(self, state, model, optimizer, schedule) -> None:
        """After the last iteration: final save / export."""
