"""The training loop: ``fit`` and ``evaluate`` of a :class:`~barenet.Sequential`, top to bottom.

One epoch is a pass over the (shuffled) training samples in mini-batches; each batch runs the
network forward, the loss and its gradient backward through the layers, then one optimizer step
(:meth:`Sequential.loss_and_gradients` does the first three). After each epoch the loop records the
epoch's values in the :class:`~barenet.History`, then tells the callbacks.

Two guarantees the loop keeps whatever happens:

* **What is announced is what is recorded.** The end of an epoch (its history entry, the weights
  kept for it, the callbacks that print or save it) runs with Ctrl-C deferred to its end, so an
  interrupt never separates a printed epoch line from the history and weights that go with it. After
  an interrupt the model holds the weights of the last completed epoch.
* **A diverged run keeps finite weights.** Training stops when a batch loss is NaN or infinite,
  when an epoch's loss exceeds :data:`DIVERGENCE_FACTOR` times the first epoch's, or when a weight
  becomes non-finite. The model then gets back the weights of the last finite epoch (or its
  weights before training when no epoch finished), and the history says so: ``history.diverged_at``
  is the epoch that diverged, ``history.kept_epoch`` the epoch whose weights the model holds (0-based
  positions, see :class:`~barenet.History`; messages count from 1).
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import memory
from .. import metrics as metrics_mod
from ..errors import BarenetError, ConfigError, DataError, StreamError
from . import masking, streams, validation
from .callbacks import Callback, ProgressBar, StepProgress, TerminateOnNaN
from .history import History

if TYPE_CHECKING:
    from .sequential import Sequential

#: Inference runs in batches of at most this many samples (bounds the im2col columns of a CNN).
PREDICT_BATCH = 1024

#: An epoch whose training loss exceeds this many times the first epoch's loss counts as diverged.
DIVERGENCE_FACTOR = 1e6


def fit(model: Sequential, X: Any, y: Any = None, *, epochs: int = 1, batch_size: int | None = 32,
        shuffle: bool = True, validation_data: Any = None, validation_split: float = 0.0,
        class_weight: dict[int, float] | None = None, sample_weight: Any = None,
        callbacks: Sequence[Callback] | None = None, verbose: int = 1, steps_per_epoch: int | None = None,
        validation_steps: int | None = None) -> History:
    """Train ``model``; see :meth:`barenet.Sequential.fit` for the arguments."""
    model.require_compiled("fit")
    epochs = validation.check_count(epochs, "epochs", minimum=0)
    batch_size = validation.check_count(batch_size, "batch_size", allow_none=True)
    validation_split = validation.check_fraction(validation_split, "validation_split")
    steps_per_epoch = validation.check_count(steps_per_epoch, "steps_per_epoch", allow_none=True)
    validation_steps = validation.check_count(validation_steps, "validation_steps", allow_none=True)
    check_verbose(verbose)
    callbacks = list(callbacks or [])
    feeds: list[streams.Feed] = []
    # before a stream is first read: a child process of prefetch(process=True) is forked with these settings
    memory.keep_freed_memory()
    try:
        if streams.is_stream(X):
            streams.check_options("X", y=y, sample_weight=sample_weight, validation_split=validation_split or None)
            feed = streams.Feed(X, steps=steps_per_epoch, batch_size=batch_size, what="the training stream")
            feeds.append(feed)
            first = feed.peek()
            if not model.built:
                x_first = streams.unpack(first, feed.name, "batch 1", need_targets=True)[0]
                with _named(feed.name, "epoch 1, batch 1"):
                    model.build_for(x_first)
            params = {"epochs": epochs, "batch_size": feed.batch_size, "samples": feed.rows,
                      "steps": feed.known_steps}

            def run_epoch(epoch: int) -> dict[str, float] | None:
                return _train_stream_epoch(model, feed, epoch, class_weight, callbacks)

            val = None
        else:
            if steps_per_epoch is not None:
                raise ConfigError("steps_per_epoch is for streams; with arrays an epoch is one pass over them")
            model.build_for(X)
            X = model.check_inputs(X)
            y = model.check_targets(y, len(X))
            w = model.check_sample_weight(sample_weight, len(X))
            if class_weight:
                cw = validation.class_weights(class_weight, y, model.task, model.dtype, model.output_shape[-1])
                w = cw if w is None else cw * w.reshape(-1, *([1] * (cw.ndim - 1)))
            stream_val = streams.is_stream(validation_data)
            X, y, w, val = _split_validation(model, X, y, w, None if stream_val else validation_data,
                                             validation_split)
            n = len(X)
            bs = n if batch_size is None else min(batch_size, n)
            params = {"epochs": epochs, "batch_size": bs, "samples": n, "steps": math.ceil(n / bs)}

            def run_epoch(epoch: int) -> dict[str, float] | None:
                return _train_epoch(model, X, y, w, bs, shuffle, callbacks)

        validate: Callable[[], dict[str, float]] | None = None
        if streams.is_stream(validation_data):
            vfeed = streams.Feed(validation_data, steps=validation_steps, batch_size=PREDICT_BATCH,
                                 what="the validation stream")
            feeds.append(vfeed)

            def validate() -> dict[str, float]:
                return evaluate_feed(model, vfeed)
        else:
            if validation_steps is not None:
                raise ConfigError("validation_steps is for a validation stream; validation arrays are used whole")
            if val is None and validation_data is not None:
                val = _split_validation(model, None, None, None, validation_data, 0.0)[3]
            if val is not None:
                def validate() -> dict[str, float]:
                    return evaluate_arrays(model, *val)
        return _run(model, History(params), epochs, run_epoch, validate, callbacks, verbose)
    finally:
        for feed in feeds:
            feed.close()


def _run(model: Sequential, history: History, epochs: int, run_epoch: Callable[[int], dict[str, float] | None],
         validate: Callable[[], dict[str, float]] | None, callbacks: list[Callback], verbose: int) -> History:
    """The epochs of ``fit``: ``run_epoch(epoch)`` trains one (``None``: the stream had no batch left),
    ``validate()`` gives the validation figures; callbacks, divergence and interrupts as the module says."""
    model.history = history
    terminate = next((c for c in callbacks if isinstance(c, TerminateOnNaN)), None)
    if terminate is None:  # always on; it also says when training diverged
        terminate = TerminateOnNaN()
        callbacks.append(terminate)
    if verbose:
        callbacks.append(ProgressBar(verbose=verbose))
    for cb in callbacks:
        cb.set_model(model)
    model.stop_training = False
    model.interrupted = False
    kept = model.get_weights()  # the weights the model falls back to: last completed epoch's
    for cb in callbacks:
        cb.on_train_begin()
    try:
        # A diverging run is reported once, not by a warning per operation.
        with np.errstate(over="ignore", invalid="ignore"):
            for epoch in range(epochs):
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                logs = run_epoch(epoch)
                if logs is None:
                    terminate.say(f"barenet: the training stream ran out of batches before epoch {epoch + 1}; "
                                  "training stopped (give a re-iterable stream or fewer steps_per_epoch)")
                    break
                if _diverged(model, logs, history):
                    history.diverged_at = epoch
                    _restore(model, kept, history)
                    history.append(epoch, logs)
                    kept_text = ("its weights from before training" if history.kept_epoch is None
                                 else f"the weights of epoch {history.kept_epoch + 1}")
                    terminate.say(f"barenet: training diverged at epoch {epoch + 1} (loss {logs['loss']:.4g}); the "
                                  f"model keeps {kept_text}")
                    break
                if validate is not None:
                    logs.update({f"val_{k}": v for k, v in validate().items()})
                with _interrupts_deferred():
                    kept = model.get_weights()
                    history.append(epoch, logs)
                    history.kept_epoch = epoch
                    for cb in callbacks:
                        cb.on_epoch_end(epoch, logs)
                    history.update_last(logs)  # values the callbacks logged (lr)
                if model.stop_training:
                    break
    except KeyboardInterrupt:
        _restore(model, kept, history)
        terminate.say(f"\nbarenet: training interrupted during epoch {len(history.epoch) + 1}; fit returns the "
                      "history of the completed epochs and the model keeps their weights")
        model.interrupted = True
    except StreamError:
        _restore(model, kept, history)  # as after Ctrl-C: the last completed epoch's weights
        raise
    for cb in callbacks:
        cb.on_train_end()
    return history


@contextmanager
def _named(name: str, where: str) -> Iterator[None]:
    """Re-raise barenet's errors from the block as :class:`StreamError` naming the stream and the batch."""
    try:
        yield
    except StreamError:
        raise
    except BarenetError as exc:
        raise streams.wrap(exc, name, where) from None


