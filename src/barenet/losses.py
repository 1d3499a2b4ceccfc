r"""Loss functions.

A loss maps predictions ``y_pred : (batch, *output_shape)`` and targets of the same shape to
the weighted batch mean :math:`L = \frac1n \sum_i w_i \, \ell_i` of per-sample losses
:math:`\ell_i` (with :math:`w_i = 1` when no sample weights are given), and returns
:math:`\partial L / \partial y_\text{pred}` from :meth:`Loss.gradient`.

``prepare_targets`` turns what a user passes as ``y`` (labels, one-hot rows, real targets)
into that shape, or raises a :class:`~barenet.errors.DataError` saying what does not fit.

Cross-entropies have a *fused* form taking logits (the input of the final sigmoid or
softmax): it is the numerically stable way, and the model uses it whenever the network ends
in the matching activation.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from . import functional as F
from .errors import ConfigError, DataError, ShapeError
from .kernels import loss as loss_kernels

_EPS = 1e-7


class Loss:
    """Base class. Subclasses implement ``per_sample`` and ``per_sample_grad``."""

    name: ClassVar[str] = ""
    #: ``"sigmoid"`` or ``"softmax"`` when the loss has a fused logits form for that activation.
    fuses_with: ClassVar[str | None] = None
    #: ``"regression"`` or ``"classification"``: what targets the loss expects.
    task: ClassVar[str] = "regression"

    def __call__(self, y_pred: np.ndarray, y_true: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
        return float(_weighted_mean(self.per_sample(y_pred, y_true), sample_weight))

    def gradient(
        self, y_pred: np.ndarray, y_true: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> np.ndarray:
        """:math:`\\partial L/\\partial y_{pred}`, same shape and dtype as ``y_pred``."""
        return _scale_rows(self.per_sample_grad(y_pred, y_true), sample_weight).astype(y_pred.dtype, copy=False)

    def per_sample(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        """:math:`\\ell_i` for each sample, shape ``(batch,)``."""
        raise NotImplementedError

    def per_sample_grad(self, y_pred: np.ndarray, y_true: np.ndarray) -> np.ndarray:
        """:math:`\\partial \\ell_i / \\partial y_{pred,i}`, shape of ``y_pred``."""
        raise NotImplementedError

    def fused(
        self, logits: np.ndarray, y_true: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Loss, :math:`\\partial L/\\partial z` and the activated predictions, from logits ``z``."""
        raise ConfigError(f"{self.name} has no fused logits form")

    def prepare_targets(self, y: Any, output_shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Check ``y`` and return it as a float array of shape ``(n, *output_shape)``."""
        y = _as_float(y, dtype)
        if y.ndim == 1 and output_shape == (1,):
            y = y[:, None]
        if y.shape[1:] != tuple(output_shape):
            raise DataError(
                f"targets have shape {y.shape}, but the model outputs (n, {', '.join(map(str, output_shape))}); "
                f"{self.name} needs targets of the same shape"
            )
        return y

    def get_config(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _as_float(y: Any, dtype: Any) -> np.ndarray:
    try:
        y = np.asarray(y, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise DataError(f"targets must be numeric, got values that cannot be converted: {exc}") from None
    if y.ndim == 0 or y.shape[0] == 0:
        raise DataError(f"targets are empty (shape {y.shape}); expected at least one sample")
    if not np.all(np.isfinite(y)):
        raise DataError(f"targets contain {int(np.sum(~np.isfinite(y)))} NaN or infinite values")
    return y


def _weighted_mean(values: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    if sample_weight is None:
        return values.mean()
    return np.dot(values, sample_weight) / values.shape[0]


def _scale_rows(grad: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    n = grad.shape[0]
    if sample_weight is None:
        grad /= n
        return grad
    return grad * (sample_weight / n).reshape(-1, *([1] * (grad.ndim - 1)))


def _per_output(values: np.ndarray) -> np.ndarray:
    """Mean over every axis but the batch axis."""
    return values.reshape(values.shape[0], -1).mean(axis=1)


class MeanSquaredError(Loss):
    r""":math:`\ell_i = \frac1k\sum_j (p_{ij} - t_{ij})^2`, with gradient :math:`2(p_{ij}-t_{ij})/k`."""

    name = "mean_squared_error"

    def per_sample(self, y_pred, y_true):
        return _per_output((y_pred - y_true) ** 2)

    def per_sample_grad(self, y_pred, y_true):
        k = y_pred[0].size
        return (2.0 / k) * (y_pred - y_true)


class MeanAbsoluteError(Loss):
    r""":math:`\ell_i = \frac1k\sum_j |p_{ij} - t_{ij}|`, gradient :math:`\mathrm{sign}(p-t)/k` (0 at a tie)."""

    name = "mean_absolute_error"

    def per_sample(self, y_pred, y_true):
        return _per_output(np.abs(y_pred - y_true))

    def per_sample_grad(self, y_pred, y_true):
        return np.sign(y_pred - y_true) / y_pred[0].size


class Huber(Loss):
    r"""Quadratic near zero, linear beyond ``delta``:
    :math:`\tfrac12 r^2` if :math:`|r|\le\delta`, else :math:`\delta(|r| - \tfrac12\delta)`, with
    :math:`r = p - t`; gradient :math:`\mathrm{clip}(r, -\delta, \delta)`; averaged over outputs."""

    name = "huber"

    def __init__(self, delta: float = 1.0) -> None:
        if delta <= 0:
            raise ConfigError(f"Huber delta must be > 0, got {delta!r}")
        self.delta = float(delta)

    def per_sample(self, y_pred, y_true):
        r = np.abs(y_pred - y_true)
        d = self.delta
        return _per_output(np.where(r <= d, 0.5 * r * r, d * (r - 0.5 * d)))

    def per_sample_grad(self, y_pred, y_true):
        return np.clip(y_pred - y_true, -self.delta, self.delta) / y_pred[0].size

    def get_config(self):
        return {"delta": self.delta}


class BinaryCrossentropy(Loss):
    r"""Binary (and multi-label) cross-entropy, averaged over outputs.

    :math:`\ell = -[t \log p + (1-t)\log(1-p)]`. With ``from_logits=True`` the predictions are
    logits :math:`z` and :math:`\ell = \max(z,0) - zt + \log(1+e^{-|z|})`, whose gradient is
    :math:`\sigma(z) - t`: finite for any logit. Probabilities are clipped to
    :math:`[10^{-7}, 1-10^{-7}]` so that :math:`\log 0` never happens.
    """

    name = "binary_crossentropy"
    fuses_with = "sigmoid"
    task = "classification"

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = bool(from_logits)

    def per_sample(self, y_pred, y_true):
        if self.from_logits:
            return _per_output(F.softplus(y_pred) - y_pred * y_true)
        p = np.clip(y_pred, _EPS, 1 - _EPS)
        return _per_output(-(y_true * np.log(p) + (1 - y_true) * np.log1p(-p)))

    def per_sample_grad(self, y_pred, y_true):
        k = y_pred[0].size
        if self.from_logits:
            return (F.sigmoid(y_pred) - y_true) / k
        p = np.clip(y_pred, _EPS, 1 - _EPS)
        return (p - y_true) / (p * (1 - p) * k)

    def fused(self, logits, y_true, sample_weight=None):
        k = logits[0].size
        value = _weighted_mean(_per_output(F.softplus(logits) - logits * y_true), sample_weight)
        probs = F.sigmoid(logits)
        grad = _scale_rows((probs - y_true) / k, sample_weight)
        return float(value), grad.astype(logits.dtype, copy=False), probs

    def prepare_targets(self, y, output_shape, dtype):
        y = super().prepare_targets(y, output_shape, dtype)
        if y.min() < 0 or y.max() > 1:
            raise DataError(
                f"binary_crossentropy needs targets in [0, 1] (labels 0/1), got values from {y.min():g} to "
                f"{y.max():g}; for more than two classes use categorical_crossentropy"
            )
        return y

    def get_config(self):
        return {"from_logits": self.from_logits}


class CategoricalCrossentropy(Loss):
    r"""Multi-class cross-entropy :math:`\ell = -\sum_j t_j \log p_j` over the last axis.

    Targets are integer labels ``(n,)`` or one-hot rows ``(n, classes)``. The fused form takes
    logits: :math:`\ell = -\sum_j t_j (z_j - \log\sum_k e^{z_k})`, gradient :math:`p\sum_j t_j - t`.

    With ``label_smoothing`` :math:`\varepsilon > 0` the targets are first mixed with the uniform
    distribution over the :math:`K` classes, :math:`t \leftarrow (1 - \varepsilon)\, t + \varepsilon \sum_j t_j / K`
    (a one-hot row becomes :math:`1 - \varepsilon + \varepsilon/K` on its class and :math:`\varepsilon/K`
    elsewhere, as in Keras and PyTorch), which keeps the network from driving its logits ever apart.
    """

    name = "categorical_crossentropy"
    fuses_with = "softmax"
    task = "classification"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0) -> None:
        if (isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float, np.floating))
                or not 0 <= label_smoothing < 1):
            raise ConfigError(f"categorical_crossentropy label_smoothing must be a number in [0, 1), "
                              f"got {label_smoothing!r}")
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)

    def smooth(self, y_true: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
        """The targets the loss is computed against: ``y_true`` itself, or smoothed (see the class notes).

        Integer labels (see :meth:`prepare_targets`) become one-hot rows of ``like``'s shape and dtype here,
        one batch at a time.
        """
        if y_true.dtype.kind in "iu":
            if like is None:
                raise DataError("integer labels need the predictions' shape to expand them")
            y_true = self._label_rows(y_true, like)
            loss_kernels.check_labels(y_true, like.shape[-1], self.name)  # a label is an index into its row
            dense = np.zeros_like(like)
            np.put_along_axis(dense, y_true[..., None], 1, axis=-1)
            y_true = dense
        eps = self.label_smoothing
        if not eps:
            return y_true
        t = y_true * y_true.dtype.type(1 - eps)
        t += y_true.sum(axis=-1, keepdims=True) * y_true.dtype.type(eps / y_true.shape[-1])
        return t

    def _label_rows(self, y_true: np.ndarray, like: np.ndarray) -> np.ndarray:
        """Integer labels ``y_true`` for the rows of ``like : (*rows, classes)``, shaped ``rows`` (a trailing
        axis of 1 is dropped); a :class:`~barenet.errors.ShapeError` if they do not fit."""
        rows = like.shape[:-1]
        if y_true.shape != rows and y_true.shape != (*rows, 1):
            raise ShapeError(f"{self.name} got labels of shape {y_true.shape} for predictions of shape "
                             f"{like.shape}; expected labels of shape {rows}")
        return y_true.reshape(rows)

    def per_sample(self, y_pred, y_true):
        y_true = self.smooth(y_true, y_pred)
        logp = F.log_softmax(y_pred) if self.from_logits else np.log(np.clip(y_pred, _EPS, 1.0))
        return -(y_true * logp).reshape(y_pred.shape[0], -1).sum(axis=1) / _rows_per_sample(y_pred)

    def per_sample_grad(self, y_pred, y_true):
        y_true = self.smooth(y_true, y_pred)
        if self.from_logits:
            p = F.softmax(y_pred)
            return (p * y_true.sum(axis=-1, keepdims=True) - y_true) / _rows_per_sample(y_pred)
        p = np.clip(y_pred, _EPS, 1.0)
        return -y_true / p / _rows_per_sample(y_pred)

    def fused(self, logits, y_true, sample_weight=None):
        # The training hot path. Integer labels without weights or smoothing: one compiled pass per row
        # (barenet.kernels.loss); otherwise few, mostly in-place operations on (batch, classes) arrays.
        if y_true.dtype.kind in "iu" and sample_weight is None and not self.label_smoothing:
            z = np.ascontiguousarray(logits).reshape(-1, logits.shape[-1])
            labels = self._label_rows(y_true, logits).reshape(-1)
            probs, grad = np.empty_like(z), np.empty_like(z)
            value = loss_kernels.softmax_cross_entropy(z, labels, probs, grad, owner=self.name)  # checks labels
            return float(value), grad.reshape(logits.shape), probs.reshape(logits.shape)
        n, rows = logits.shape[0], _rows_per_sample(logits)
        y_true = self.smooth(y_true, logits)
        logp, probs = F.log_softmax_and_softmax(logits)
        grad = probs * y_true.sum(axis=-1, keepdims=True)
        grad -= y_true
        if sample_weight is None:
            value = -float(np.vdot(y_true, logp)) / (n * rows)
            grad /= n * rows
        else:
            value = float(_weighted_mean(-(y_true * logp).reshape(n, -1).sum(axis=1) / rows, sample_weight))
            if rows != 1:
                grad /= rows
            grad = _scale_rows(grad, sample_weight)
        return value, grad.astype(logits.dtype, copy=False), probs

    def prepare_targets(self, y, output_shape, dtype):
        """Integer labels stay labels: an ``int64`` array ``(n, *output_shape[:-1])`` (never one-hot rows, which
        would take ``n x classes`` memory); one-hot or probability rows become floats ``(n, *output_shape)``."""
        classes = output_shape[-1]
        if classes < 2:
            raise DataError(
                "categorical_crossentropy needs an output layer with one unit per class (>= 2 units), "
                f"got output shape {tuple(output_shape)}; for two classes with one unit use binary_crossentropy"
            )
        y_arr = np.asarray(y)
        if y_arr.ndim == len(output_shape) + 1 and y_arr.shape[-1] == 1:  # labels as a column (n, 1)
            y_arr = y_arr[..., 0]
        if y_arr.ndim == len(output_shape):  # integer labels, one per output row
            if y_arr.size == 0:
                raise DataError(f"targets are empty (shape {y_arr.shape}); expected at least one sample")
            labels = _as_float(y_arr, np.float64) if y_arr.dtype.kind not in "iu" else y_arr
            if y_arr.dtype.kind not in "iu" and np.any(labels != np.round(labels)) or labels.min() < 0 \
                    or labels.max() >= classes:
                raise DataError(
                    f"categorical_crossentropy labels must be integers in [0, {classes - 1}] for a model with "
                    f"{classes} outputs, got values from {labels.min():g} to {labels.max():g}"
                )
            if labels.shape[1:] != tuple(output_shape[:-1]):
                raise DataError(f"labels have shape {labels.shape}, but the model outputs (n, "
                                f"{', '.join(map(str, output_shape))}); expected labels of shape "
                                f"(n, {', '.join(map(str, output_shape[:-1]))})")
            return labels.astype(np.int64)
        y = super().prepare_targets(y_arr, output_shape, dtype)
        if y.min() < 0:
            raise DataError("categorical_crossentropy one-hot targets must be non-negative")
        return y

    def get_config(self):
        config: dict[str, Any] = {"from_logits": self.from_logits}
        if self.label_smoothing:
            config["label_smoothing"] = self.label_smoothing
        return config


def _rows_per_sample(y: np.ndarray) -> int:
    """Number of softmax rows per sample (1 for (batch, classes); time steps for sequences)."""
    return int(np.prod(y.shape[1:-1])) if y.ndim > 2 else 1


_BY_NAME: dict[str, type[Loss]] = {
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "huber": Huber,
    "binary_crossentropy": BinaryCrossentropy,
    "bce": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": CategoricalCrossentropy,
    "cross_entropy": CategoricalCrossentropy,
}


def get(loss: str | Loss) -> Loss:
    """Resolve a loss name (``"mse"``, ``"binary_crossentropy"`` ...) or return a :class:`Loss` as is."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss.lower() in _BY_NAME:
        return _BY_NAME[loss.lower()]()
    raise ConfigError(f"unknown loss {loss!r}; expected one of {sorted(_BY_NAME)} or a Loss object")


def serialize(loss: Loss) -> dict[str, Any]:
    """The JSON form of a loss: ``{"name": ..., **loss.get_config()}``."""
    return {"name": loss.name, **loss.get_config()}


def deserialize(spec: dict[str, Any]) -> Loss:
    """Inverse of :func:`serialize`; an unknown name raises :class:`~barenet.errors.ConfigError`."""
    spec = dict(spec)
    cls = _BY_NAME.get(spec.pop("name", None))
    if cls is None:
        raise ConfigError(f"unknown loss in configuration {spec!r}")
    return cls(**spec)


__all__ = ["BinaryCrossentropy", "CategoricalCrossentropy", "Huber", "Loss", "MeanAbsoluteError", "MeanSquaredError",
    "deserialize", "get", "serialize"]
