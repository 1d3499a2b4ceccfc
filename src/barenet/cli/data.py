"""Reading the tables the command line trains on, and writing its outputs.

Formats, by file extension:

* ``.csv`` (and ``.csv.gz`` etc.): read with pandas, header row required.
* ``.parquet`` / ``.pq``: read with pandas through pyarrow.
* ``.npz``: every array is a column. A 1-d array of length ``n`` is one column named after the
  array; a 2-d array ``A`` of shape ``(n, d)`` gives the columns ``A0 .. A{d-1}``. All arrays need
  the same ``n``. So ``numpy.savez(path, X=X, y=y)`` is read as columns ``X0 .. X{d-1}, y`` and
  trained with ``--target y``. Object arrays are refused (they need pickle); store text as a
  fixed-width ``"U"`` array.

A table is returned as a ``dict`` of 1-d NumPy arrays (see :mod:`barenet.preprocessing`):
numeric columns as ``int64``/``bool``/``float64`` (``NaN`` for missing), text columns as object
arrays with ``None`` for missing.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError

Table = dict[str, np.ndarray]


def _format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if ".npz" in suffixes[-1:]:
        return "npz"
    if suffixes[-1:] and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    if ".csv" in suffixes[-2:]:
        return "csv"
    raise DataError(f"cannot tell the format of {str(path)!r} from its extension; expected .csv, .parquet or .npz")


def _columns_from_frame(frame) -> Table:
    import pandas as pd

    table: Table = {}
    for name in frame.columns:
        series = frame[name]
        key = str(name)
        if pd.api.types.is_bool_dtype(series) and not series.isna().any():
            table[key] = series.to_numpy(dtype=bool)
        elif pd.api.types.is_integer_dtype(series) and not series.isna().any():
            table[key] = series.to_numpy(dtype=np.int64)
        elif pd.api.types.is_numeric_dtype(series):
            table[key] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            table[key] = series.astype(object).where(series.notna(), None).to_numpy(dtype=object)
    return table


def _read_npz(path: Path) -> Table:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {str(path)!r} as a NumPy .npz archive: {exc}") from None
    table: Table = {}
    with archive:
        for name in archive.files:
            try:
                array = archive[name]
            except ValueError:
                raise DataError(f"array {name!r} in {str(path)!r} holds Python objects, which need pickle; "
                                "store text as a fixed-width unicode ('U') array") from None
            if array.ndim == 1:
                table[name] = array.astype(object) if array.dtype.kind in "US" else array
            elif array.ndim == 2:
                for j in range(array.shape[1]):
                    table[f"{name}{j}"] = array[:, j]
            else:
                raise DataError(f"array {name!r} in {str(path)!r} has shape {array.shape}; expected 1-d columns "
                                "or a 2-d (rows, columns) block")
    lengths = {name: len(col) for name, col in table.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"arrays in {str(path)!r} have different numbers of rows: {lengths}; expected one length")
    return table


def read_table(path: str | os.PathLike) -> Table:
    """Read a CSV, Parquet or .npz file into columns; raises :class:`DataError` saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist")
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a directory; expected a .csv, .parquet or .npz file")
    kind = _format(path)
    if path.stat().st_size == 0:
        raise DataError(f"data file {str(path)!r} is empty")
    if kind == "npz":
        table = _read_npz(path)
    else:
        import pandas as pd

        try:
            frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
        except pd.errors.EmptyDataError:
            raise DataError(f"data file {str(path)!r} has no columns") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"cannot read {str(path)!r} as text CSV: {exc.reason} at byte {exc.start}") from None
        except Exception as exc:  # pandas and pyarrow raise many types for malformed files
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot read {str(path)!r} as {kind}: {message}") from None
        table = _columns_from_frame(frame)
    if not table:
        raise DataError(f"data file {str(path)!r} has no columns")
    if len(next(iter(table.values()))) == 0:
        raise DataError(f"data file {str(path)!r} has a header but no rows")
    return table


def check_writable(path: str | os.PathLike, force: bool, what: str) -> Path:
    """Refuse to overwrite an existing ``path`` unless ``force``; return it as a :class:`Path`."""
    path = Path(path)
    if path.exists() and not force:
        raise ConfigError(f"{what} {str(path)!r} already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise ConfigError(f"cannot write {what} {str(path)!r}: folder {str(path.parent)!r} does not exist")
    return path


def write_table(columns: dict[str, np.ndarray], path: str | os.PathLike | None) -> None:
    """Write columns as CSV to ``path`` (Parquet when it ends in .parquet/.pq), or to stdout when ``None``."""
    import sys

    import pandas as pd

    frame = pd.DataFrame(columns)
    if path is None:
        frame.to_csv(sys.stdout, index=False)
    elif Path(path).suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
