r"""Metrics computed during ``fit`` and ``evaluate``.

Each metric is ``metric(y_true, y_pred, task, n_classes=None) -> float`` on whole arrays, where
``y_true`` is in the loss's target form (integer labels or one-hot rows for multi-class, 0/1 columns
for binary and multi-label, real values for regression), ``y_pred`` holds probabilities or predicted
values of the shape of one-hot rows (or, for multi-class, predicted integer labels, with ``n_classes``
given), and ``task`` is ``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``.

Precision, recall and F1 are for the positive class in binary tasks and the unweighted mean
over classes ("macro") otherwise; the ``*_macro`` names average over classes in binary tasks
too. A class with no predicted (or no true) samples contributes 0, as in scikit-learn with
``zero_division=0``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ConfigError

#: The type of a metric, ``metric(y_true, y_pred, task, n_classes=None) -> float``.
Metric = Callable[..., float]
CLASSIFICATION = ("binary", "multiclass", "multilabel")


def _class_labels(y: np.ndarray) -> np.ndarray:
    """Integer labels as they are, one-hot or probability rows as their argmax; flattened."""
    y = np.asarray(y)
    return (y if y.dtype.kind in "iu" else y.argmax(axis=-1)).reshape(-1)


def _n_classes(y_pred: np.ndarray, n_classes: int | None) -> int:
    if n_classes is not None:
        return int(n_classes)
    if np.asarray(y_pred).dtype.kind in "iu":
        raise ConfigError("multi-class metrics of predicted labels need n_classes")
    return y_pred.shape[-1]


def _labels(y_true: np.ndarray, y_pred: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Hard predictions: argmax over classes (multiclass) or threshold 0.5."""
    if task == "multiclass":
        return _class_labels(y_true), _class_labels(y_pred)
    return (y_true.reshape(len(y_true), -1) >= 0.5), (y_pred.reshape(len(y_pred), -1) >= 0.5)


def _require(task: str, name: str, allowed: tuple[str, ...]) -> None:
    if task not in allowed:
        raise ConfigError(f"metric {name!r} is for {' or '.join(allowed)} tasks, but this model does {task}")


def accuracy(y_true: np.ndarray, y_pred: np.ndarray, task: str, n_classes: int | None = None) -> float:
    """Fraction of samples predicted exactly right (all labels right, for multi-label)."""
    _require(task, "accuracy", CLASSIFICATION)
    t, p = _labels(y_true, y_pred, task)
    if task == "multiclass":
        return float(np.mean(t == p))
    return float(np.mean(np.all(t == p, axis=1)))


def _counts(y_true: np.ndarray, y_pred: np.ndarray, task: str, macro_binary: bool, n_classes: int | None = None):
    """True positives, predicted positives and actual positives for each class considered."""
    t, p = _labels(y_true, y_pred, task)
    if task == "multiclass":
        k = _n_classes(y_pred, n_classes)
        tp = np.bincount(t[t == p], minlength=k)
        return tp, np.bincount(p, minlength=k), np.bincount(t, minlength=k)
    if task == "binary" and macro_binary:
        t, p = np.hstack([t, ~t]), np.hstack([p, ~p])
    return (t & p).sum(axis=0), p.sum(axis=0), t.sum(axis=0)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros(np.shape(a), dtype=np.float64), where=b > 0)


def _prf(y_true, y_pred, task, which: str, macro_binary: bool, n_classes: int | None = None) -> float:
    _require(task, which, CLASSIFICATION)
    return _from_counts(*_counts(y_true, y_pred, task, macro_binary, n_classes), which)


def _from_counts(tp: np.ndarray, pred: np.ndarray, true: np.ndarray, which: str) -> float:
    """Precision, recall or F1 averaged over the classes of the counts (see :func:`_counts`)."""
    precision, recall = _safe_div(tp, pred), _safe_div(tp, true)
    if which == "precision":
        return float(precision.mean())
    if which == "recall":
        return float(recall.mean())
    return float(_safe_div(2 * precision * recall, precision + recall).mean())


def precision(y_true, y_pred, task, n_classes=None):
    r""":math:`TP / (TP + FP)`."""
    return _prf(y_true, y_pred, task, "precision", False, n_classes)


def recall(y_true, y_pred, task, n_classes=None):
    r""":math:`TP / (TP + FN)`."""
    return _prf(y_true, y_pred, task, "recall", False, n_classes)


def f1(y_true, y_pred, task, n_classes=None):
    r"""Harmonic mean :math:`2PR / (P + R)`, per class, then averaged."""
    return _prf(y_true, y_pred, task, "f1", False, n_classes)


def precision_macro(y_true, y_pred, task, n_classes=None):
    """:func:`precision` averaged over the classes in every task, binary included (both classes count)."""
    return _prf(y_true, y_pred, task, "precision", True, n_classes)


def recall_macro(y_true, y_pred, task, n_classes=None):
    """:func:`recall` averaged over the classes in every task, binary included (both classes count)."""
    return _prf(y_true, y_pred, task, "recall", True, n_classes)


def f1_macro(y_true, y_pred, task, n_classes=None):
    """:func:`f1` averaged over the classes in every task, binary included (both classes count)."""
    return _prf(y_true, y_pred, task, "f1", True, n_classes)


def mean_squared_error(y_true, y_pred, task, n_classes=None):
    r""":math:`\frac1{nk}\sum (p - t)^2`."""
    return float(np.mean((np.asarray(y_pred, np.float64) - y_true) ** 2))


def mean_absolute_error(y_true, y_pred, task, n_classes=None):
    r""":math:`\frac1{nk}\sum |p - t|`."""
    return float(np.mean(np.abs(np.asarray(y_pred, np.float64) - y_true)))


