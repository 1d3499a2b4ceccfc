"""Turning a table of named columns into the float matrix a network trains on, and back.

A :class:`TablePreprocessor` is fitted on the training table and then applies exactly the same
encoding to any later table: numeric feature columns are scaled with statistics of the training
data only, non-numeric columns are one-hot encoded, and class labels are mapped to indices
``0 .. k-1`` and back. Its state is plain JSON (:meth:`TablePreprocessor.to_json`), which the
``barenet`` command stores in ``model.metadata`` so ``predict`` and ``evaluate`` repeat it exactly.

A table is any mapping from column name to a 1-d NumPy array of one length (a ``dict`` of arrays;
the command line converts pandas frames to that). Missing values are ``NaN`` in float columns
and ``None`` in object columns.

Rules
-----
* A column is *numeric* when its dtype is boolean, integer or float, or when it holds objects
  that all parse as numbers. An object column in which more than half the present values parse
  as numbers is taken to be a numeric column with typos, and is refused with the first bad value.
* Numeric feature columns may not have missing values. Categorical columns may: a missing value,
  like a category unseen in training, encodes as all zeros.
* A text column whose values are nearly all distinct (more than :data:`IDENTIFIER_SHARE` of its rows
  and more than :data:`MAX_AUTO_CLASSES` values, e.g. dates or names) or that holds numbers with units
  (``"4.7 m/s"``) is still one-hot encoded, with a :class:`ColumnWarning` naming it: such a column
  becomes one input per distinct value that a network can memorize rows with but not generalize from.
* ``task="auto"`` picks classification when the target is non-numeric, boolean, or integer-valued
  with at most :data:`MAX_AUTO_CLASSES` distinct values; otherwise regression.
* Regression targets are standardized for training (:meth:`encode_target`) and restored by
  :meth:`decode_target`.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ConfigError, DataError

#: ``task="auto"`` treats an integer-valued target with at most this many distinct values as class labels.
MAX_AUTO_CLASSES = 20
SCALERS = ("standard", "minmax", "none")
TASKS = ("auto", "classification", "regression")
FORMAT_VERSION = 1
#: A text column with more distinct values than this share of its rows looks like an identifier.
IDENTIFIER_SHARE = 0.9
#: A number followed by a unit: ``"4.7 m/s"``, ``"12km"``, ``"30 %"``.
_NUMBER_WITH_UNIT = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*[^\d\s.,;:+-][^\d]*")


class ColumnWarning(UserWarning):
    """A feature column that is encoded as asked but is probably not what the user meant to train on.

    ``column`` is the column's name.
    """

    def __init__(self, message: str, column: str) -> None:
        super().__init__(message)
        self.column = column

Table = Mapping[str, np.ndarray]


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _parse_number(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_json_scalar(value: Any) -> Any:
    """A NumPy or Python scalar as the JSON type that compares equal to it."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def preview(items: Sequence[Any], limit: int = 10) -> str:
    """``items`` as a list literal, shortened to ``limit`` entries with a count of the rest."""
    items = list(items)
    shown = ", ".join(repr(item) for item in items[:limit])
    return f"[{shown}, ... ({len(items) - limit} more)]" if len(items) > limit else f"[{shown}]"


def _closest(name: str, names: Sequence[str]) -> str | None:
    """The one of ``names`` that ``name`` most likely meant: the same letters in another case, else the
    closest spelling (ignoring case), else ``None``."""
    folded = {}
    for candidate in names:
        folded.setdefault(str(candidate).lower(), candidate)
    if name.lower() in folded:
        return folded[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(folded), n=1, cutoff=0.75)
    return folded[close[0]] if close else None


def did_you_mean(unknown: Sequence[str], names: Sequence[str]) -> str:
    """``" (did you mean 'weather'?)"`` for column names the user gave that a table lacks, when a column of
    ``names`` is close to one (``" (did you mean 'a' for 'A', 'b' for 'B'?)"`` for several); else ``""``."""
    pairs = [(u, match) for u in unknown if (match := _closest(u, names)) is not None]
    if not pairs:
        return ""
    if len(unknown) == 1:
        return f" (did you mean {pairs[0][1]!r}?)"
    return " (did you mean " + ", ".join(f"{match!r} for {u!r}" for u, match in pairs) + "?)"


