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
        axes = tuple(range(x.ndim - 1))
        if training:
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            m = self.momentum
            self.buffers["moving_mean"] *= m
            self.buffers["moving_mean"] += (1 - m) * mean
            self.buffers["moving_variance"] *= m
            self.buffers["moving_variance"] += (1 - m) * var
        else:
            mean, var = self.buffers["moving_mean"], self.buffers["moving_variance"]
        self._training = training
        self._inv_std = (1.0 / np.sqrt(var + self.epsilon)).astype(x.dtype)
        self._xhat = (x - mean) * self._inv_std
        return self._xhat * self.params["gamma"] + self.params["beta"]

    def backward(self, grad):
        axes = tuple(range(grad.ndim - 1))
        xhat = self._xhat
        self.grads["gamma"][...] = np.sum(grad * xhat, axis=axes)
        self.grads["beta"][...] = np.sum(grad, axis=axes)
        g = grad * self.params["gamma"]
        if not self._training:
            return g * self._inv_std
        m = grad.size // grad.shape[-1]
        return (self._inv_std / m) * (m * g - g.sum(axis=axes) - xhat * np.sum(g * xhat, axis=axes))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}
