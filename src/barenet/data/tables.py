"""Blocks of table rows: columns read by pandas or pyarrow as NumPy arrays, and ``(x, y)`` made from them.

A *table block* is a ``dict`` of 1-d NumPy arrays of one length (the form :mod:`barenet.preprocessing`
takes): numeric columns as ``int64``/``bool``/``float64`` (``NaN`` for missing), anything else as an
object array with ``None`` for missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, StreamError

Table = dict[str, np.ndarray]


def frame_columns(frame: Any) -> Table:
    """A pandas DataFrame as a table block."""
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


def arrow_columns(batch: Any) -> Table:
    """A pyarrow RecordBatch or Table as a table block, typed as :func:`frame_columns` types pandas columns."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table: Table = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        kind = column.type
        nulls = column.null_count > 0
        if pa.types.is_boolean(kind) and not nulls:
            table[name] = column.to_numpy(zero_copy_only=False).astype(bool, copy=False)
        elif pa.types.is_integer(kind) and not nulls:
            table[name] = column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) \
                or pa.types.is_decimal(kind):
            table[name] = pc.fill_null(column.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        else:
            values = column.to_numpy(zero_copy_only=False)
            table[name] = values if values.dtype == object else values.astype(object)
            if nulls and values.dtype != object:
                table[name][np.asarray(column.is_null())] = None
    return table


class Selection:
    """Which columns of a table block make ``x``, ``y`` and the sample weights.

    ``target=None``: the element is the table block itself. Otherwise ``(x, y)`` or ``(x, y, w)`` with
    ``x : (rows, len(features))`` float64 of the ``features`` (default: every column but the target and the
    weights, in the table's order), ``y`` the target column and ``w`` the ``sample_weight`` column.
    """

    def __init__(self, features: Sequence[str] | None, target: str | None, sample_weight: str | None) -> None:
        for name, value in (("target", target), ("sample_weight", sample_weight)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a column name, got {value!r}")
        if features is not None and (isinstance(features, str) or not all(isinstance(f, str) for f in features)):
            raise ConfigError(f"features must be a list of column names, got {features!r}")
        if target is None and (features is not None or sample_weight is not None):
            raise ConfigError("features and sample_weight select the columns of (x, y); give target too")
        self.features = None if features is None else list(features)
        self.target, self.sample_weight = target, sample_weight

    def columns(self, available: Sequence[str], source: str) -> list[str]:
        """The columns to read, checked against those ``source`` has."""
        available = list(available)
        if self.target is None:
            return available
        wanted = [self.target, *([self.sample_weight] if self.sample_weight else [])]
        features = self.features if self.features is not None else [c for c in available if c not in wanted]
        missing = [c for c in [*features, *wanted] if c not in available]
        if missing:
            raise StreamError(f"{source} has no column {missing[0]!r}; its columns are {available[:40]}")
        if not features:
            raise StreamError(f"{source}: no feature column is left besides {wanted}")
        self.features = features
        return [*features, *wanted]

    def element(self, table: Table, where: str) -> Any:
        """The element of one table block (``where`` names its file and rows in errors)."""
        if self.target is None:
            return table
        x = np.empty((len(table[self.target]), len(self.features)))
        for j, name in enumerate(self.features):
            x[:, j] = _numbers(table[name], name, where)
        parts = [x, table[self.target]]
        if self.sample_weight:
            parts.append(_numbers(table[self.sample_weight], self.sample_weight, where))
        return tuple(parts)


def _numbers(values: np.ndarray, name: str, where: str) -> np.ndarray:
    if values.dtype.kind in "biuf":
        return values
    try:
        return values.astype(np.float64)
    except (TypeError, ValueError):
        bad = next(i for i, v in enumerate(values.tolist()) if not _is_number(v))
        raise StreamError(f"{where}: column {name!r} holds {values[bad]!r} (row {bad} of the block); bn.data "
                          "reads features as numbers: encode text columns first (map over the table, without "
                          "target=), or train with the barenet command, which one-hot encodes them") from None


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return value is not None
