"""Checks of what a user hands to a model: arguments, inputs, targets and weights.

Every function here either returns the value in the form the engine computes with (an array of the
model's dtype, a plain ``int``) or raises a :class:`~barenet.errors.BarenetError` that says what was
wrong and what was expected. The training loop (:mod:`barenet.models.training`), the scikit-learn
estimators and the command line call these instead of checking on their own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import losses as losses_mod
from ..errors import ConfigError, DataError, ShapeError
from ..layers import Layer


def check_count(value: Any, name: str, *, minimum: int = 1, allow_none: bool = False) -> int | None:
    """``value`` as an ``int >= minimum`` (``None`` passes when ``allow_none``); booleans are refused.

    ``True`` is an ``int`` to Python, but ``fit(epochs=True)`` is a mistake, never a count.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        words = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        expected = words + (" or None" if allow_none else "")
        raise ConfigError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_fraction(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1)``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def _shape_text(shape: tuple[int, ...]) -> str:
    return ", ".join(map(str, shape))


def _column_names(data: Any) -> list[str] | None:
    """The column names of a pandas DataFrame, or the name of a named Series, as the user wrote them;
    ``None`` for anything else. Read by duck typing: the engine does not import pandas."""
    if getattr(data, "ndim", None) == 2 and getattr(data, "columns", None) is not None:
        return [str(c) for c in data.columns]
    if getattr(data, "ndim", None) == 1 and hasattr(data, "index") and getattr(data, "name", None) is not None:
        return [str(data.name)]
    return None


def _as_float_array(data: Any, dtype: np.dtype, names: list[str] | None) -> np.ndarray:
    """``data`` as an array of ``dtype``; pandas' missing values (``pd.NA`` too) become NaN."""
    if names is not None and hasattr(data, "to_numpy"):
        return data.to_numpy(dtype=dtype, na_value=np.nan)
    return np.asarray(data, dtype=dtype)


def _first_bad(bad: np.ndarray, names: list[str] | None) -> str:
    """``"first in row 2"``, with ``", column 'temp'"`` when the columns have names."""
    first = np.argwhere(bad)[0]
    where = f"first in row {int(first[0])}"
    if names is not None:
        where += f", column {names[int(first[1]) if bad.ndim > 1 else 0]!r}"
    return where


def _surely_finite(X: np.ndarray) -> bool:
    """True when the float array ``X`` surely holds no NaN or infinity: its sum is finite.

    A NaN or an infinity makes the sum NaN or infinite, so this clears ``X`` in one pass that allocates
    nothing, where ``np.isfinite`` makes a mask a quarter of a float32 input's size; False (a NaN, an infinity,
    or a sum of finite values that overflows) sends the caller to its exact check.
    """
    with np.errstate(over="ignore", invalid="ignore"):  # inf + -inf, or an overflow: the exact check follows
        return math.isfinite(np.sum(X, dtype=X.dtype))


def check_inputs(X: Any, *, dtype: np.dtype, first_layer: Layer, input_shape: tuple[int, ...] | None,
                 what: str = "X", allow_empty: bool = False) -> np.ndarray:
    """``X`` as an array ``(n_samples, *input_shape)`` the first layer can take.

    Inputs are cast to ``dtype``, except for a first layer that takes integer indices
    (``first_layer.takes_indices``, e.g. :class:`~barenet.layers.Embedding`): those get ``int64`` so that
    no id is rounded (in float32, 2**24 + 1 would read row 2**24). A 1-d ``X`` is one feature per sample
    when the model takes one feature. ``input_shape`` is the model's (``None`` before it is built).
    """
    if X is None:
        raise DataError(f"{what} is None; expected an array of shape (n_samples, n_features)")
    names = None if type(X) is np.ndarray else _column_names(X)
    if getattr(first_layer, "takes_indices", False):
        X = _as_indices(X, what)
    else:
        try:
            X = _as_float_array(X, dtype, names)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{what} must be numeric; converting it to {dtype.name} failed: {exc}") from None
    if X.ndim == 0:
        raise DataError(f"{what} is a scalar; expected an array of shape (n_samples, ...)")
    if X.shape[0] == 0 and not allow_empty:
        raise DataError(f"{what} is empty (shape {X.shape}); expected at least one sample")
    if X.ndim == 1:
        expected = input_shape if input_shape is not None else first_layer.input_shape
        if expected == (1,) or expected is None:
            X = X[:, None]
        else:
            raise ShapeError(f"{what} is 1-d with shape {X.shape}; expected (n_samples, {_shape_text(expected)})")
    if X.dtype.kind == "f" and not _surely_finite(X):
        bad = ~np.isfinite(X)
        if bad.any():
            raise DataError(f"{what} contains {int(bad.sum())} NaN or infinite values ({_first_bad(bad, names)}); "
                            "clean or impute them first")
    if input_shape is not None and X.shape[1:] != tuple(input_shape):
        raise ShapeError(f"{what} has shape {X.shape}, but the model's first layer {first_layer.describe()} "
                         f"expects (n_samples, {_shape_text(tuple(input_shape))})")
    return X


