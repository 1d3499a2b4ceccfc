"""The validation rows of a table read block by block, encoded once and kept in a temporary file.

The streamed ``barenet train`` (:mod:`barenet.cli.streaming`) reads each block of the table once per epoch:
the block's training rows go on to the shuffle buffer and the batches, its validation rows into a
:class:`HeldRows` store. The first pass that reads a part of the table (a CSV file, a Parquet row group) to
its end writes that part's validation rows; validation after every epoch and the report's pass then read
them back from the store, part by part in the table's order (the order a pass over the table in file order
gives them, so the same losses and metrics as encoding them from the table again), without parsing the table.

The store is two flat files in a temporary folder: ``x`` rows of ``float32`` and the encoded targets ``y``,
``rows * (4 * features + 8)`` bytes in all, read back with plain reads (not memory-mapped, so the rows read
are the only ones held). A part whose reading was cut short (Ctrl-C, an error) is written again by the next
pass that reads it whole. When the folder cannot be written (a full disk), the store says so once and gives
up; the parts it lacks are then encoded from the table again, as :meth:`HeldRows.has` tells the reader.

A pass may run in a child process (``prefetch(process=True)``, forked): it writes into the same files, every
block at the offset of the store's own count of rows, and at the end of a whole pass hands its bookkeeping
back (:meth:`HeldRows.state`, :meth:`HeldRows.take`). A child's pass cut short hands nothing back, and what it
wrote is written over by the next pass.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np

from ..data.sources import BLOCK_ROWS


class HeldRows:
    """Encoded validation rows ``x : (rows, features)`` and ``y : (rows,)`` of the parts ``0 .. parts - 1`` of a
    table, written part by part during a pass and read back by part.

    Writing (one pass at a time, from one thread): ``begin(part)`` says whether that part is to be written
    (it is not yet stored whole), then ``add(part, x, y)`` for each of its blocks and ``finish(part)`` once
    its last block was added. Reading: ``has(part)`` and ``blocks(part)``, once the part is finished.
    """

    def __init__(self, parts: int, n_features: int, y_dtype: np.dtype | type, folder: str | None = None) -> None:
        self.parts, self.n_features = parts, n_features
        self.x_dtype, self.y_dtype = np.dtype(np.float32), np.dtype(y_dtype)
        self._folder = tempfile.TemporaryDirectory(prefix="barenet-validation-", dir=folder)
        self.x_path, self.y_path = Path(self._folder.name) / "x", Path(self._folder.name) / "y"
        self._x: IO[bytes] | None = open(self.x_path, "wb")
        self._y: IO[bytes] | None = open(self.y_path, "wb")
        self.chunks: dict[int, list[tuple[int, int]]] = {}  # part -> [(first row in the files, rows)]
        self.finished: set[int] = set()
        self.written = 0  # rows in the files
        self.broken = False

    def begin(self, part: int) -> bool:
        """Whether ``part``'s rows are to be written now (dropping any left by a pass cut short)."""
        if self.broken or self._x is None or part in self.finished:
            return False
        self.chunks[part] = []
        return True

    def add(self, part: int, x: np.ndarray, y: np.ndarray) -> None:
        """Append rows of ``part``: ``x : (rows, features)`` (stored as float32) and ``y : (rows,)``."""
        if self.broken or not len(y):
            return
        try:  # at the store's own count of rows: a child's pass that was cut short may have written past it
            self._x.seek(self.written * self.n_features * self.x_dtype.itemsize)
            self._y.seek(self.written * self.y_dtype.itemsize)
            np.ascontiguousarray(x, dtype=self.x_dtype).tofile(self._x)
            np.ascontiguousarray(y, dtype=self.y_dtype).tofile(self._y)
        except OSError as exc:
            self._give_up(exc)
            return
        self.chunks[part].append((self.written, len(y)))
        self.written += len(y)

    def finish(self, part: int) -> None:
        """``part`` was read to its end: its rows can be read back. After the last part the files are closed."""
        if self.broken or self._x is None:
            return
        self.finished.add(part)
        if len(self.finished) == self.parts:
            self._close_writers()

    def has(self, part: int) -> bool:
        """Whether the rows of ``part`` can be read from the store (:meth:`blocks`)."""
        if self.broken or part not in self.finished:
            return False
        if self._x is not None:  # a pass cut short left other parts unwritten: flush what it wrote
            try:
                self._x.flush()
                self._y.flush()
            except OSError as exc:
                self._give_up(exc)
                return False
        return True

    def blocks(self, part: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The rows of ``part`` (when :meth:`has` says so) in the order they were added, in blocks of at most
        ``BLOCK_ROWS`` rows."""
        runs: list[list[int]] = []  # [first, rows]: consecutive chunks joined
        for first, rows in self.chunks.get(part, []):
            if runs and runs[-1][0] + runs[-1][1] == first and runs[-1][1] + rows <= BLOCK_ROWS:
                runs[-1][1] += rows
            else:
                runs.append([first, rows])
        x_row = self.n_features * self.x_dtype.itemsize
        with open(self.x_path, "rb") as xs, open(self.y_path, "rb") as ys:
            for first, rows in runs:
                xs.seek(first * x_row)
                ys.seek(first * self.y_dtype.itemsize)
                x = np.fromfile(xs, dtype=self.x_dtype, count=rows * self.n_features)
                y = np.fromfile(ys, dtype=self.y_dtype, count=rows)
                yield x.reshape(rows, self.n_features), y

    def state(self) -> dict:
        """What a pass in another process (``prefetch(process=True)``, forked with this store) wrote, for
        :meth:`take` in this one: the files are shared, the bookkeeping is not."""
        for handle in (self._x, self._y):
            if handle is not None:
                handle.flush()
        return {"chunks": self.chunks, "finished": self.finished, "written": self.written, "broken": self.broken}

    def take(self, state: dict) -> None:
        """Take over the bookkeeping of a whole pass made in a forked process (see :meth:`state`)."""
        self.chunks, self.finished = state["chunks"], state["finished"]
        self.written, self.broken = state["written"], state["broken"]
        if self.broken or len(self.finished) == self.parts:
            self._close_writers()

    def _give_up(self, exc: OSError) -> None:
        self.broken = True
        print(f"barenet: warning: cannot keep the validation rows in {self._folder.name!r} ({exc.strerror or exc}); "
              "they are read from the table again at every epoch", file=sys.stderr, flush=True)
        self._close_writers()

    def _close_writers(self) -> None:
        for handle in (self._x, self._y):
            if handle is not None:
                try:
                    handle.close()
                except OSError:  # a flush that fails on a full disk: the rows it held are given up
                    self.broken = True
        self._x = self._y = None

    def close(self) -> None:
        """Delete the files."""
        self._close_writers()
        self._folder.cleanup()

    def __repr__(self) -> str:
        return (f"HeldRows({self.written} rows of {self.n_features} features, {len(self.finished)} of {self.parts} "
                f"parts{', broken' if self.broken else ''})")