def _category(value: Any) -> str:
    return str(_to_json_scalar(value))


def _text_counts(items: list[Any]) -> Counter | None:
    """How often each value occurs when every value is text or ``None`` (the columns read from CSV and Parquet
    files); ``None`` otherwise, for the callers' value-by-value path.

    The distinct values stand for their rows exactly: text equals only equal text (``1``, ``1.0`` and ``True``
    would share a key, but are not text).
    """
    try:
        counts = Counter(items)
    except TypeError:  # unhashable values (arrays from a list column)
        return None
    if all(type(v) is str or v is None for v in counts):
        return counts
    return None


def numeric_values(name: str, values: np.ndarray, *, allow_missing: bool = False,
                   first_row: int = 0) -> np.ndarray | None:
    """``values`` as float64, or ``None`` when the column is categorical (text).

    Raises :class:`DataError` for a column that is mostly numbers with some text in it, and for
    missing numeric values unless ``allow_missing``; rows in messages count from ``first_row`` (the
    position of ``values[0]`` in its table, for a block of a larger one).
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise DataError(f"column {name!r} has shape {values.shape}; expected one value per row")
    if values.dtype.kind in "biuf":
        out = values.astype(np.float64)
    elif values.dtype.kind in "OUS":
        items = values.tolist()
        counts = _text_counts(items)
        if counts is None:  # values other than text: parsed one by one
            present = [(i, v) for i, v in enumerate(items) if not _is_missing(v)]
            parsed = [(i, v, _parse_number(v)) for i, v in present]
            bad = [(i, v) for i, v, number in parsed if number is None]
            n_present, n_bad = len(parsed), len(bad)
        else:  # text: each distinct value parsed once
            numbers = {v: math.nan if v is None else _parse_number(v) for v in counts}
            n_present = len(items) - counts.get(None, 0)
            n_bad = sum(n for v, n in counts.items() if numbers[v] is None)
        if n_bad and n_bad * 2 >= n_present:  # all, or most, of the present values are text
            return None
        if n_bad:
            row, value = bad[0] if counts is None else next((i, v) for i, v in enumerate(items) if numbers[v] is None)
            row += first_row
            raise DataError(f"column {name!r} is numeric but row {row} holds {value!r} ({n_bad} non-numeric "
                            "values in all); expected numbers only")
        if counts is None:
            out = np.full(len(values), np.nan)
            for i, _, number in parsed:
                out[i] = number
        else:
            out = np.fromiter(map(numbers.__getitem__, items), dtype=np.float64, count=len(items))
    else:
        raise DataError(f"column {name!r} has unsupported type {values.dtype}; expected numbers or text")
    if not allow_missing and np.isnan(out).any():
        row = first_row + int(np.flatnonzero(np.isnan(out))[0])
        raise DataError(f"column {name!r} has {int(np.isnan(out).sum())} missing values (first in row {row}); "
                        "expected none: fill or drop them first")
    if np.isinf(out).any():
        raise DataError(f"column {name!r} holds infinite values; expected finite numbers")
    return out


def infer_task(values: np.ndarray, name: str = "target") -> str:
    """``"classification"`` or ``"regression"`` by the rule in the module docstring; ``name`` is the
    column's name for error messages."""
    values = np.asarray(values)
    if values.dtype.kind == "b":
        return "classification"
    numbers = numeric_values(name, values, allow_missing=True)
    if numbers is None:
        return "classification"
    present = numbers[~np.isnan(numbers)]
    integral = bool(np.all(present == np.round(present)))
    return "classification" if integral and len(np.unique(present)) <= MAX_AUTO_CLASSES else "regression"


