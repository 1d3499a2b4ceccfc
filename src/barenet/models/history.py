"""The record of a training run."""

from __future__ import annotations

from typing import Any


class History:
    """Per-epoch values of the loss and metrics.

    ``history.history["loss"]`` is the list of training losses, one per epoch; validation values
    are under ``"val_loss"``, ``"val_accuracy"`` and so on; ``history.epoch`` lists the epoch numbers
    (0-based) and ``history.params`` the settings of the run (epochs, batch size, samples).
    """

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []
        self.params: dict[str, Any] = dict(params or {})

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))

    def __repr__(self) -> str:
        last = {k: round(v[-1], 6) for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"
