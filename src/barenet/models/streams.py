"""Streams of batches as ``fit``, ``evaluate`` and ``predict`` read them.

A *stream* is what a model takes in place of arrays: a :class:`barenet.data.Dataset`, a function that returns
a fresh iterator of batches each time it is called (a generator function), a re-iterable object (a list of
batches, a PyTorch ``DataLoader``) or a one-shot iterator (a generator object). Each batch is ``(x, y)`` or
``(x, y, sample_weight)`` (a tuple; ``predict`` takes ``x`` alone, or the first item of a tuple), with the
arrays a model takes.

Epochs: without ``steps`` every epoch is one whole pass (a fresh iterator from a dataset, a function or a
re-iterable). With ``steps``, an epoch is that many batches, taken from where the previous epoch stopped;
when a pass ends, a re-iterable stream starts the next one, and a one-shot iterator ends training. Every
batch is checked as an array would be, and any error names the stream, the epoch, the batch and its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import BarenetError, ConfigError, StreamError


def is_stream(value: Any) -> bool:
    """Whether ``value`` is a stream of batches rather than data (an array, a list or dict of arrays, a pandas
    or Dask collection, anything with ``__array__``)."""
    if isinstance(value, np.ndarray):  # first: predict's hot path passes arrays
        return False
    from ..data import Dataset

    if isinstance(value, Dataset):
        return True
    if value is None or isinstance(value, (np.ndarray, list, tuple, Mapping, str, bytes)) \
            or hasattr(value, "__array__") or hasattr(value, "to_numpy") or hasattr(value, "arrays"):
        return False
    return callable(value) or isinstance(value, Iterator) or isinstance(value, Iterable)


def describe(stream: Any) -> str:
    """How messages name a stream: the dataset's pipeline, the function's name, the object's type."""
    from ..data import Dataset

    if isinstance(stream, Dataset):
        return stream.describe()
    if callable(stream) and hasattr(stream, "__qualname__"):
        return f"generator function {stream.__qualname__}"
    return f"{type(stream).__name__} stream"