def column_warning(name: str, present: int, with_units: int, example: str | None,
                   categories: int) -> ColumnWarning | None:
    """The :class:`ColumnWarning` for a text column, decided from counts, or ``None`` (rules in the module docstring).

    ``present``: rows with a value; ``with_units``: those that read as a number with a unit, ``example`` the
    first of them; ``categories``: distinct values. Fitting on a whole table and on a stream of blocks
    (:mod:`barenet.preprocessing_stream`) both decide here.
    """
    if present and with_units * 10 >= present * 9:
        return ColumnWarning(
            f"column {name!r} holds numbers with units such as {example!r}, so it is encoded as text "
            f"({categories} one-hot inputs); strip the units to use it as numbers, or leave it out", name)
    if categories > MAX_AUTO_CLASSES and categories > IDENTIFIER_SHARE * present:
        return ColumnWarning(
            f"column {name!r} has {categories} distinct values in {present} rows, like an identifier "
            f"or a date; one-hot encoded it becomes {categories} inputs that let the network memorize rows "
            "instead of learning: leave it out, or turn it into numbers (e.g. day of year) first", name)
    return None


def has_unit(value: Any) -> bool:
    """Whether ``value`` is text that reads as a number followed by a unit (``"4.7 m/s"``)."""
    return isinstance(value, str) and _NUMBER_WITH_UNIT.fullmatch(value) is not None


def _warn_if_suspicious(name: str, present: list[Any], categories: list[str]) -> None:
    """Issue the :func:`column_warning` of a text column's present values."""
    with_units = [v for v in present if has_unit(v)]
    warning = column_warning(name, len(present), len(with_units), with_units[0] if with_units else None,
                             len(categories))
    if warning is not None:
        warnings.warn(warning, stacklevel=3)


