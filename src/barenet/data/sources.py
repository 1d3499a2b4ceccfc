"""Where a :class:`~barenet.data.Dataset` reads from: arrays in memory, ``.npy`` files mapped from disk,
Parquet and CSV files (one or a folder of them), and Dask collections.

Each source is a list of *parts* read one at a time into blocks of at most ``block_rows`` rows: blocks of
an array, the row groups of Parquet files, the chunks of CSV files, the blocks or partitions of a Dask
collection. A :meth:`~barenet.data.Dataset.shuffle` downstream permutes the parts (CSV files as wholes:
a CSV file can only be read from its start). Reading errors name the file and the rows.

The table sources (Parquet, CSV, Dask DataFrame) give table blocks ``{column: values}``
(see :mod:`barenet.data.tables`), or ``(x, y)`` / ``(x, y, w)`` when ``target`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, StreamError
from .dataset import Dataset, Element, Source, _positive, rows_of, take_rows
from .tables import Selection, arrow_columns, frame_columns

#: Rows of one block, by default: large enough that the per-block overhead is small, small enough to bound memory.
BLOCK_ROWS = 65536


def _structure(x: Any, y: Any, sample_weight: Any) -> Element:
    if y is None:
        if sample_weight is not None:
            raise ConfigError("sample_weight needs y")
        return x
    return (x, y) if sample_weight is None else (x, y, sample_weight)


class _Arrays(Source):
    def __init__(self, element: Element, block_rows: int, name: str) -> None:
        super().__init__()
        self.element, self.name = element, name
        self.rows = rows_of(element)
        self.parts = [slice(start, min(start + block_rows, self.rows)) for start in range(0, self.rows, block_rows)]

    def read(self, part: slice) -> Iterator[Element]:
        yield _copy(take_rows(self.element, part))


def _copy(element: Element) -> Element:
    """A block that owns its memory (rows of a memory map are read from disk here)."""
    if isinstance(element, dict):
        return {k: _copy(v) for k, v in element.items()}
    if isinstance(element, (tuple, list)):
        return type(element)(_copy(v) for v in element)
    return np.array(element)


def from_arrays(x: Any, y: Any = None, sample_weight: Any = None, *, block_rows: int = BLOCK_ROWS) -> Dataset:
    """A dataset of arrays in memory: elements ``x``, ``(x, y)`` or ``(x, y, sample_weight)``.

    ``x`` is an array ``(n, ...)``, or a list or dict of arrays (a model of several inputs); its blocks are
    ``block_rows`` rows (copies, so a later change to the arrays does not reach a pass already read).
    """
    def as_arrays(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: np.asarray(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [np.asarray(v) for v in value]
        return None if value is None else np.asarray(value)

    element = _structure(as_arrays(x), as_arrays(y), as_arrays(sample_weight))
    return _Arrays(element, _positive(block_rows, "block_rows"), "from_arrays(...)")


def from_npy(x: str | os.PathLike, y: str | os.PathLike | None = None,
             sample_weight: str | os.PathLike | None = None, *, block_rows: int = BLOCK_ROWS) -> Dataset:
    """A dataset of ``.npy`` files mapped from disk (``numpy.load(mmap_mode="r")``): only the blocks being
    used are in memory. Elements as for :func:`from_arrays`; the files must have the same number of rows."""
    paths = {"x": x, "y": y, "sample_weight": sample_weight}
    arrays = {name: _load_npy(path) for name, path in paths.items() if path is not None}
    counts = {name: len(a) for name, a in arrays.items()}
    if len(set(counts.values())) > 1:
        raise DataError("the .npy files have different numbers of rows: "
                        + ", ".join(f"{name} {str(paths[name])!r}: {n}" for name, n in counts.items()))
    element = _structure(arrays["x"], arrays.get("y"), arrays.get("sample_weight"))
    return _Arrays(element, _positive(block_rows, "block_rows"), f"from_npy({str(x)!r})")


def _load_npy(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f".npy file {str(path)!r} does not exist" if not path.exists()
                        else f"{str(path)!r} is not a file; expected a .npy file")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # a damaged header makes NumPy's parser raise SyntaxError, TokenError and others
        raise DataError(f"cannot read {str(path)!r} as a .npy file: {_first_line(exc)}") from None
    if not isinstance(array, np.ndarray) or array.ndim == 0:
        raise DataError(f"{str(path)!r} holds {type(array).__name__}; expected one .npy array of shape (rows, ...)")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{str(path)!r} holds {array.dtype} values; expected numbers")
    return array


def _files(path: str | os.PathLike | Sequence[str | os.PathLike], suffixes: tuple[str, ...],
           what: str) -> list[Path]:
    """The files of ``path``: one file, the files of a list, or the files under a folder (sorted by path)."""
    if isinstance(path, (list, tuple)):
        files = [Path(p) for p in path]
    else:
        root = Path(path)
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))
                           and any(p.name.lower().endswith(s) for s in suffixes))
            if not files:
                raise DataError(f"folder {str(root)!r} holds no {what} files (names ending in {', '.join(suffixes)})")
        else:
            files = [root]
    for file in files:
        if not file.exists():
            raise DataError(f"{what} file {str(file)!r} does not exist")
        if not file.is_file():
            raise DataError(f"{str(file)!r} is not a file; expected a {what} file or a folder of them")
    if not files:
        raise DataError(f"no {what} files given")
    return files


# ----------------------------------------------------------------- Parquet
class _Parquet(Source):
    def __init__(self, path: Any, columns: Sequence[str] | None, selection: Selection, block_rows: int) -> None:
        import pyarrow.parquet as pq

        super().__init__()
        self.files = _files(path, (".parquet", ".pq"), "Parquet")
        self.name = f"from_parquet({str(path)!r})"
        self.selection, self.block_rows = selection, block_rows
        self.parts, self.rows = [], 0
        reference = None
        for file in self.files:
            try:
                meta = pq.ParquetFile(file).metadata
                schema = meta.schema.to_arrow_schema()
            except Exception as exc:  # pyarrow raises ArrowInvalid, OSError and others for a damaged file
                raise DataError(f"cannot read {str(file)!r} as Parquet: {_first_line(exc)}") from None
            if reference is None:
                names = list(columns) if columns is not None else list(schema.names)
                absent = [c for c in names if c not in schema.names]
                if absent:
                    raise DataError(f"{str(file)!r} has no column {absent[0]!r}; its columns are {schema.names[:40]}")
                self.columns = selection.columns(names, repr(str(file)))
                reference = (file, {c: schema.field(c).type for c in self.columns})
            else:
                _same_schema(reference, file, schema)
            start = 0
            for group in range(meta.num_row_groups):
                n = meta.row_group(group).num_rows
                if n:
                    self.parts.append((file, group, start, n))
                start += n
            self.rows += meta.num_rows

    def read(self, part):
        import pyarrow.parquet as pq

        file, group, start, n = part
        where = f"{str(file)!r}, row group {group} (rows {start}-{start + n - 1} of the file)"
        try:
            reader = pq.ParquetFile(file)
            schema = reader.schema_arrow
            batches = reader.iter_batches(batch_size=self.block_rows, row_groups=[group], columns=self.columns,
                                          use_threads=False)
            for batch in batches:
                if batch.schema.names != self.columns:
                    _same_schema((self.files[0], {}), file, schema)
                yield self.selection.element(arrow_columns(batch), where)
        except (StreamError, GeneratorExit):
            raise
        except Exception as exc:  # a file changed or damaged since the dataset was made
            raise StreamError(f"cannot read {where}: {_first_line(exc)}") from None


def _same_schema(reference: tuple[Path, dict[str, Any]], file: Path, schema: Any) -> None:
    first, types = reference
    for name, kind in types.items():
        if name not in schema.names:
            raise DataError(f"Parquet file {str(file)!r} has no column {name!r}, which {str(first)!r} has; the files "
                            "of a folder must share their columns")
        if schema.field(name).type != kind:
            raise DataError(f"column {name!r} is {schema.field(name).type} in {str(file)!r} but {kind} in "
                            f"{str(first)!r}; the files of a folder must share their column types")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def from_parquet(path: str | os.PathLike | Sequence[str | os.PathLike], *, columns: Sequence[str] | None = None,
                 target: str | None = None, features: Sequence[str] | None = None, sample_weight: str | None = None,
                 block_rows: int = BLOCK_ROWS) -> Dataset:
    """A dataset of a Parquet file, a list of them, or a folder of them (every ``*.parquet``/``*.pq`` below it,
    by path), read by row groups through pyarrow in blocks of at most ``block_rows`` rows.

    The files' footers are read at once: the row count is known and a file whose columns or types differ from
    the first file's is refused before any pass. Elements: table blocks of ``columns`` (default: all), or, with
    ``target``, ``(x, y[, w])`` (see :class:`barenet.data.tables.Selection`).
    """
    return _Parquet(path, columns, Selection(features, target, sample_weight), _positive(block_rows, "block_rows"))


# ----------------------------------------------------------------- CSV
class _Csv(Source):
    def __init__(self, path: Any, columns: Sequence[str] | None, selection: Selection, block_rows: int) -> None:
        super().__init__()
        self.files = _files(path, (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zst"), "CSV")
        self.name = f"from_csv({str(path)!r})"
        self.selection, self.block_rows = selection, block_rows
        header = _csv_header(self.files[0])
        names = list(columns) if columns is not None else header
        absent = [c for c in names if c not in header]
        if absent:
            raise DataError(f"{str(self.files[0])!r} has no column {absent[0]!r}; its columns are {header[:40]}")
        self.header = header
        self.columns = selection.columns(names, repr(str(self.files[0])))
        self.parts = list(self.files)
        self.rows = None

    def read(self, file: Path):
        import pandas as pd

        if file != self.files[0] and _csv_header(file) != self.header:
            raise StreamError(f"CSV file {str(file)!r} has the columns {_csv_header(file)[:40]}, but "
                              f"{str(self.files[0])!r} has {self.header[:40]}; the files must share their header")
        start = 0
        try:
            # no usecols: with it pandas silently drops a row's extra fields instead of refusing the row
            chunks = pd.read_csv(file, chunksize=self.block_rows)
            with chunks:
                for frame in chunks:
                    frame = frame[self.columns]
                    where = f"{str(file)!r}, rows {start + 1}-{start + len(frame)} (after the header)"
                    start += len(frame)
                    yield self.selection.element(frame_columns(frame), where)
        except (StreamError, GeneratorExit):
            raise
        except UnicodeDecodeError as exc:
            raise StreamError(f"cannot read {str(file)!r} after row {start} as UTF-8: byte "
                              f"{exc.object[exc.start]:#04x} is not UTF-8; convert the file to UTF-8") from None
        except Exception as exc:  # pandas and the decompressors raise many types for malformed files
            raise StreamError(f"cannot read {str(file)!r} after row {start} (of the data, header excluded): "
                              f"{_first_line(exc)}") from None


def _csv_header(file: Path) -> list[str]:
    import pandas as pd

    try:
        return [str(c) for c in pd.read_csv(file, nrows=0).columns]
    except pd.errors.EmptyDataError:
        raise DataError(f"CSV file {str(file)!r} is empty; expected a header row") from None
    except Exception as exc:
        raise DataError(f"cannot read the header of {str(file)!r} as CSV: {_first_line(exc)}") from None


def from_csv(path: str | os.PathLike | Sequence[str | os.PathLike], *, columns: Sequence[str] | None = None,
             target: str | None = None, features: Sequence[str] | None = None, sample_weight: str | None = None,
             block_rows: int = BLOCK_ROWS) -> Dataset:
    """A dataset of a CSV file (with a header row; ``.gz``, ``.bz2``, ``.xz`` read as such), a list of them, or a
    folder of them, read by pandas in chunks of ``block_rows`` rows.

    The files must share their header. The number of rows is not known before a pass (``rows`` is None; see
    :meth:`~barenet.data.Dataset.with_rows`). Elements as for :func:`from_parquet`. A row with a field too many,
    a broken compressed stream or a text that is not UTF-8 raises :class:`~barenet.errors.StreamError` naming
    the file and the rows read before it.
    """
    return _Csv(path, columns, Selection(features, target, sample_weight), _positive(block_rows, "block_rows"))


# ----------------------------------------------------------------- Dask
class _DaskArrays(Source):
    in_process_only = True  # a Dask client's connection does not survive a fork

    def __init__(self, x: Any, y: Any, sample_weight: Any) -> None:
        super().__init__()
        self.name = "from_dask(dask array)"
        if x.ndim == 0:
            raise DataError("from_dask needs an array with a row axis; got a 0-d Dask array")
        self.x = x
        chunks = x.chunks[0]
        self.rows = None if any(np.isnan(c) for c in chunks) else int(sum(chunks))
        others = [v for v in (y, sample_weight) if v is not None]
        self.others = [self._align(v) for v in others]
        self.parts = list(range(x.numblocks[0]))
        self.shape = (y is not None, sample_weight is not None)

    def _align(self, value: Any) -> Any:
        if hasattr(value, "rechunk") and hasattr(value, "chunks"):
            if value.shape[0] != self.x.shape[0] and not np.isnan(value.shape[0]):
                raise DataError(f"x has {self.x.shape[0]} rows but y or sample_weight {value.shape[0]}")
            return value.rechunk({0: self.x.chunks[0]})
        import dask.array as da

        value = np.asarray(value)
        if self.rows is not None and len(value) != self.rows:
            raise DataError(f"x has {self.rows} rows but y or sample_weight {len(value)}")
        return da.from_array(value, chunks=(self.x.chunks[0], *value.shape[1:]))

    def read(self, i: int):
        import dask

        index = (i,) + (slice(None),) * (self.x.ndim - 1)
        parts = [self.x.blocks[index], *(v.blocks[(i,) + (slice(None),) * (v.ndim - 1)] for v in self.others)]
        try:
            values = [np.asarray(v) for v in dask.compute(*parts)]
        except Exception as exc:  # anything a task or the cluster raises
            raise StreamError(f"{self.name}: computing block {i} failed: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from exc
        yield values[0] if len(values) == 1 else tuple(values)


class _DaskFrame(Source):
    in_process_only = True  # a Dask client's connection does not survive a fork

    def __init__(self, frame: Any, selection: Selection) -> None:
        super().__init__()
        self.name = "from_dask(dask DataFrame)"
        self.frame, self.selection = frame, selection
        self.columns = selection.columns([str(c) for c in frame.columns], "the Dask DataFrame")
        self.parts = list(range(frame.npartitions))
        self.rows = None

    def read(self, i: int):
        try:
            part = self.frame.partitions[i].compute()
        except Exception as exc:
            raise StreamError(f"{self.name}: computing partition {i} failed: {type(exc).__name__}: "
                              f"{_first_line(exc)}") from exc
        part.columns = [str(c) for c in part.columns]
        yield self.selection.element(frame_columns(part[self.columns]), f"the Dask DataFrame, partition {i}")


def from_dask(data: Any, y: Any = None, sample_weight: Any = None, *, target: str | None = None,
              features: Sequence[str] | None = None, weight_column: str | None = None) -> Dataset:
    """A dataset of a Dask array or DataFrame, computed one block (partition) at a time, as the pass reaches it.

    On a ``dask.distributed`` cluster the blocks are computed by the workers and only the block in use (and
    those ``prefetch`` holds) travels to the training process. A Dask array ``data : (n, ...)`` gives
    ``data``'s row blocks, with ``y`` and ``sample_weight`` (Dask or NumPy arrays) cut to the same rows. A
    Dask DataFrame gives table blocks, or ``(x, y[, w])`` with ``target`` (and ``features``, ``weight_column``)
    as for :func:`from_parquet`.
    """
    if hasattr(data, "npartitions") and hasattr(data, "columns"):
        if y is not None or sample_weight is not None:
            raise ConfigError("a Dask DataFrame names its columns: pass target=, features= and weight_column=")
        return _DaskFrame(data, Selection(features, target, weight_column))
    if hasattr(data, "blocks") and hasattr(data, "chunks"):
        if target is not None or features is not None or weight_column is not None:
            raise ConfigError("target, features and weight_column select DataFrame columns; a Dask array takes "
                              "y and sample_weight")
        return _DaskArrays(data, y, sample_weight)
    raise ConfigError(f"from_dask takes a Dask array or DataFrame, got {type(data).__name__}")
