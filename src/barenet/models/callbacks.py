"""Callbacks: objects the training loop calls at the start and end of training, epochs and batches.

A callback subclasses :class:`Callback` and overrides the hooks it needs. The ``epoch`` a hook gets
is 0-based, as in Keras (the first epoch, printed ``Epoch 1/N``, is 0). ``self.model`` is the
model being trained; setting ``self.model.stop_training = True`` ends training after the
current batch. ``logs`` holds the values of the epoch so far (``loss``, metric names,
``val_`` names).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from ..errors import ConfigError


class Callback:
    """Base class with empty hooks."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        """Called by ``fit`` before training begins, with the model being trained (then ``self.model``)."""
        self.model = model

    def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
        """Called once before the first epoch."""

    def on_train_end(self, logs: dict[str, float] | None = None) -> None:
        """Called once after the last epoch (also after early stopping, a divergence or Ctrl-C)."""

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Called before epoch ``epoch`` (0-based) runs its first batch."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        """Called after epoch ``epoch`` (0-based) with its ``logs``: ``loss``, the metrics, the ``val_`` figures."""

    def on_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
        """Called after each training batch (``batch`` counts from 0 in each epoch) with its ``loss``."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_") and k != "model")
        return f"{type(self).__name__}({args})"


def _better(mode: str, min_delta: float) -> Callable[[float, float], bool]:
    if mode == "min":
        return lambda current, best: current < best - min_delta
    return lambda current, best: current > best + min_delta


