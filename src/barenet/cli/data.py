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

from ..data.tables import frame_columns
from ..errors import DataError

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


#: separators people use in place of the comma, by the name a message gives them
_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _first_bytes(path: Path, size: int = 65536) -> bytes:
    """The first ``size`` bytes of a CSV file, decompressed when its name ends in .gz, .bz2 or .xz."""
    import bz2
    import gzip
    import lzma

    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as handle:
            return handle.read(size)
    except (OSError, EOFError, lzma.LZMAError):  # a hint is best effort; the caller's message stands without it
        return b""


def _separator_hint(path: Path) -> str | None:
    """A hint when the header row is split by ``;``, tabs or ``|`` rather than commas, else ``None``."""
    header = _first_bytes(path).decode("latin-1").splitlines()[:1]
    header = header[0] if header else ""
    counts = {sep: header.count(sep) for sep in _SEPARATORS}
    sep = max(counts, key=counts.get)
    if counts[sep] == 0 or header.count(",") >= counts[sep]:
        return None
    return (f"its header row is separated by {_SEPARATORS[sep]}, not commas; barenet reads comma-separated "
            "files: save it as CSV with commas (and '.' as the decimal point)")


def _encoding_hint(path: Path) -> str:
    """What to do with a CSV file that is not UTF-8 (most often Latin-1 / Windows-1252 from a spreadsheet)."""
    if _first_bytes(path, 2) in (b"\xff\xfe", b"\xfe\xff"):
        return (f"it starts with a UTF-16 byte order mark; convert it to UTF-8, e.g. iconv -f utf-16 -t utf-8 "
                f"{str(path)!r} > utf8.csv")
    return ("it looks like a Latin-1 or Windows-1252 file (as spreadsheets save 'CSV'); convert it to UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8 {str(path)!r} > utf8.csv, or save it as 'CSV UTF-8'")


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
            raise DataError(f"cannot read {str(path)!r} as UTF-8 text: byte {exc.object[exc.start]:#04x} at offset "
                            f"{exc.start} is not UTF-8; {_encoding_hint(path)}") from None
        except ImportError as exc:  # no parquet engine
            raise DataError(f"cannot read {str(path)!r} as {kind}: {exc}; install the command line's "
                            'dependencies with: pip install "barenet[cli]"') from None
        except Exception as exc:  # pandas and pyarrow raise many types for malformed files
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = _separator_hint(path) if kind == "csv" else None
            raise DataError(f"cannot read {str(path)!r} as {kind}: {message}" + (f"; {hint}" if hint else "")) from None
        if kind == "csv" and frame.shape[1] == 1:
            hint = _separator_hint(path)
            if hint:
                raise DataError(f"{str(path)!r} reads as one column named {str(frame.columns[0])!r}; {hint}")
        table = frame_columns(frame)
    if not table:
        raise DataError(f"data file {str(path)!r} has no columns")
    if len(next(iter(table.values()))) == 0:
        raise DataError(f"data file {str(path)!r} has a header but no rows")
    return table


def write_table(columns: dict[str, np.ndarray], path: str | os.PathLike | None) -> None:
    """Write columns as CSV to ``path`` (Parquet when it ends in .parquet/.pq), or to stdout when ``None``.

    A file is written whole or not at all (see :func:`barenet.cli.paths.write_file`).
    """
    import sys

    import pandas as pd

    from .paths import write_file

    frame = pd.DataFrame(columns)
    if path is None:
        frame.to_csv(sys.stdout, index=False)
    elif Path(path).suffix.lower() in (".parquet", ".pq"):
        write_file(path, lambda target: frame.to_parquet(target, index=False), "output file")
    else:
        write_file(path, lambda target: frame.to_csv(target, index=False), "output file")
