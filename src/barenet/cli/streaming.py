"""``barenet train``, ``evaluate`` and ``predict`` on tables larger than memory, read block by block.

When it streams: with ``--stream``; with neither ``--stream`` nor ``--no-stream``, for an input larger than
:data:`STREAM_BYTES` on disk and for a folder (of Parquet or CSV files); never for ``.npz`` archives. A
smaller file is read whole, as before, and trains exactly as it always has.

How ``train`` streams:

1. one pass over the blocks (CSV chunks, Parquet row groups) fits the preprocessing from statistics
   (:class:`barenet.preprocessing_stream.StreamStatistics`: the same scaling, categories, classes and column
   warnings as a whole table gives, to rounding) and counts the training and validation rows;
2. each row goes to validation or training by a seeded hash of its place (file, row of the file):
   ``splitmix64(seed, file, row) / 2**64 < --val-split``. The split is the same on every pass and for every
   order of reading, but not stratified by class (the whole-table path stratifies);
3. every epoch reads the files once more and encodes each block; its training rows are shuffled within a
   buffer of :data:`SHUFFLE_ROWS` rows (and the order of the row groups or files) with ``--seed`` and trained
   batch by batch, its validation rows kept, encoded, in a temporary file the first time they are read
   (:class:`barenet.cli.held_rows.HeldRows`), from which validation reads them after each epoch. Reading,
   encoding and the shuffle run in a child process (``prefetch(process=True)``, where the platform forks),
   beside training on another core; the child hands the store's bookkeeping back at the end of its pass;
4. the report's metrics come from counts (a confusion matrix, sums of errors) over every row, its figure from
   the first :data:`barenet.cli.report.SAMPLE_ROWS` rows of the split; that pass reads the table once more
   for the training rows and the temporary file for the validation rows.

So ``--epochs N`` reads the table ``N + 2`` times: the preprocessing pass, one per epoch and the report's.

``predict`` writes the predictions of each block as it reads the next (to a hidden sibling file, renamed into
place at the end; ``--keep`` columns first, in the input's row order) and ``evaluate`` scores from counts.
Peak memory is a few blocks of rows and the shuffle buffer, whatever the size of the input; the temporary
file of validation rows takes ``4 * features + 8`` bytes a row of disk, deleted when the command ends.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset
from ..data.dataset import Source
from ..data.sources import BLOCK_ROWS, from_csv, from_parquet
from ..errors import ConfigError, DataError, StreamError
from ..preprocessing import ColumnWarning, TablePreprocessor
from .held_rows import HeldRows
from .report import SplitTotals

#: Inputs larger than this many bytes stream unless ``--no-stream`` (folders always do).
STREAM_BYTES = 100 * 2**20
#: Training rows a shuffle buffer holds (and permutes) at once.
SHUFFLE_ROWS = 262_144
#: Rows per prediction batch in the passes that only predict.
PREDICT_ROWS = 8192
#: Training epochs read, encode and shuffle the table in a child process where it can be forked (Linux, macOS):
#: the pipeline holds open files and the preprocessor, which a spawned process would need pickled.
_FORKS = "fork" in multiprocessing.get_all_start_methods()


def add_stream_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                        help=f"read the table block by block, never whole (default: for inputs over "
                             f"{STREAM_BYTES // 2**20} MiB and folders)")


def wants_stream(path: str, choice: bool | None) -> bool:
    """Whether ``path`` is read block by block (see the module notes)."""
    data = Path(path)
    npz = data.suffix.lower() == ".npz"
    if choice and npz:
        raise ConfigError(f"--stream reads CSV and Parquet files; {path!r} is a .npz archive, which is read whole")
    if choice is not None:
        return choice
    if npz or not data.exists():
        return False
    return data.is_dir() or data.stat().st_size > STREAM_BYTES


def open_table(path: str, columns: list[str] | None = None) -> Source:
    """The CSV or Parquet file (or folder of them) at ``path`` as a source of table blocks."""
    data = Path(path)
    if not data.exists():
        raise DataError(f"data file {path!r} does not exist")
    if data.is_dir():
        parquet = any(p.suffix.lower() in (".parquet", ".pq") for p in data.rglob("*") if p.is_file())
        kind = "parquet" if parquet else "csv"
    else:
        from .data import _format

        kind = _format(data)
        if kind == "npz":
            raise ConfigError(f"{path!r} is a .npz archive, which is read whole; leave out --stream")
        if data.stat().st_size == 0:
            raise DataError(f"data file {path!r} is empty")
    reader = from_parquet if kind == "parquet" else from_csv
    return reader(path, columns=columns, block_rows=BLOCK_ROWS)


def table_columns(source: Source) -> list[str]:
    return list(source.columns)


def located_blocks(source: Source) -> Iterator[tuple[dict[str, np.ndarray], Path, int]]:
    """Every block of ``source`` in file order, with its file and the position of its first row in that file."""
    for part in source.parts:
        yield from _part_blocks(source, part)


def _part_blocks(source: Source, part: Any) -> Iterator[tuple[dict[str, np.ndarray], Path, int]]:
    file, start = (part[0], part[2]) if isinstance(part, tuple) else (part, 0)
    with closing(source.read(part)) as blocks:
        for block in blocks:
            yield block, file, start
            start += len(next(iter(block.values())))


def where(file: Path, first: int, rows: int) -> str:
    return f"{str(file)!r}, rows {first}-{first + rows - 1} (counting from 0 after the header)"


def validation_rows(file_index: int, first_row: int, rows: int, seed: int, fraction: float) -> np.ndarray:
    """``(rows,)`` bool: which rows ``first_row ..`` of file ``file_index`` are held out for validation.

    ``splitmix64`` of the row's place mixed with the seed, as a number in [0, 1), below ``fraction``.
    """
    if fraction == 0:
        return np.zeros(rows, dtype=bool)
    z = np.arange(first_row, first_row + rows, dtype=np.uint64) + np.uint64(file_index) * np.uint64(1 << 40)
    z = z ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


def _encode(prep: TablePreprocessor, block: dict[str, np.ndarray], file: Path,
            first: int) -> tuple[np.ndarray, np.ndarray]:
    """A table block as ``(x : (rows, features) float32, y : (rows,))``; a bad value names the file and rows."""
    n = len(block[prep.target])
    try:
        return prep.transform(block), prep.encode_target(block[prep.target])
    except StreamError:
        raise
    except DataError as exc:
        raise StreamError(f"{where(file, first, n)}: {exc} (row numbers within these rows)") from None


class EncodedRows(Source):
    """The training rows of a table source, encoded: elements ``(x : (rows, features) float32, y : (rows,))``,
    one per block of the table.

    With ``held``, each block's validation rows go to that store as the block is read (the first pass that
    reads a part whole writes them), so that an epoch reads the table once; see :mod:`barenet.cli.held_rows`.
    """

    def __init__(self, table: Source, prep: TablePreprocessor, rows: int, seed: int, fraction: float,
                 held: HeldRows | None = None) -> None:
        super().__init__()
        self.table, self.prep, self.held = table, prep, held
        self.seed, self.fraction = seed, fraction
        self.parts, self.rows = list(table.parts), rows
        self.name = f"{table.name} (training rows)"
        self.file_index = {file: i for i, file in enumerate(table.files)}
        self.part_index = {part: i for i, part in enumerate(self.parts)}

    def read(self, part: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        index = self.part_index[part]
        writing = self.held is not None and self.held.begin(index)
        for block, file, first in _part_blocks(self.table, part):
            x, y = _encode(self.prep, block, file, first)
            held = validation_rows(self.file_index[file], first, len(y), self.seed, self.fraction)
            if writing:
                self.held.add(index, x[held], y[held])
            yield x[~held], y[~held]
        if writing:
            self.held.finish(index)

    def _state_after_pass(self) -> dict | None:
        return None if self.held is None else self.held.state()

    def _take_state(self, state: dict) -> None:
        self.held.take(state)


class ValidationRows(Source):
    """The validation rows of a table source, encoded, in the table's order: from the store ``held`` for the
    parts it holds, encoded from the table for the others (all of them before the first epoch has ended)."""

    def __init__(self, table: Source, prep: TablePreprocessor, rows: int, seed: int, fraction: float,
                 held: HeldRows | None) -> None:
        super().__init__()
        self.table, self.prep, self.held = table, prep, held
        self.seed, self.fraction = seed, fraction
        self.parts, self.rows = list(table.parts), rows
        self.name = f"{table.name} (validation rows)"
        self.file_index = {file: i for i, file in enumerate(table.files)}
        self.part_index = {part: i for i, part in enumerate(self.parts)}

    def read(self, part: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        index = self.part_index[part]
        if self.held is not None and self.held.has(index):
            yield from self.held.blocks(index)
            return
        for block, file, first in _part_blocks(self.table, part):
            x, y = _encode(self.prep, block, file, first)
            held = validation_rows(self.file_index[file], first, len(y), self.seed, self.fraction)
            yield x[held], y[held]


class StreamPrepared:
    """A table on disk made ready for training block by block (the streaming counterpart of
    :class:`barenet.cli.fitting.Prepared`).

    Each epoch reads the table once (:class:`EncodedRows`); the validation rows are kept, encoded, in a
    temporary :class:`HeldRows` store from the first epoch on, which :meth:`close` deletes.
    """

    def __init__(self, table: Source, prep: TablePreprocessor, train_rows: int, val_rows: int,
                 notes: list[ColumnWarning], options: argparse.Namespace) -> None:
        self.table, self.prep, self.notes, self.options = table, prep, notes, options
        self.train_rows, self.val_rows = train_rows, val_rows
        self.n_features = len(prep.feature_names)
        self.has_validation = val_rows > 0
        self.held: HeldRows | None = None
        if self.has_validation:
            y_dtype = np.int64 if prep.classes is not None else np.float64
            self.held = HeldRows(len(table.parts), self.n_features, y_dtype)

    def _training(self) -> EncodedRows:
        o = self.options
        return EncodedRows(self.table, self.prep, self.train_rows, o.seed, o.val_split, self.held)

    def _validation(self) -> ValidationRows:
        o = self.options
        return ValidationRows(self.table, self.prep, self.val_rows, o.seed, o.val_split, self.held)

    def fit_data(self) -> tuple[Dataset, None, Dataset | None]:
        train = self._training().shuffle(SHUFFLE_ROWS, seed=self.options.seed)
        train = train.batch(self.options.batch_size).prefetch(process=_FORKS)
        validation = self._validation().batch(PREDICT_ROWS).prefetch() if self.has_validation else None
        return train, None, validation

    def outputs(self, model) -> dict[str, SplitTotals] | None:
        """Totals of each split's predictions for the report; ``None`` when an output is NaN or infinite."""
        totals: dict[str, SplitTotals] = {}
        splits = [("train", self._training())]
        if self.has_validation:
            splits.append(("validation", self._validation()))
        for side, rows in splits:
            split = SplitTotals(self.prep)
            for x, y in rows.batch(PREDICT_ROWS).prefetch():
                with np.errstate(all="ignore"):
                    out = model.predict(x)
                if not np.isfinite(out).all():
                    return None
                split.add(out, y)
            totals[side] = split
        return totals

    def report_splits(self, outputs: dict[str, SplitTotals]) -> dict[str, SplitTotals]:
        return outputs

    def close(self) -> None:
        """Delete the store of validation rows."""
        if self.held is not None:
            self.held.close()


