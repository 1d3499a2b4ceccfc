"""Fitting a :class:`~barenet.preprocessing.TablePreprocessor` in one pass over blocks of a table.

A table too large for memory is read block by block (a chunk of a CSV file, a row group of a Parquet file);
:class:`StreamStatistics` keeps, per column, what fitting needs and nothing more, and
:meth:`StreamStatistics.preprocessor` makes the fitted preprocessor. The rules are those of
:meth:`TablePreprocessor.fit <barenet.preprocessing.TablePreprocessor.fit>`, with the same
:class:`~barenet.preprocessing.ColumnWarning` decisions (made from counts by
:func:`~barenet.preprocessing.column_warning`), and give the same state to rounding:

* numeric columns: count, mean and the sum of squared deviations, merged block by block with Chan et al.'s
  pairwise update (for blocks ``a``, ``b`` with ``delta = mean_b - mean_a``:
  :math:`M_2 = M_{2,a} + M_{2,b} + \\delta^2 n_a n_b / (n_a + n_b)`), so ``std = sqrt(M2 / n)``; min and max;
* text columns: the set of categories, the number of present values and of values with units;
* the target: its labels (classification) or its mean and spread (regression), and what ``task="auto"`` needs.

Differences from fitting a whole table, both refused with a :class:`~barenet.errors.StreamError` naming the
column and the rows: a column must be numbers in every block or text in every block (a whole table decides
once), and a text column may hold at most :data:`MAX_CATEGORIES` distinct values (an identifier column of
millions of rows would otherwise fill memory; it is one-hot useless anyway).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import DataError, StreamError
from .preprocessing import (
    MAX_AUTO_CLASSES,
    TablePreprocessor,
    _category,
    _is_missing,
    _to_json_scalar,
    column_warning,
    did_you_mean,
    has_unit,
    numeric_values,
    preview,
)

#: Distinct values a text column (or a classification target) may have when fitting from a stream.
MAX_CATEGORIES = 100_000


class _Moments:
    """Count, mean, sum of squared deviations, min and max of numbers seen block by block."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0
        self.low, self.high = math.inf, -math.inf

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        n_b, mean_b = len(x), float(x.mean())
        m2_b = float(np.square(x - mean_b).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.n * n_b / n
        self.n = n
        self.low, self.high = min(self.low, float(x.min())), max(self.high, float(x.max()))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.n) if self.n else 0.0


class _Text:
    """Categories of a text column, with the counts :func:`column_warning` decides from."""

    def __init__(self) -> None:
        self.categories: set[str] = set()
        self.present = self.with_units = 0
        self.example: str | None = None

    def add(self, values: np.ndarray, name: str, where: str) -> None:
        counts = Counter(values.tolist())  # then without the missing values: C's counting, not a Python loop
        for missing in [v for v in counts if _is_missing(v)]:
            del counts[missing]
        self.present += sum(counts.values())
        for value, count in counts.items():
            if has_unit(value):
                self.with_units += count
                if self.example is None:
                    self.example = value
            self.categories.add(_category(value))
        if len(self.categories) > MAX_CATEGORIES:
            raise StreamError(f"{where}: column {name!r} has more than {MAX_CATEGORIES} distinct values, like an "
                              f"identifier; a one-hot encoding of it cannot be learned from: leave it out (--drop "
                              f"{name})")