def _stream_batch(model: Sequential, feed: streams.Feed, batch: Any, where: str,
                  class_weight: dict[int, float] | None) -> tuple[Any, Any, Any]:
    """A training batch of a stream, checked as ``fit`` checks arrays, with its class weights applied."""
    x, y, w = streams.unpack(batch, feed.name, where, need_targets=True)
    with _named(feed.name, where):
        x = model.check_inputs(x, "x")
        y = model.check_targets(y, len(x), "y")
        w = model.check_sample_weight(w, len(x))
        if class_weight:
            cw = validation.class_weights(class_weight, y, model.task, model.dtype, model.output_shape[-1])
            w = cw if w is None else cw * w.reshape(-1, *([1] * (cw.ndim - 1)))
    return x, y, w


def _train_stream_epoch(model: Sequential, feed: streams.Feed, epoch: int, class_weight: dict[int, float] | None,
                        callbacks: list[Callback]) -> dict[str, float] | None:
    """One epoch of a stream (see :mod:`barenet.models.streams`); ``None`` when it gave no batch."""
    running = model.running_metrics() if model.records_predictions else None
    params, grads = model.parameters(), model.gradients()
    total, seen, completed = 0.0, 0, True
    for step, batch in feed.epoch(epoch):
        x, y, w = _stream_batch(model, feed, batch, f"epoch {epoch + 1}, batch {step + 1} (from row {seen} of the "
                                                    "epoch)", class_weight)
        with model._engine():  # one engine block a step, as in _train_epoch
            value, y_pred, mask = model.loss_and_gradients(x, y, w, training=True)
            if math.isfinite(value):
                model.optimizer.step(params, grads)
        if running is not None:
            _running_update(running, y, y_pred, mask)
        total += value * len(y_pred)
        seen += len(y_pred)
        for cb in callbacks:
            cb.on_batch_end(step, {"loss": value, "size": len(y_pred)})
        if model.stop_training:
            completed = False
            break
    if not seen:
        return None
    logs = {"loss": total / seen}
    if running is not None and completed and math.isfinite(logs["loss"]):
        logs.update(running.result())
    return logs


