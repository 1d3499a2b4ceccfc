"""The record of a training run."""

from __future__ import annotations

from typing import Any


class History:
    """Per-epoch values of the loss and metrics.

    ``history.history["loss"]`` is the list of training losses, one per epoch; validation values
    are under ``"val_loss"``, ``"val_accuracy"`` and so on; ``history.params`` holds the settings of
    the run (epochs, batch size, samples).

    Epochs are counted as in Keras: every epoch attribute is a 0-based position in those lists, while
    everything barenet prints or writes for reading counts from 1. The epoch printed ``Epoch 3/50``
    is ``2`` here, and its loss is ``history.history["loss"][2]``.

    ``epoch``
        The positions of the recorded epochs: ``[0, 1, ..., n - 1]``.
    ``kept_epoch``
        The position of the epoch whose weights the model holds after ``fit``: the last one normally,
        the best one after :class:`~barenet.callbacks.EarlyStopping` with ``restore_best_weights``, the
        last finite one after a divergence; ``None`` when the model holds its weights from before
        training. ``history.history["val_loss"][kept_epoch]`` is that epoch's validation loss.
    ``diverged_at``
        The position of the epoch at which training diverged (its values are the last in the lists),
        or ``None``. The message ``training diverged at epoch k`` names ``diverged_at + 1``.

    The command line counts from 1 throughout: ``kept_epoch`` in a model's ``"fit"`` metadata and in
    ``metrics.json`` is this ``kept_epoch + 1``.
    """

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = dict(params or {})
        self.kept_epoch: int | None = None
        self.diverged_at: int | None = None

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        """Record one epoch; all of its values or none (the lists are replaced, not grown in place)."""
        keys = [*self.history, *(k for k in logs if k not in self.history)]
        past = len(self.epoch)
        grown = {k: [*self.history.get(k, [float("nan")] * past), float(logs.get(k, float("nan")))] for k in keys}
        self.history, self.epoch = grown, [*self.epoch, epoch]

    def update_last(self, logs: dict[str, float]) -> None:
        """Add values logged for the last recorded epoch after it was appended (e.g. the learning rate)."""
        if not self.epoch:
            return
        past = len(self.epoch) - 1
        history = dict(self.history)
        for key, value in logs.items():
            values = history.get(key, [float("nan")] * (past + 1))
            history[key] = [*values[:past], float(value)]
        self.history = history

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"