def r2(y_true, y_pred, task, n_classes=None):
    r"""Coefficient of determination :math:`1 - SS_{res}/SS_{tot}` per output, averaged over outputs
    (an output with constant targets scores 1 if predicted exactly, else 0, as scikit-learn does)."""
    t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    p = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    ss_res = ((t - p) ** 2).sum(axis=0)
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    score = np.where(ss_tot > 0, 1 - _safe_div(ss_res, ss_tot), np.where(ss_res == 0, 1.0, 0.0))
    return float(score.mean())


_BY_NAME: dict[str, Metric] = {
    "accuracy": accuracy,
    "acc": accuracy,
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "precision_macro": precision_macro,
    "recall_macro": recall_macro,
    "f1_macro": f1_macro,
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "r2": r2,
}


def get(name: str) -> Metric:
    """Look a metric up by name."""
    if isinstance(name, str) and name.lower() in _BY_NAME:
        return _BY_NAME[name.lower()]
    raise ConfigError(f"unknown metric {name!r}; expected one of {sorted(_BY_NAME)}")


class RunningMetrics:
    """Metrics of a stream of batches, accumulated batch by batch in memory independent of the stream's length.

    ``update(y_true, y_pred)`` takes each batch in the form the whole-array functions take; ``result()`` gives
    the values those functions give on all the batches joined: exactly for the classification metrics
    (from counts of true, predicted and correct labels), to rounding for the regression ones (sums, and
    Chan's pairwise merge of means and squared deviations for R2).
    """

    def __init__(self, names: list[str], task: str, n_classes: int | None = None) -> None:
        self.names, self.task, self.n_classes = list(names), task, n_classes
        for name in self.names:
            fn = get(name)
            if fn in (accuracy, precision, recall, f1, precision_macro, recall_macro, f1_macro):
                _require(task, name, CLASSIFICATION)
        regression = (mean_squared_error, mean_absolute_error, r2)
        self._summed = any(get(name) in regression for name in self.names)
        self._counted = any(get(name) not in regression for name in self.names)
        self.n = 0
        self._stats: dict[str, np.ndarray] = {}

    def _add(self, name: str, value: np.ndarray) -> None:
        self._stats[name] = value if name not in self._stats else self._stats[name] + value

    def update(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        """Add one batch."""
        if not self.names or not len(y_true):
            return
        if self.task in CLASSIFICATION and self._counted:
            t, p = _labels(y_true, y_pred, self.task)
            if self.task == "multiclass":
                k = _n_classes(y_pred, self.n_classes)
                self._add("confusion", np.bincount(t * k + p, minlength=k * k))
            else:
                self._add("tp", (t & p).sum(axis=0))
                self._add("pred", p.sum(axis=0))
                self._add("true", t.sum(axis=0))
                self._add("exact", np.array(int(np.all(t == p, axis=1).sum())))
        if not self._summed:
            self.n += len(y_true)
            return
        t = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
        p = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
        diff = p - t
        self._add("squared", (diff ** 2).sum(axis=0))
        self._add("absolute", np.abs(diff).sum(axis=0))
        m, mean = len(t), t.mean(axis=0)
        m2 = ((t - mean) ** 2).sum(axis=0)
        if self.n:
            n, old_mean, old_m2 = self.n, self._stats["mean"], self._stats["m2"]
            delta = mean - old_mean
            mean = old_mean + delta * (m / (n + m))
            m2 = old_m2 + m2 + delta ** 2 * (n * m / (n + m))
        self._stats["mean"], self._stats["m2"] = mean, m2
        self.n += m

    def _counts(self, macro_binary: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.task == "multiclass":
            k = int(np.sqrt(len(self._stats["confusion"])))
            confusion = self._stats["confusion"].reshape(k, k)
            return np.diag(confusion), confusion.sum(axis=0), confusion.sum(axis=1)
        tp, pred, true = self._stats["tp"], self._stats["pred"], self._stats["true"]
        if self.task == "binary" and macro_binary:
            n = self.n
            return (np.concatenate([tp, n - pred - true + tp]), np.concatenate([pred, n - pred]),
                    np.concatenate([true, n - true]))
        return tp, pred, true

    def result(self, prefix: str = "") -> dict[str, float]:
        """The metrics of every batch added so far, keyed by name (with ``prefix``); empty before any batch."""
        if not self.n:
            return {}
        out = {}
        for name in self.names:
            fn = get(name)
            if fn is accuracy:
                if self.task == "multiclass":
                    value = self._counts(False)[0].sum() / self.n
                else:
                    value = self._stats["exact"] / self.n
            elif fn in (precision, recall, f1, precision_macro, recall_macro, f1_macro):
                which = fn.__name__.split("_")[0]
                value = _from_counts(*self._counts(fn.__name__.endswith("_macro")), which)
            elif fn is mean_squared_error:
                value = self._stats["squared"].sum() / (self.n * len(self._stats["squared"]))
            elif fn is mean_absolute_error:
                value = self._stats["absolute"].sum() / (self.n * len(self._stats["absolute"]))
            else:
                ss_res, ss_tot = self._stats["squared"], self._stats["m2"]
                score = np.where(ss_tot > 0, 1 - _safe_div(ss_res, ss_tot), np.where(ss_res == 0, 1.0, 0.0))
                value = score.mean()
            out[prefix + name] = float(value)
        return out


__all__ = ["Metric", "RunningMetrics", "accuracy", "f1", "f1_macro", "get", "mean_absolute_error",
           "mean_squared_error", "precision", "precision_macro", "r2", "recall", "recall_macro"]