def _running_update(running: Any, y: Any, y_pred: Any, mask: Any) -> None:
    """Add a stream's batch to its running metrics, at the real steps only where the output carries a padding
    mask (as :meth:`Sequential.metric_logs` takes an epoch's arrays)."""
    if isinstance(running, metrics_mod.RunningMetrics):
        running.update(*masking.real_steps(y, y_pred, mask))
    else:
        running.update(y, y_pred, mask)


def check_verbose(verbose: Any) -> int:
    """``verbose`` of ``fit``, ``evaluate`` and ``predict``: 0, 1 or 2."""
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ConfigError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _split_validation(model: Sequential, X: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                      validation_data: tuple | None, validation_split: float):
    """``(X, y, w, val)`` where ``val`` is ``(X_val, y_val, w_val)`` or None."""
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ConfigError("validation_data must be (X_val, y_val) or (X_val, y_val, sample_weight_val)")
        Xv = model.check_inputs(validation_data[0], "validation X")
        yv = model.check_targets(validation_data[1], len(Xv), "validation y")
        wv = (model.check_sample_weight(validation_data[2], len(Xv))
              if len(validation_data) == 3 else None)
        return X, y, w, (Xv, yv, wv)
    if not validation_split:
        return X, y, w, None
    n_val = int(math.floor(len(X) * validation_split))
    if n_val < 1 or n_val >= len(X):
        raise DataError(f"validation_split={validation_split} of {len(X)} samples leaves "
                        f"{n_val} for validation and {len(X) - n_val} for training; both need >= 1")
    val = (X[-n_val:], y[-n_val:], None if w is None else w[-n_val:])
    return X[:-n_val], y[:-n_val], None if w is None else w[:-n_val], val


def _train_epoch(model: Sequential, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, bs: int, shuffle: bool,
                 callbacks: list[Callback]) -> dict[str, float]:
    """One pass over the training set in mini-batches of ``bs``; returns the epoch's loss and metrics."""
    n = len(X)
    order = model.rng.permutation(n) if shuffle else None
    preds, as_labels = model.prediction_buffer(n) if model.records_predictions else (None, False)
    masks = model.mask_buffer(n) if preds is not None else None
    # Built once per epoch (the arrays are updated in place), not at every step.
    params, grads = model.parameters(), model.gradients()
    total, seen = 0.0, 0
    for step in range(math.ceil(n / bs)):
        part = slice(step * bs, min(n, (step + 1) * bs))
        idx = part if order is None else order[part]
        # One engine block a step: a Dense layer before the first splitting layer computes on BLAS's own
        # threads, and BLAS is on one thread from that layer's split to the end of the step (barenet.threads).
        with model._engine():
            value, y_pred, mask = model.loss_and_gradients(X[idx], y[idx], None if w is None else w[idx],
                                                           training=True)
            if math.isfinite(value):
                model.optimizer.step(params, grads)
        if preds is not None:
            preds[idx] = y_pred.argmax(axis=-1) if as_labels else y_pred
            _record_masks(masks, idx, mask)
        total += value * len(y_pred)
        seen += len(y_pred)
        for cb in callbacks:
            cb.on_batch_end(step, {"loss": value, "size": len(y_pred)})
        if model.stop_training:
            break
    logs = {"loss": total / seen}
    if preds is not None and seen == n and math.isfinite(logs["loss"]):
        logs.update(model.metric_logs(y, preds, mask=masks))
    return logs