class Feed:
    """One stream, read epoch by epoch (see the module notes); ``close`` releases what it holds open.

    ``steps`` is the number of batches an epoch takes (``None``: a whole pass). ``batch_size`` batches an
    unbatched :class:`~barenet.data.Dataset`. ``known_steps`` and ``rows`` are the batches and rows of an
    epoch when they are known beforehand (for the progress bar), else ``None``.
    """

    def __init__(self, stream: Any, *, steps: int | None, batch_size: int | None, what: str = "the stream") -> None:
        from ..data import Dataset

        self.name = f"{what} ({describe(stream)})"
        if isinstance(stream, Dataset) and not stream.batched:
            stream = stream.batch(batch_size or 32)
        self.stream, self.steps = stream, steps
        self.dataset = stream if isinstance(stream, Dataset) else None
        self.reiterable = self.dataset is not None or callable(stream) or not isinstance(stream, Iterator)
        self.batch_size = self.dataset.batch_size if self.dataset is not None else None
        known = self.dataset.steps if self.dataset is not None else _length(stream)
        self.known_steps = steps if steps is not None else known
        rows = self.dataset.rows if self.dataset is not None else None
        self.rows = rows if steps is None else None
        self._iterator: Iterator | None = None
        self._pending: list[Any] = []
        self._passes = 0
        self.exhausted = False

    def _open(self) -> Iterator:
        """A fresh pass (the previous one closed)."""
        self.close()
        stream = self.stream
        try:
            if self.dataset is not None:
                iterator = self.dataset.iterate(self._passes)
            elif callable(stream):
                iterator = iter(stream())
            else:
                iterator = iter(stream)
        except BarenetError:
            raise
        except Exception as exc:
            raise StreamError(f"{self.name}: starting pass {self._passes + 1} raised {type(exc).__name__}: "
                              f"{exc}") from exc
        self._passes += 1
        self._iterator = iterator
        return iterator

    def _next(self, iterator: Iterator, where: str) -> Any:
        try:
            return next(iterator)
        except StopIteration:
            raise
        except StreamError as exc:
            raise StreamError(f"{self.name}, {where}: {exc}") from exc
        except BarenetError as exc:
            raise StreamError(f"{self.name}, {where}: {exc}") from exc
        except Exception as exc:  # a user's generator or loader raised: the model keeps its last epoch
            raise StreamError(f"{self.name}, {where}: the stream raised {type(exc).__name__}: {exc}") from exc

    def peek(self) -> Any:
        """The first batch the next epoch will give (read now and kept for it)."""
        if not self._pending:
            iterator = self._iterator if self._iterator is not None else self._open()
            try:
                self._pending.append(self._next(iterator, "batch 1"))
            except StopIteration:
                raise StreamError(f"{self.name} gave no batches; expected at least one") from None
        return self._pending[0]

    def epoch(self, epoch: int) -> Iterator[tuple[int, Any]]:
        """``(step, batch)`` of one epoch, ``step`` counting from 0; ``epoch`` (0-based) is for messages.

        Sets :attr:`exhausted` when a one-shot iterator (or a pass that gives nothing) has no batch left.
        """
        where, step, fresh = f"epoch {epoch + 1}", 0, False
        while self.steps is None or step < self.steps:
            if self._pending:
                batch = self._pending.pop(0)
            else:
                if self._iterator is None:
                    if (self._passes and not self.reiterable) or (self.steps is None and step):
                        self.exhausted = self.exhausted or not step
                        return
                    self._open()
                    fresh = True
                try:
                    batch = self._next(self._iterator, f"{where}, batch {step + 1}")
                except StopIteration:
                    self.close()
                    if fresh:  # a pass that gives nothing: never loop on it
                        self.exhausted = self.exhausted or not step
                        return
                    if self.steps is None:
                        return
                    continue
            fresh = False
            yield step, batch
            step += 1

    def close(self) -> None:
        """Close the pass in progress (a dataset's files and prefetch thread, a generator)."""
        iterator, self._iterator = self._iterator, None
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _length(stream: Any) -> int | None:
    try:
        return len(stream) if not callable(stream) else None
    except TypeError:
        return None


def unpack(batch: Any, name: str, where: str, *, need_targets: bool) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of a batch (``y`` and the weights ``None`` when absent); a batch of another form
    raises :class:`StreamError` naming ``name`` and ``where``."""
    if isinstance(batch, tuple):
        if not need_targets and len(batch) in (1, 2, 3):
            return batch[0], batch[1] if len(batch) > 1 else None, batch[2] if len(batch) > 2 else None
        if len(batch) in (2, 3):
            return batch[0], batch[1], batch[2] if len(batch) == 3 else None
        raise StreamError(f"{name}, {where} is a tuple of {len(batch)} items; expected (x, y) or "
                          "(x, y, sample_weight)")
    if need_targets:
        raise StreamError(f"{name}, {where} is {type(batch).__name__}; expected a tuple (x, y) or "
                          "(x, y, sample_weight)")
    return batch, None, None


def check_options(what: str, **options: Any) -> None:
    """Refuse array-only options of ``fit``/``evaluate`` given with a stream."""
    for option, value in options.items():
        if value is not None and not (isinstance(value, (bool, int, float)) and not value):
            hint = {"y": "the stream's batches are (x, y) or (x, y, sample_weight)",
                    "sample_weight": "give the weights as the third item of each batch",
                    "validation_split": "split a dataset with take/skip, or pass validation_data"}.get(option, "")
            raise ConfigError(f"{option} is for arrays; {what} is a stream" + (f": {hint}" if hint else ""))


def rows_text(start: int, n: int) -> str:
    """``"rows 64-95"`` (0-based, inclusive) of an epoch."""
    return f"rows {start}-{start + n - 1}"


def wrap(exc: BarenetError, name: str, where: str) -> StreamError:
    """A check's error on a batch, as a :class:`StreamError` naming the stream and the batch."""
    return StreamError(f"{name}, {where}: {' '.join(str(exc).split())}")