def prepare_stream(table: Source, options: argparse.Namespace) -> StreamPrepared:
    """The preprocessing pass: statistics of every row (:class:`StreamStatistics`) and the split's row counts."""
    import warnings

    from ..preprocessing_stream import StreamStatistics

    stats = StreamStatistics(options.target, task=options.task, scale=options.scale)
    file_index = {file: i for i, file in enumerate(table.files)}
    val_rows = 0
    print(f"barenet: reading {options.data} once to learn the preprocessing", file=sys.stderr, flush=True)
    for block, file, first in located_blocks(table):
        n = len(block[options.target])
        stats.add(block, where(file, first, n), first)
        val_rows += int(validation_rows(file_index[file], first, n, options.seed, options.val_split).sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ColumnWarning)
        prep = stats.preprocessor()
    notes = [w.message for w in caught if isinstance(w.message, ColumnWarning)]
    train_rows = stats.rows - val_rows
    if options.val_split and (val_rows < 1 or train_rows < 1):
        raise DataError(f"--val-split {options.val_split} of {stats.rows} rows leaves {val_rows} for validation and "
                        f"{train_rows} for training; both need at least one")
    return StreamPrepared(table, prep, train_rows, val_rows, notes, options)


def open_training(args: argparse.Namespace) -> Source:
    """The training table's source, reading only the selected columns (checked against its header)."""
    from .fitting import parse_columns, select_columns

    header = table_columns(open_table(args.data))
    selected = select_columns(dict.fromkeys(header), args.target, parse_columns(args.features, "--features"),
                              parse_columns(args.drop, "--drop"))
    return open_table(args.data, columns=list(selected))