def _record_masks(buffer: Any, idx: Any, mask: Any) -> None:
    """Store a batch's output padding masks at rows ``idx`` of ``buffer`` (see ``model.mask_buffer``)."""
    if buffer is None:
        return
    if isinstance(buffer, list):
        for part, m in zip(buffer, mask, strict=True):
            if part is not None:
                part[idx] = m
    else:
        buffer[idx] = mask


def _diverged(model: Sequential, logs: dict[str, float], history: History) -> bool:
    """Whether the epoch just trained diverged (see the module notes)."""
    loss = logs["loss"]
    if not math.isfinite(loss):
        return True
    first = history.history.get("loss", [loss])[0]
    if loss > DIVERGENCE_FACTOR * max(first, np.finfo(np.float64).tiny):
        return True
    return not all(np.isfinite(p).all() for p in model.parameters().values())


def _restore(model: Sequential, weights: list[np.ndarray], history: History) -> None:
    """Give the model back ``weights`` (the last completed epoch's) and say which epoch they are."""
    model.set_weights(weights)
    history.kept_epoch = history.epoch[-1] if history.epoch else None


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Run the block with Ctrl-C held back: a SIGINT that arrives inside raises KeyboardInterrupt at its end.

    Only the main thread receives signals in Python; elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def evaluate_arrays(model: Sequential, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, *,
                    batch_size: int = PREDICT_BATCH, progress: StepProgress | None = None) -> dict[str, float]:
    """Loss and metrics of checked arrays in inference mode, in batches of ``batch_size``; ``progress`` is told
    after each batch and given the results at the end."""
    total = 0.0
    preds, as_labels = model.prediction_buffer(len(X))
    masks = model.mask_buffer(len(X))
    memory.keep_freed_memory(math.ceil(len(X) / batch_size))
    for start in range(0, len(X), batch_size):
        part = slice(start, start + batch_size)
        wb = None if w is None else w[part]
        with model._engine():
            value, y_pred, mask = model.loss_and_gradients(X[part], y[part], wb, training=False, need_grad=False)
        preds[part] = y_pred.argmax(axis=-1) if as_labels else y_pred
        _record_masks(masks, part, mask)
        total += value * len(X[part])
        if progress is not None:
            progress.update(start // batch_size + 1)
    logs = {"loss": total / len(X), **model.metric_logs(y, preds, mask=masks)}
    if progress is not None:
        progress.end(logs)
    return logs


def evaluate_feed(model: Sequential, feed: streams.Feed, *, progress: StepProgress | None = None) -> dict[str, float]:
    """Loss and metrics of one epoch of a stream in inference mode (as :func:`evaluate_arrays` for arrays)."""
    running = model.running_metrics()
    total, seen = 0.0, 0
    memory.keep_freed_memory()
    for step, batch in feed.epoch(0):
        x, y, w = _stream_batch(model, feed, batch, f"batch {step + 1} (from row {seen})", None)
        with model._engine():
            value, y_pred, mask = model.loss_and_gradients(x, y, w, training=False, need_grad=False)
        _running_update(running, y, y_pred, mask)
        total += value * len(x)
        seen += len(x)
        if progress is not None:
            progress.update(step + 1)
    if not seen:
        raise StreamError(f"{feed.name} gave no batches; expected at least one")
    logs = {"loss": total / seen, **running.result()}
    if progress is not None:
        progress.end(logs)
    return logs


def predict_feed(model: Sequential, feed: streams.Feed, *, progress: StepProgress | None = None) -> list[Any]:
    """The outputs of every batch of one epoch of a stream, in order (``x``, or the first item of a tuple)."""
    out = []
    memory.keep_freed_memory()
    for step, batch in feed.epoch(0):
        where = f"batch {step + 1}"
        x = streams.unpack(batch, feed.name, where, need_targets=False)[0]
        with _named(feed.name, where):
            x = model.check_inputs(x, "x", allow_empty=True)
        if len(x):
            with model._engine():
                out.append(model.forward(x, training=False))
        if progress is not None:
            progress.update(step + 1)
    if progress is not None:
        progress.end()
    return out
