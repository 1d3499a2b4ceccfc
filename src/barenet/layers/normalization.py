"""Batch normalization."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import Layer, register


@register
class BatchNormalization(Layer):
    r"""Normalize each feature (the last axis: features, or channels of channels-last images).

    Parameters
    ----------
    momentum : float
        Running statistics are updated as ``moving = momentum * moving + (1 - momentum) * batch``.
    epsilon : float
        Added to the variance before the square root.

    Shapes
    ------
    ``(batch, features)`` or ``(batch, ..., channels)``; statistics are taken over every axis
    but the last. ``gamma, beta, moving_mean, moving_variance : (features,)``.

    Notes
    -----
    Training: :math:`\hat x = (x - \mu_B)/\sqrt{\sigma_B^2 + \epsilon}`, :math:`y = \gamma \hat x + \beta`,
    with the (biased) batch mean and variance. Inference uses the moving averages instead.
    Backward in training mode, with :math:`m` values per feature and :math:`g = \partial L/\partial \hat x
    = \gamma\, \partial L/\partial y`:

    .. math:: \partial L/\partial x = \frac{1}{m\sqrt{\sigma_B^2+\epsilon}}
              \Big(m g - \sum g - \hat x \sum g \hat x\Big)
    """

    has_training_mode = True

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"BatchNormalization momentum must be in [0, 1), got {momentum!r}")
        if epsilon <= 0:
            raise ConfigError(f"BatchNormalization epsilon must be > 0, got {epsilon!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        n = self.input_shape[-1]
        self.add_param("gamma", np.ones(n, dtype=self.dtype))
        self.add_param("beta", np.zeros(n, dtype=self.dtype))
        self.buffers["moving_mean"] = np.zeros(n, dtype=self.dtype)
        self.buffers["moving_variance"] = np.ones(n, dtype=self.dtype)

    def forward(self, x, *, training=False):
        self.check_input(x)
        rows, reps = _wide_rows(x)
        # The centred values x - mu live in a buffer reused from call to call: for image batches a fresh
        # array per call costs more in page faults than the arithmetic itself. The normalized values
        # x_hat = (x - mu) / sigma are never stored: y = (x - mu) * (gamma / sigma) + beta needs one pass
        # fewer, and backward folds 1 / sigma into its per-feature factors.
        centred = self._centred = _reuse(getattr(self, "_centred", None), rows.shape, x.dtype)
        if training:
            m = x.dtype.type(x.size // x.shape[-1])
            mean = self._feature_sums(rows, reps) / m
            np.subtract(rows, np.tile(mean, reps), out=centred)
            var = _fold(np.einsum("ij,ij->j", centred, centred), reps) / m
            momentum = self.momentum
            for name, batch_value in (("moving_mean", mean), ("moving_variance", var)):
                self.buffers[name] *= momentum
                self.buffers[name] += (1 - momentum) * batch_value
        else:
            mean, var = self.buffers["moving_mean"], self.buffers["moving_variance"]
            np.subtract(rows, np.tile(mean, reps), out=centred)
        self._training = training
        self._inv_std = (1.0 / np.sqrt(var + self.epsilon)).astype(x.dtype)
        y = centred * np.tile(self.params["gamma"] * self._inv_std, reps)
        y += np.tile(self.params["beta"], reps)
        return y.reshape(x.shape)

    def backward(self, grad):
        g, reps = _wide_rows(grad)
        centred, inv_std = self._centred, self._inv_std
        dbeta = self._feature_sums(g, reps)
        dgamma = _fold(np.einsum("ij,ij->j", g, centred), reps) * inv_std  # sum of g * x_hat
        self.grads["beta"][...] = dbeta
        self.grads["gamma"][...] = dgamma
        scale = np.tile(self.params["gamma"] * inv_std, reps)
        if not self._training:
            return (g * scale).reshape(grad.shape)
        m = grad.dtype.type(grad.size // grad.shape[-1])
        dx = centred * np.tile(dgamma * inv_std / m, reps)  # x_hat * sum(g x_hat) / m
        np.subtract(g, dx, out=dx)
        dx -= np.tile(dbeta / m, reps)
        dx *= scale
        return dx.reshape(grad.shape)

    def _feature_sums(self, rows: np.ndarray, reps: int) -> np.ndarray:
        """Per-feature sums of wide rows, as one matrix-vector product (far faster than a strided reduction)."""
        ones = getattr(self, "_ones", None)
        if ones is None or ones.shape[0] != rows.shape[0] or ones.dtype != rows.dtype:
            ones = self._ones = np.ones(rows.shape[0], dtype=rows.dtype)
        return _fold(ones @ rows, reps)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def _reuse(buffer: np.ndarray | None, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``buffer`` when it already has this shape and dtype, else a new empty array."""
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        return np.empty(shape, dtype=dtype)
    return buffer


def _wide_rows(x: np.ndarray) -> tuple[np.ndarray, int]:
    """A 2-d view of ``x`` whose rows hold ``reps`` consecutive feature vectors.

    ``(batch, features)`` stays as is (``reps = 1``); ``(batch, ..., width, channels)`` becomes
    ``(batch * ..., width * channels)`` with ``reps = width``. Per-feature vectors are tiled ``reps``
    times to match. Long rows keep NumPy's inner loops long: with rows of only a few channels,
    broadcasting costs several times more per element.
    """
    if x.ndim < 3:
        return x.reshape(-1, x.shape[-1]), 1
    return x.reshape(-1, x.shape[-2] * x.shape[-1]), x.shape[-2]


def _fold(wide: np.ndarray, reps: int) -> np.ndarray:
    """Sum a ``(reps * features,)`` vector of per-position totals into ``(features,)``."""
    return wide if reps == 1 else wide.reshape(reps, -1).sum(axis=0)