# ----------------------------------------------------------------- predict and evaluate
def predict_blocks(model, prep: TablePreprocessor, table: Source, model_path: str, keep: list[str],
                   proba: bool) -> Iterator[dict[str, np.ndarray]]:
    """The output columns of each block: ``keep`` columns as read, the prediction, the probabilities."""
    from .inference import checked_outputs

    for block, file, first in located_blocks(table):
        n = len(next(iter(block.values())))
        try:
            x = prep.transform(block, dtype=model.dtype)
        except DataError as exc:
            raise StreamError(f"{where(file, first, n)}: {exc} (row numbers within these rows)") from None
        outputs = checked_outputs(model, x, model_path)
        columns = {name: block[name] for name in keep}
        columns[prep.target] = prep.decode_target(outputs)
        if proba:
            for j, label in enumerate(prep.classes):
                columns[f"proba_{label}"] = outputs[:, j]
        yield columns


def write_stream(blocks: Iterator[dict[str, np.ndarray]], path: Path | None) -> None:
    """Write column blocks as one CSV (Parquet for .parquet/.pq) as they come, to ``path`` or stdout."""
    import pandas as pd

    from .paths import write_file

    if path is None:
        for i, columns in enumerate(blocks):
            pd.DataFrame(columns).to_csv(sys.stdout, index=False, header=i == 0)
        return
    if path.suffix.lower() in (".parquet", ".pq"):
        def write(target: Path) -> None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            writer = None
            try:
                for columns in blocks:
                    batch = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)
                    writer = writer or pq.ParquetWriter(target, batch.schema)
                    writer.write_table(batch)
            finally:
                if writer is not None:
                    writer.close()
    else:
        def write(target: Path) -> None:
            with open(target, "w", newline="") as handle:
                for i, columns in enumerate(blocks):
                    pd.DataFrame(columns).to_csv(handle, index=False, header=i == 0)
    write_file(path, write, "output file")


def evaluate_totals(model, prep: TablePreprocessor, table: Source, target: str, model_path: str) -> SplitTotals:
    """Totals of the model's predictions against ``target`` over every row of ``table``."""
    from .inference import checked_outputs

    totals = SplitTotals(prep)
    for block, file, first in located_blocks(table):
        n = len(block[target])
        try:
            x = prep.transform(block, dtype=model.dtype)
            y = prep.encode_target(block[target], column=target)
        except DataError as exc:
            raise StreamError(f"{where(file, first, n)}: {exc} (row numbers within these rows)") from None
        totals.add(checked_outputs(model, x, model_path), y)
    return totals