def category_codes(values: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """The index in ``categories`` of each value's category ``(n,)`` intp; -1 for missing or unseen values.

    One dictionary look-up per row (text, the common case, is its own category name).
    """
    index = {c: j for j, c in enumerate(categories)}
    lookup = index.get

    def key(v: Any) -> Any:
        if type(v) is str:
            return v
        return None if _is_missing(v) else _category(v)

    items = np.asarray(values).tolist()
    try:
        distinct = dict.fromkeys(items)
    except TypeError:  # unhashable values (arrays from a list column): their text, row by row
        distinct = None
    if distinct is None or not all(type(v) is str or v is None for v in distinct):
        return np.fromiter((lookup(key(v), -1) for v in items), dtype=np.intp, count=len(items))
    codes = {v: lookup(key(v), -1) for v in distinct}  # text: one look-up per distinct value
    return np.fromiter(map(codes.__getitem__, items), dtype=np.intp, count=len(items))


class TablePreprocessor:
    """Encodes feature columns and the target of a table; fitted once, applied the same way after.

    Parameters
    ----------
    target : str
        Name of the target column.
    task : {"auto", "classification", "regression"}
    scale : {"standard", "minmax", "none"}
        Scaling of numeric feature columns: :math:`(x - \\mu)/\\sigma` or
        :math:`(x - \\min)/(\\max - \\min)`, with statistics of the training table only. A constant
        column is only centred.

    Examples
    --------
    >>> import numpy as np
    >>> table = {"size": np.array([1.0, 2.0, 3.0]), "color": np.array(["red", "blue", "red"], dtype=object),
    ...          "label": np.array(["a", "b", "a"], dtype=object)}
    >>> prep = TablePreprocessor("label").fit(table)
    >>> prep.feature_names
    ['size', 'color=blue', 'color=red']
    >>> prep.encode_target(table["label"]).tolist()
    [0, 1, 0]
    """

    def __init__(self, target: str, task: str = "auto", scale: str = "standard") -> None:
        if task not in TASKS:
            raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
        if scale not in SCALERS:
            raise ConfigError(f"scale must be one of {list(SCALERS)}, got {scale!r}")
        self.target = target
        self.task = task
        self.scale = scale
        self.columns: list[dict[str, Any]] = []
        self.classes: list[Any] | None = None
        self.target_center = 0.0
        self.target_scale = 1.0
        self.fitted = False

    # ----------------------------------------------------------------- fitting
    def fit(self, table: Table) -> TablePreprocessor:
        """Learn column kinds, scaling statistics, categories and classes from ``table``."""
        names = list(table.keys())
        if self.target not in names:
            raise DataError(f"no column named {self.target!r}{did_you_mean([self.target], names)}; the columns are "
                            f"{preview(names, 40)}")
        features = [name for name in names if name != self.target]
        if not features:
            raise DataError(f"the table has only the target column {self.target!r}; expected feature columns too")
        n = len(table[self.target])
        if n == 0:
            raise DataError("the table has no rows; expected at least one sample")
        self._fit_target(np.asarray(table[self.target]))
        self.columns = [self._fit_column(name, np.asarray(table[name])) for name in features]
        self.fitted = True
        return self

    def _fit_column(self, name: str, values: np.ndarray) -> dict[str, Any]:
        numbers = numeric_values(name, values)
        if numbers is None:
            present = [v for v in values.tolist() if not _is_missing(v)]
            categories = sorted({_category(v) for v in present})
            _warn_if_suspicious(name, present, categories)
            return {"name": name, "kind": "categorical", "categories": categories}
        if self.scale == "standard":
            center, spread = float(numbers.mean()), float(numbers.std())
        elif self.scale == "minmax":
            center, spread = float(numbers.min()), float(numbers.max() - numbers.min())
        else:
            center, spread = 0.0, 1.0
        return {"name": name, "kind": "numeric", "center": center, "scale": spread if spread > 0 else 1.0}

    def _fit_target(self, values: np.ndarray) -> None:
        missing = [i for i, v in enumerate(values.tolist()) if _is_missing(v)]
        if missing:
            raise DataError(f"target column {self.target!r} has {len(missing)} missing values (first in row "
                            f"{missing[0]}); expected a value in every row")
        task = infer_task(values, self.target) if self.task == "auto" else self.task
        if task == "classification":
            labels = [_to_json_scalar(v) for v in values.tolist()]
            classes = sorted(set(labels), key=lambda c: (isinstance(c, str), c))
            if len(classes) < 2:
                raise DataError(f"target column {self.target!r} has a single class {classes[0]!r}; "
                                "classification needs at least two")
            self.classes = classes
        else:
            numbers = numeric_values(self.target, values)
            if numbers is None:
                raise DataError(f"target column {self.target!r} holds text; regression needs numbers "
                                "(use --task classification for labels)")
            self.classes = None
            self.target_center = float(numbers.mean())
            self.target_scale = float(numbers.std()) or 1.0
        self.task = task

    # ----------------------------------------------------------------- applying
    @property
    def feature_names(self) -> list[str]:
        """Names of the encoded columns (a numeric column's name, ``name=category`` for one-hot columns)."""
        out: list[str] = []
        for col in self.columns:
            if col["kind"] == "numeric":
                out.append(col["name"])
            else:
                out.extend(f"{col['name']}={c}" for c in col["categories"])
        return out

    @property
    def n_outputs(self) -> int:
        """Units of the output layer (one per class, or one value for regression)."""
        return len(self.classes) if self.classes is not None else 1

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise ConfigError("the preprocessor is not fitted; call fit(table) first")

    def transform(self, table: Table, dtype: Any = np.float32) -> np.ndarray:
        """Feature matrix ``(n_rows, len(feature_names))`` of ``dtype``; the target column is ignored.

        Unknown or missing categories encode as all zeros; a missing numeric column or a text value
        in a numeric column raises :class:`DataError`.
        """
        self._require_fitted()
        names = list(table.keys())
        absent = [c["name"] for c in self.columns if c["name"] not in names]
        if absent:
            raise DataError(f"the table lacks the feature columns {preview(absent)} the model was trained on"
                            f"{did_you_mean(absent, names)}; it has {preview(names, 40)}")
        if not self.columns:
            return np.zeros((0, 0), dtype)
        # each column written into its place of the result: no float64 copy of the whole matrix to join and cast
        width = sum(1 if col["kind"] == "numeric" else len(col["categories"]) for col in self.columns)
        out = np.zeros((len(table[self.columns[0]["name"]]), width), dtype=dtype)
        j = 0
        for col in self.columns:
            values = np.asarray(table[col["name"]])
            if col["kind"] == "numeric":
                numbers = numeric_values(col["name"], values)
                if numbers is None:
                    raise DataError(f"column {col['name']!r} holds text, but the model was trained on numbers there")
                out[:, j] = (numbers - col["center"]) / col["scale"]
                j += 1
            else:
                codes = category_codes(values, col["categories"])
                rows = np.flatnonzero(codes >= 0)
                out[rows, j + codes[rows]] = 1.0
                j += len(col["categories"])
        return out

    def encode_target(self, values: Sequence[Any] | np.ndarray, column: str | None = None) -> np.ndarray:
        """Class indices ``(n,)`` int64 for classification, standardized floats ``(n,)`` for regression.

        ``column`` names the column ``values`` come from in error messages (default: the target's name).
        """
        self._require_fitted()
        column = self.target if column is None else column
        values = np.asarray(values)
        if values.dtype.kind == "f" and np.isnan(values).any():
            missing = np.flatnonzero(np.isnan(values)).tolist()
        elif values.dtype.kind in "OUS":
            missing = [i for i, v in enumerate(values.tolist()) if _is_missing(v)]
        else:
            missing = []
        if missing:
            raise DataError(f"target column {column!r} has {len(missing)} missing values (first in row "
                            f"{missing[0]}); expected a value in every row")
        if self.classes is not None and values.dtype.kind in "biuf" \
                and not any(isinstance(c, str) for c in self.classes):
            return self._numeric_class_indices(values, column)
        if self.classes is None:
            numbers = numeric_values(column, values)
            if numbers is None:
                raise DataError(f"target column {column!r} holds text; this regression model needs numbers")
            return (numbers - self.target_center) / self.target_scale
        index = {c: j for j, c in enumerate(self.classes)}
        labels = [_to_json_scalar(v) for v in values.tolist()]
        unknown = sorted({str(v) for v in labels if v not in index})
        if unknown:
            raise DataError(f"target column {column!r} has labels {preview(unknown)} the model was not "
                            f"trained on; it knows {preview(self.classes)}")
        return np.array([index[v] for v in labels], dtype=np.int64)

    def _numeric_class_indices(self, values: np.ndarray, column: str) -> np.ndarray:
        """:meth:`encode_target` of numbers when every class is a number: a sorted search, no Python loop."""
        known = np.array(self.classes, dtype=np.float64)  # sorted: numeric classes sort as numbers
        numbers = values.astype(np.float64)
        index = np.minimum(np.searchsorted(known, numbers), len(known) - 1)
        unseen = known[index] != numbers
        if unseen.any():
            unknown = sorted({str(_to_json_scalar(v)) for v in values[unseen].tolist()})
            raise DataError(f"target column {column!r} has labels {preview(unknown)} the model was not "
                            f"trained on; it knows {preview(self.classes)}")
        return index.astype(np.int64)

    def decode_target(self, outputs: np.ndarray) -> np.ndarray:
        """Network outputs to target values: ``(n, classes)`` probabilities to labels (argmax), or
        ``(n, 1)`` standardized values to the target's scale. Returns ``(n,)``."""
        self._require_fitted()
        outputs = np.asarray(outputs)
        if self.classes is None:
            return outputs.reshape(len(outputs)) * self.target_scale + self.target_center
        return np.array(self.classes, dtype=object)[outputs.argmax(axis=1)]

    # ----------------------------------------------------------------- persistence
    def to_json(self) -> dict[str, Any]:
        """The fitted state as JSON-serializable data."""
        self._require_fitted()
        return {"version": FORMAT_VERSION, "target": self.target, "task": self.task, "scale": self.scale,
                "columns": self.columns, "classes": self.classes,
                "target_center": self.target_center, "target_scale": self.target_scale}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TablePreprocessor:
        """Rebuild a fitted preprocessor from :meth:`to_json`'s output."""
        if not isinstance(data, Mapping) or data.get("version") != FORMAT_VERSION:
            found = data.get("version") if isinstance(data, Mapping) else type(data).__name__
            raise ConfigError(f"preprocessing data has version {found!r}; expected {FORMAT_VERSION}")
        prep = cls(data["target"], data["task"], data["scale"])
        prep.columns = [dict(c) for c in data["columns"]]
        prep.classes = list(data["classes"]) if data["classes"] is not None else None
        prep.target_center = float(data["target_center"])
        prep.target_scale = float(data["target_scale"])
        prep.fitted = True
        return prep

    def __repr__(self) -> str:
        state = f", {len(self.columns)} columns, classes={self.classes}" if self.fitted else ""
        return f"TablePreprocessor(target={self.target!r}, task={self.task!r}, scale={self.scale!r}{state})"


__all__ = ["ColumnWarning", "TablePreprocessor", "did_you_mean", "infer_task", "numeric_values", "preview"]