def _as_indices(X: Any, what: str) -> np.ndarray:
    """Integer ids as ``int64``; floats are accepted only when they hold exact integers."""
    X = np.asarray(X)
    if X.dtype.kind in "iu":
        return X.astype(np.int64, copy=False)
    if X.dtype.kind == "b" or X.dtype.kind not in "f":
        raise DataError(f"{what} must hold integer token ids, got dtype {X.dtype}")
    if not np.all(np.isfinite(X)) or np.any(X != np.round(X)):
        raise DataError(f"{what} must hold integer token ids; it has non-integer or non-finite values")
    if X.size and np.abs(X).max() >= 2.0 ** np.finfo(X.dtype).nmant:
        raise DataError(f"{what} holds ids too large to be exact in {X.dtype}; pass them as an integer array")
    return X.astype(np.int64)


def check_targets(y: Any, n: int, *, loss: losses_mod.Loss, output_shape: tuple[int, ...], dtype: np.dtype,
                  what: str = "y") -> np.ndarray:
    """``y`` in the loss's form (see :meth:`barenet.losses.Loss.prepare_targets`), one per sample."""
    if y is None:
        raise DataError(f"{what} is None; expected one target per sample")
    names = _column_names(y)
    if names is not None:  # pandas targets: name the column of a missing value
        try:
            bad = ~np.isfinite(_as_float_array(y, np.dtype(np.float64), names))
        except (TypeError, ValueError):  # not numbers: the loss says what it needs
            bad = np.zeros(0, dtype=bool)
        if bad.any():
            raise DataError(f"{what} contains {int(bad.sum())} NaN or infinite values ({_first_bad(bad, names)}); "
                            "drop those rows or fill them first")
    y = loss.prepare_targets(y, output_shape, dtype)
    if len(y) != n:
        raise ShapeError(f"X has {n} samples but {what} has {len(y)}; they must match")
    return y


def check_sample_weight(sample_weight: Any, n: int, dtype: np.dtype) -> np.ndarray | None:
    """Per-sample weights ``(n,)``, finite and non-negative, in ``dtype``; ``None`` stays ``None``."""
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"sample_weight must be numeric: {exc}") from None
    if w.shape != (n,):
        raise ShapeError(f"sample_weight has shape {w.shape}; expected ({n},), one weight per sample")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DataError("sample_weight must be finite and non-negative")
    return w


def class_weight_table(class_weight: dict[Any, float], n_classes: int) -> np.ndarray:
    """``class_weight`` as a float64 table indexed by class (classes not named weigh 1)."""
    if not isinstance(class_weight, dict):
        raise ConfigError(f"class_weight must be a dict {{class: weight}}, got {type(class_weight).__name__}")
    table = np.ones(n_classes)
    for label, weight in class_weight.items():
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) \
                or not 0 <= label < n_classes:
            raise ConfigError(f"class_weight has class {label!r}; classes are the integers 0 .. {n_classes - 1}")
        if not isinstance(weight, (int, float, np.integer, np.floating)) or not np.isfinite(weight) or weight < 0:
            raise ConfigError(f"class_weight[{label}] is {weight!r}; weights must be finite and >= 0")
        table[int(label)] = weight
    return table


def class_weights(class_weight: dict[Any, float], y: np.ndarray, task: str, dtype: np.dtype,
                  n_classes: int) -> np.ndarray:
    """Weights of each target from its class: ``(n,)``, or ``(n, steps)`` for per-step labels.

    ``y`` is in the loss's form: integer labels ``(n, [steps])`` or one-hot rows ``(n, [steps,] classes)``
    for a multi-class model of ``n_classes`` outputs, 0/1 ``(n, 1)`` or ``(n, steps, 1)`` for a binary one.
    Each step of a sequence is weighted by its own label.
    """
    if task == "multiclass":
        labels = y if y.dtype.kind in "iu" else y.argmax(axis=-1)
    elif task == "binary":
        labels = (y[..., 0] >= 0.5).astype(np.intp)
        n_classes = 2
    else:
        raise ConfigError(f"class_weight needs a binary or multi-class model, this one does {task}")
    weights = class_weight_table(class_weight, n_classes)[labels].astype(dtype)
    return weights.reshape(len(y), -1) if weights.ndim > 1 else weights