def _resolve_mode(mode: str, monitor: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ConfigError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode != "auto":
        return mode
    lower_is_better = ("loss", "error", "mse", "mae")
    return "min" if any(word in monitor for word in lower_is_better) else "max"


def _monitored(logs: dict[str, float] | None, monitor: str, who: str) -> float:
    logs = logs or {}
    if monitor not in logs:
        hint = " (pass validation_data or validation_split to fit)" if monitor.startswith("val_") else ""
        raise ConfigError(f"{who} monitors {monitor!r}, but the epoch logs only have {sorted(logs)}{hint}")
    return float(logs[monitor])


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    With ``restore_best_weights=True`` the model gets back the weights of its best epoch when
    training stops (or ends), so the returned model is the best one seen. After training,
    ``best_epoch`` is that epoch (0-based like ``History.epoch``, so ``Epoch {best_epoch + 1}/N`` is its
    printed line; -1 when no epoch had a finite ``monitor``), ``best_logs`` its figures (``None``
    likewise) and ``stopped_epoch`` the 0-based epoch that ended training (or ``None``).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 0,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best_weights: bool = False,
    ) -> None:
        if patience < 0:
            raise ConfigError(f"EarlyStopping patience must be >= 0, got {patience!r}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.mode = _resolve_mode(mode, monitor)
        self.restore_best_weights = bool(restore_best_weights)

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = -1
        self.best_logs: dict[str, float] | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.stopped_epoch: int | None = None
        self._is_better = _better(self.mode, self.min_delta)

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "EarlyStopping")
        if math.isfinite(current) and self._is_better(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            self.best_logs = dict(logs)
            if self.restore_best_weights:
                self.best_weights = [w.copy() for w in self.model.get_weights()]
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            history = getattr(self.model, "history", None)
            if history is not None:
                history.kept_epoch = self.best_epoch


class TerminateOnNaN(Callback):
    """Stop training as soon as a batch loss is NaN or infinite, and say so on stderr.

    ``fit`` always adds one unless the callbacks given already hold one. The training loop's own
    messages (a divergence, a Ctrl-C) go to its stream too, so a program that words them for its own
    users (the ``barenet`` command does) passes one with a stream of its own.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self.terminated_at: tuple[int, int] | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def say(self, text: str) -> None:
        """Write one line to this callback's stream (stderr by default)."""
        print(text, file=self._stream or sys.stderr)

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss", 0.0)
        if not math.isfinite(loss):
            self.terminated_at = (self._epoch, batch)
            self.model.stop_training = True
            print(
                f"barenet: loss became {loss} at epoch {self._epoch + 1}, batch {batch + 1}; training stopped. "
                "Try a smaller learning rate, gradient clipping (clipnorm) or scaled inputs.",
                file=self._stream or sys.stderr,
            )


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch to ``schedule(epoch, lr)``, where
    ``epoch`` is 0-based (the first epoch, printed ``Epoch 1/N``, is ``epoch=0``), as in Keras."""

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.schedule(epoch, self.model.optimizer.current_learning_rate()))
        if not lr > 0:
            raise ConfigError(f"LearningRateScheduler: schedule({epoch}, lr) returned learning rate {lr!r} for epoch "
                              f"{epoch + 1}; expected > 0")
        self.model.optimizer.learning_rate = lr

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = self.model.optimizer.current_learning_rate()


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for ``patience`` epochs,
    then wait ``cooldown`` epochs; never below ``min_lr``."""

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0, mode: str = "auto") -> None:
        if not 0.0 < factor < 1.0:
            raise ConfigError(f"ReduceLROnPlateau factor must be in (0, 1), got {factor!r}")
        self.monitor = monitor
        self.factor = float(factor)
        self.patience = int(patience)
        self.min_delta = abs(float(min_delta))
        self.cooldown = int(cooldown)
        self.min_lr = float(min_lr)
        self.mode = _resolve_mode(mode, monitor)

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_left = 0
        self._is_better = _better(self.mode, self.min_delta)

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(logs, self.monitor, "ReduceLROnPlateau")
        optimizer = self.model.optimizer
        if not isinstance(optimizer.learning_rate, float):
            raise ConfigError("ReduceLROnPlateau needs an optimizer with a constant learning rate, not a schedule")
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._is_better(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                optimizer.learning_rate = max(optimizer.learning_rate * self.factor, self.min_lr)
                self.cooldown_left, self.wait = self.cooldown, 0
        if logs is not None:
            logs["lr"] = optimizer.learning_rate


def _bar(done: int, total: int, width: int) -> str:
    """``[=====>....]``: ``done`` of ``total`` steps in ``width`` characters."""
    filled = int(width * done / total)
    return "[" + "=" * max(filled - 1, 0) + (">" if filled < width else "=") + "." * (width - filled) + "]"


def _values(logs: dict[str, float] | None) -> str:
    return " - ".join(f"{k}: {v:.4g}" if k == "lr" else f"{k}: {v:.4f}" for k, v in (logs or {}).items())


def _duration(seconds: float) -> str:
    """``"42s"``, ``"3m05s"``, ``"1h02m"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressBar(Callback):
    """Progress display for ``fit(verbose=1)`` (a bar per epoch, redrawn in place on a terminal)
    and ``verbose=2`` (one line per epoch). Each epoch line shows the loss, metrics and time.

    The bar shows the rows per second and, when the number of batches of an epoch is known (arrays, a
    dataset of known size, ``steps_per_epoch``), the time left in the epoch; a stream of unknown length
    shows the batches done instead of a bar.
    """

    def __init__(self, verbose: int = 1, stream: IO[str] | None = None, width: int = 30) -> None:
        self.verbose = int(verbose)
        self.stream = stream
        self.width = width

    def on_train_begin(self, logs=None):
        self._out = self.stream or sys.stdout
        self._live = self.verbose == 1 and getattr(self._out, "isatty", lambda: False)()
        self._epochs = self.model.history.params["epochs"]
        self._steps = self.model.history.params.get("steps")

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._epoch = epoch
        self._last_draw = 0.0
        self._rows = 0

    def on_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._rows += int(logs.get("size", 0))
        now = time.perf_counter()
        done = batch + 1
        last = self._steps is not None and done >= self._steps
        if not self._live or (now - self._last_draw < 0.1 and not last):
            return
        self._last_draw = now
        elapsed = now - self._start
        if self._steps:
            bar = _bar(min(done, self._steps), self._steps, self.width)
            text = f"\rEpoch {self._epoch + 1}/{self._epochs} {bar} {done}/{self._steps}"
        else:
            text = f"\rEpoch {self._epoch + 1}/{self._epochs} {done} batch{'es' if done != 1 else ''}"
        text += f" - loss: {logs.get('loss', float('nan')):.4f}"
        if self._rows and elapsed > 0:
            text += f" - {self._rows / elapsed:,.0f} rows/s"
        if self._steps and done < self._steps:
            text += f" - ETA {_duration(elapsed / done * (self._steps - done))}"
        self._out.write(text + "\x1b[K")
        self._out.flush()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        values = _values(logs)
        prefix = "\r" if self._live else ""
        self._out.write(f"{prefix}Epoch {epoch + 1}/{self._epochs} - {seconds:.2f}s - {values}\x1b[K\n"
                        if self._live else f"Epoch {epoch + 1}/{self._epochs} - {seconds:.2f}s - {values}\n")
        self._out.flush()


class StepProgress:
    """Progress of ``evaluate`` and ``predict`` over their batches, as ``fit`` shows an epoch's.

    ``verbose=1``: a bar redrawn in place while the batches run (on a terminal only), then one line with
    the time and the results; ``verbose=2``: that line only; ``verbose=0``: nothing. For example
    ``evaluate: 4 batches - 0.02s - loss: 0.3162 - accuracy: 0.9000``.
    """

    def __init__(self, title: str, steps: int | None, verbose: int, stream: IO[str] | None = None,
                 width: int = 30) -> None:
        self.title, self.verbose, self.width = title, int(verbose), width
        self.steps = None if steps is None else max(int(steps), 1)  # None: a stream of unknown length
        self._done = 0
        self._out = stream or sys.stdout
        self._live = self.verbose == 1 and getattr(self._out, "isatty", lambda: False)()
        self._start = self._last_draw = time.perf_counter()

    def update(self, done: int) -> None:
        """``done`` of the batches are finished."""
        self._done = done
        now = time.perf_counter()
        if not self._live or (now - self._last_draw < 0.1 and (self.steps is None or done < self.steps)):
            return
        self._last_draw = now
        if self.steps is None:
            self._out.write(f"\r{self.title} {done} batch{'es' if done != 1 else ''}")
        else:
            self._out.write(f"\r{self.title} {_bar(min(done, self.steps), self.steps, self.width)} {done}/{self.steps}")
        self._out.flush()

    def end(self, logs: dict[str, float] | None = None) -> None:
        """Write the closing line (with ``logs``, when given)."""
        if not self.verbose:
            return
        seconds = time.perf_counter() - self._start
        steps = self.steps if self.steps is not None else self._done
        batches = f"{steps} batch{'es' if steps != 1 else ''}"
        text = " - ".join(part for part in (f"{self.title}: {batches}", f"{seconds:.2f}s", _values(logs)) if part)
        self._out.write(f"\r{text}\x1b[K\n" if self._live else f"{text}\n")
        self._out.flush()
