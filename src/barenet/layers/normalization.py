"""Batch normalization."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, ShapeError
from ..kernels import normalization as kernels
from .base import Layer, register


@register
class BatchNormalization(Layer):
    r"""Normalize each feature or channel over the batch (and over every axis but the channel axis).

    Parameters
    ----------
    axis : int
        The axis of the features or channels, counting the batch axis as 0 (Keras's meaning); negative
        values count from the end. ``-1`` (default) suits ``(batch, features)`` and channels-last images;
        after a ``Conv2D(data_format="channels_first")`` use ``axis=1``.
    momentum : float
        Running statistics are updated as ``moving = momentum * moving + (1 - momentum) * batch``.
    epsilon : float
        Added to the variance before the square root.

    Shapes
    ------
    Any ``(batch, ...)``, output the same; statistics are taken over every axis but ``axis``.
    ``gamma, beta, moving_mean, moving_variance : (channels,)`` with ``channels = shape[axis]``.

    Notes
    -----
    Training: :math:`\hat x = (x - \mu_B)/\sqrt{\sigma_B^2 + \epsilon}`, :math:`y = \gamma \hat x + \beta`,
    with the (biased) batch mean and variance over :math:`m` values per channel. Inference uses the
    moving averages instead. Backward in training mode, with :math:`g = \partial L/\partial y`:

    .. math:: \partial L/\partial x = \frac{\gamma}{\sqrt{\sigma_B^2+\epsilon}}
              \Big(g - \tfrac1m \sum g - \hat x\, \tfrac1m \sum g \hat x\Big)

    Training needs more than one value per channel (a batch of one sample with nothing else to average
    over has no variance) and refuses such a batch, as PyTorch does. The arithmetic is in
    :mod:`barenet.kernels.normalization`.
    """

    has_training_mode = True
    splits_batch = True

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
            raise ConfigError(f"BatchNormalization axis must be an integer, got {axis!r}")
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"BatchNormalization momentum must be in [0, 1), got {momentum!r}")
        if epsilon <= 0:
            raise ConfigError(f"BatchNormalization epsilon must be > 0, got {epsilon!r}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        ndim = len(self.input_shape) + 1  # with the batch axis
        if not (1 <= self.axis < ndim or -ndim < self.axis <= -1):
            raise ShapeError(f"{self.describe()} cannot normalize axis {self.axis} of inputs (batch, "
                             f"{', '.join(map(str, self.input_shape))}); expected an axis from 1 to {ndim - 1} "
                             f"or from {1 - ndim} to -1 (axis 0 is the batch)")
        self._axis = self.axis % ndim
        n = self.input_shape[self._axis - 1]
        self.add_param("gamma", np.ones(n, dtype=self.dtype))
        self.add_param("beta", np.zeros(n, dtype=self.dtype))
        self.buffers["moving_mean"] = np.zeros(n, dtype=self.dtype)
        self.buffers["moving_variance"] = np.ones(n, dtype=self.dtype)

    def _channel_view(self, x: np.ndarray) -> np.ndarray:
        """``x`` as ``(outer, channels, inner)`` (see :mod:`barenet.kernels.normalization`)."""
        shape = x.shape
        return x.reshape(int(np.prod(shape[:self._axis])), shape[self._axis], -1)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        x3 = self._channel_view(x)
        if training:
            values = x3.shape[0] * x3.shape[2]
            if values < 2:
                raise ShapeError(f"{self.describe()} expected more than 1 value per channel when training, got "
                                 f"input of shape {x.shape}; train on batches of at least 2 samples (choose a "
                                 f"batch_size that does not leave a last batch of one)")
            mean, var = kernels.moments(x3)
            momentum = self.momentum
            for name, batch_value in (("moving_mean", mean), ("moving_variance", var)):
                self.buffers[name] *= momentum
                self.buffers[name] += (1 - momentum) * batch_value
        else:
            mean, var = self.buffers["moving_mean"], self.buffers["moving_variance"]
        inv_std = (1.0 / np.sqrt(var + self.epsilon)).astype(x.dtype)
        if cache is not None:  # backward needs x, the statistics and the mode: x_hat is recomputed there
            cache["x3"], cache["mean"], cache["inv_std"], cache["training"] = (x3, mean.astype(x.dtype), inv_std,
                                                                               training)
        return kernels.normalize(x3, mean, inv_std, self.params["gamma"], self.params["beta"]).reshape(x.shape)

    def backward(self, grad, cache):
        x3, mean, inv_std, training = cache["x3"], cache["mean"], cache["inv_std"], cache["training"]
        dx, dgamma, dbeta = kernels.backward(self._channel_view(grad), x3, mean, inv_std, self.params["gamma"],
                                             training)
        self.grads["gamma"][...] = dgamma
        self.grads["beta"][...] = dbeta
        return dx.reshape(grad.shape)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon}
