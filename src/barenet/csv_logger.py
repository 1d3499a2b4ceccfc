"""``CSVLogger``: each epoch's values as a row of a CSV file, as Keras's ``CSVLogger`` writes them."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO

from ._output import check_output_path, output_errors
from .errors import ConfigError
from .models.callbacks import Callback


class CSVLogger(Callback):
    """Write one row per epoch to ``filename``: the 0-based ``epoch`` (as in :class:`~barenet.History` and
    Keras), then the epoch's values (``loss``, metrics, ``val_`` values, ``lr`` when a scheduler logs it)
    in sorted order of their names.

    The columns are those of the first epoch; a value an epoch lacks is written ``NA``. Each row is
    flushed when its epoch ends, so the file can be watched (``tail -f``) while training runs.

    Parameters
    ----------
    filename : str or path
        The CSV file. Its folder must exist (barenet creates no folders for its outputs).
    separator : str
        One character between the fields (default ``","``).
    append : bool
        Add rows to an existing file instead of replacing it; the header is written only when the file is
        new or empty (a second ``fit`` continues the same table).

    Examples
    --------
    >>> model.fit(X, y, epochs=10, callbacks=[bn.callbacks.CSVLogger("training.csv")])   # doctest: +SKIP
    ``training.csv`` then reads ``epoch,accuracy,loss`` / ``0,0.52,0.69`` / ...
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        if not isinstance(separator, str) or len(separator) != 1 or separator in "\r\n\"":
            raise ConfigError(f"CSVLogger separator must be one character other than a quote or a line break, got "
                              f"{separator!r}")
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = bool(append)
        self._file: IO[str] | None = None

    def on_train_begin(self, logs=None):
        path = check_output_path(self.filename, "CSV log")
        with output_errors("CSV log", path):
            self._header = not (self.append and path.is_file() and path.stat().st_size > 0)
            self._file = open(path, "a" if self.append else "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer: csv.DictWriter | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self._writer is None:
            self._writer = csv.DictWriter(self._file, fieldnames=["epoch", *sorted(logs)], delimiter=self.separator,
                                          restval="NA", extrasaction="ignore", lineterminator="\n")
            if self._header:
                self._writer.writeheader()
        with output_errors("CSV log", Path(self.filename)):
            self._writer.writerow({"epoch": epoch, **{key: float(value) for key, value in logs.items()}})
            self._file.flush()

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None