class StreamStatistics:
    """What fitting a :class:`TablePreprocessor` needs, gathered from table blocks one at a time.

    ``add(block, where, first_row)`` takes a block ``{column: (rows,) array}`` (the columns of the first block
    fix the columns), ``where`` naming its file and rows in errors and ``first_row`` the position of its first
    row in its file (rows in messages count from 0 after the header, as for a whole table).
    """

    def __init__(self, target: str, task: str = "auto", scale: str = "standard") -> None:
        TablePreprocessor(target, task, scale)  # checks task and scale
        self.target, self.task, self.scale = target, task, scale
        self.columns: list[str] | None = None
        self.kinds: dict[str, str] = {}
        self.numbers: dict[str, _Moments] = {}
        self.texts: dict[str, _Text] = {}
        self.rows = 0
        self.labels: set[Any] = set()
        self.target_moments = _Moments()
        self.target_text = False
        self.target_bool = True
        self.integral = True

    def add(self, block: Mapping[str, np.ndarray], where: str, first_row: int = 0) -> None:
        if self.columns is None:
            names = list(block)
            if self.target not in names:
                raise DataError(f"no column named {self.target!r}{did_you_mean([self.target], names)}; the "
                                f"columns are {preview(names, 40)}")
            self.columns = [name for name in names if name != self.target]
            if not self.columns:
                raise DataError(f"the table has only the target column {self.target!r}; expected feature columns too")
        try:
            for name in self.columns:
                self._add_column(name, np.asarray(block[name]), where, first_row)
            self._add_target(np.asarray(block[self.target]), first_row)
        except StreamError:
            raise
        except DataError as exc:
            raise StreamError(f"{where}: {exc}") from None
        self.rows += len(block[self.target])

    def _add_column(self, name: str, values: np.ndarray, where: str, first_row: int) -> None:
        kind = self.kinds.get(name)
        if kind == "categorical" and values.dtype.kind == "f" and np.isnan(values).all():
            return  # a block where a text column is all missing reads as float NaN
        numbers = numeric_values(name, values, first_row=first_row)
        new = "categorical" if numbers is None else "numeric"
        if kind is not None and kind != new:
            raise StreamError(f"{where}: column {name!r} holds {'text' if numbers is None else 'numbers only'} here "
                              f"but {'numbers' if kind == 'numeric' else 'text'} in earlier rows; expected one kind "
                              "of value in a column (fix the values, or --drop it)")
        self.kinds[name] = new
        if numbers is None:
            self.texts.setdefault(name, _Text()).add(values, name, where)
        else:
            self.numbers.setdefault(name, _Moments()).add(numbers)

    def _add_target(self, values: np.ndarray, first_row: int) -> None:
        name = self.target
        if values.dtype.kind == "f":
            missing = np.flatnonzero(np.isnan(values))
        elif values.dtype.kind in "OUS":
            missing = np.flatnonzero([_is_missing(v) for v in values.tolist()])
        else:
            missing = []
        if len(missing):
            raise DataError(f"target column {name!r} has {len(missing)} missing values (first in row "
                            f"{first_row + int(missing[0])}); expected a value in every row")
        self.target_bool = self.target_bool and values.dtype.kind == "b"
        uniques = np.unique(values) if values.dtype.kind in "biuf" else list(dict.fromkeys(values.tolist()))
        if len(self.labels) <= MAX_CATEGORIES:
            self.labels.update(_to_json_scalar(v) for v in (uniques.tolist() if isinstance(uniques, np.ndarray)
                                                            else uniques))
        if self.target_text:
            return
        numbers = numeric_values(name, values, allow_missing=True, first_row=first_row)
        if numbers is None:
            if self.target_moments.n:
                raise DataError(f"target column {name!r} holds text from row {first_row} on but numbers before; "
                                "expected one kind of value")
            self.target_text = True
            return
        self.integral = self.integral and bool(np.all(numbers == np.round(numbers)))
        self.target_moments.add(numbers)

    def _task(self) -> str:
        if self.task != "auto":
            return self.task
        if self.target_text or self.target_bool:
            return "classification"
        return "classification" if self.integral and len(self.labels) <= MAX_AUTO_CLASSES else "regression"

    def preprocessor(self) -> TablePreprocessor:
        """The fitted preprocessor; issues the :class:`~barenet.preprocessing.ColumnWarning` s, column by column."""
        if self.columns is None or self.rows == 0:
            raise DataError("the table has no rows; expected at least one sample")
        prep = TablePreprocessor(self.target, self.task, self.scale)
        task = self._task()
        if task == "classification":
            if len(self.labels) > MAX_CATEGORIES:
                raise DataError(f"target column {self.target!r} has more than {MAX_CATEGORIES} distinct labels; "
                                "expected classes (or --task regression)")
            classes = sorted(self.labels, key=lambda c: (isinstance(c, str), c))
            if len(classes) < 2:
                raise DataError(f"target column {self.target!r} has a single class {classes[0]!r}; "
                                "classification needs at least two")
            prep.classes = classes
        else:
            if self.target_text:
                raise DataError(f"target column {self.target!r} holds text; regression needs numbers "
                                "(use --task classification for labels)")
            prep.classes = None
            prep.target_center = self.target_moments.mean
            prep.target_scale = self.target_moments.std or 1.0
        prep.task = task
        for name in self.columns:
            if name in self.texts or name not in self.numbers:
                text = self.texts.get(name, _Text())
                categories = sorted(text.categories)
                warning = column_warning(name, text.present, text.with_units, text.example, len(categories))
                if warning is not None:
                    warnings.warn(warning, stacklevel=2)
                prep.columns.append({"name": name, "kind": "categorical", "categories": categories})
                continue
            moments = self.numbers[name]
            if self.scale == "standard":
                center, spread = moments.mean, moments.std
            elif self.scale == "minmax":
                center, spread = moments.low, moments.high - moments.low
            else:
                center, spread = 0.0, 1.0
            prep.columns.append({"name": name, "kind": "numeric", "center": float(center),
                                 "scale": float(spread) if spread > 0 else 1.0})
        prep.fitted = True
        return prep
