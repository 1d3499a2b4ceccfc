"""Batch and layer normalization."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers, threads
from ..errors import ConfigError, ShapeError
from ..kernels import layer_norm as layer_norm_kernels
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


@register
class LayerNormalization(Layer):
    r"""Normalize each sample over some of its axes (by default its features), as Keras's LayerNormalization.

    Parameters
    ----------
    axis : int or list of int
        The axes to normalize over, counting the batch axis as 0 (Keras's meaning); negative values count
        from the end. ``-1`` (default) normalizes each feature vector: each time step of a sequence, each
        pixel of a channels-last image; ``[1, 2, 3]`` a whole image. The batch axis cannot be one of them.
    epsilon : float
        Added to the variance before the square root.
    center, scale : bool
        Whether to learn the shift ``beta`` and the scale ``gamma``.
    beta_initializer, gamma_initializer : str or callable
        See :mod:`barenet.initializers` (``"zeros"`` and ``"ones"``).

    Shapes
    ------
    Any ``(batch, ...)``, output the same shape and dtype. ``gamma, beta`` have the sizes of the normalized axes
    in increasing axis order: ``(features,)`` for ``axis=-1``, ``(height, width, channels)`` for ``[1, 2, 3]``.

    Notes
    -----
    Per sample and position outside the normalized axes, over the :math:`N` values :math:`x_i` inside them:
    :math:`\hat x = (x - \mu)/\sqrt{\sigma^2 + \epsilon}` with the mean :math:`\mu` and the biased variance
    :math:`\sigma^2`, and :math:`y = \gamma \hat x + \beta` (:math:`\gamma, \beta` broadcast over the other axes).
    There are no running statistics: training and inference compute the same thing. Backward, with
    :math:`g = \gamma\,\partial L/\partial y` and means over the same :math:`N` values:

    .. math:: \partial L/\partial x = \frac{1}{\sqrt{\sigma^2+\epsilon}}
              \big(g - \overline{g} - \hat x\, \overline{g \hat x}\big)

    and :math:`\partial L/\partial \gamma = \sum \partial L/\partial y \odot \hat x`,
    :math:`\partial L/\partial \beta = \sum \partial L/\partial y` over the batch and the other axes.
    """

    supports_masking = True  # passes a padding mask on unchanged, as Keras's (each step alone with axis=-1)

    def __init__(self, axis: int | list[int] | tuple[int, ...] = -1, epsilon: float = 1e-3, center: bool = True,
                 scale: bool = True, beta_initializer: str | initializers.Initializer = "zeros",
                 gamma_initializer: str | initializers.Initializer = "ones", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
            raise ConfigError(f"LayerNormalization axis must be an integer or a non-empty list of integers, "
                              f"got {axis!r}")
        if not epsilon > 0:
            raise ConfigError(f"LayerNormalization epsilon must be > 0, got {epsilon!r}")
        self.axis: int | list[int] = [int(a) for a in axes] if isinstance(axis, (list, tuple)) else int(axis)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        ndim = len(self.input_shape) + 1  # with the batch axis
        given = self.axis if isinstance(self.axis, list) else [self.axis]
        bad = [a for a in given if not (1 <= a < ndim or -ndim < a <= -1)]
        axes = sorted({a % ndim for a in given})
        if bad or len(axes) != len(given):
            raise ShapeError(f"{self.describe()} cannot normalize axes {given} of inputs (batch, "
                             f"{', '.join(map(str, self.input_shape))}); expected distinct axes from 1 to {ndim - 1} "
                             f"or from {1 - ndim} to -1 (axis 0 is the batch)")
        self._axes = tuple(axes)
        shape = tuple(self.input_shape[a - 1] for a in axes)
        # gamma and beta as they broadcast against a batch: the normalized axes' sizes, 1 elsewhere
        self._broadcast = tuple(self.input_shape[a - 1] if a in axes else 1 for a in range(1, ndim))
        size = int(np.prod(shape))
        if self.scale:
            self.add_param("gamma", self.gamma_initializer(shape, size, size, rng, self.dtype))
        if self.center:
            self.add_param("beta", self.beta_initializer(shape, size, size, rng, self.dtype))

    def _compiled(self, x: np.ndarray) -> bool:
        """Whether the compiled kernels (:mod:`barenet.kernels.layer_norm`) serve ``x``: numba installed, the
        last axis only, a contiguous float32/float64 array that is not empty."""
        return (layer_norm_kernels.forward is not None and self._axes == (x.ndim - 1,) and x.size > 0
                and x.dtype in (np.float32, np.float64) and x.flags.c_contiguous)

    def _affine(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """``gamma`` and ``beta`` as ``(features,)`` vectors of ``dtype`` (ones and zeros where absent)."""
        features = self.input_shape[-1]
        gamma = self.params["gamma"].reshape(-1) if self.scale else np.ones(features, dtype)
        beta = self.params["beta"].reshape(-1) if self.center else np.zeros(features, dtype)
        return gamma.astype(dtype, copy=False), beta.astype(dtype, copy=False)

    def _forward_compiled(self, x: np.ndarray, cache) -> np.ndarray:
        x2 = x.reshape(-1, x.shape[-1])
        gamma, beta = self._affine(x.dtype)
        y, x_hat = np.empty_like(x2), np.empty_like(x2)
        inv_std = np.empty(len(x2), dtype=x.dtype)
        threads.run(lambda rows: layer_norm_kernels.forward(x2[rows], gamma, beta, self.epsilon, y[rows],
                                                            x_hat[rows], inv_std[rows]),
                    threads.parts(len(x2), x2.shape[1] * 4))
        if cache is not None:
            cache["x_hat"], cache["inv_std"] = x_hat.reshape(x.shape), inv_std.reshape(*x.shape[:-1], 1)
        return y.reshape(x.shape)

    def _backward_compiled(self, grad: np.ndarray, cache) -> np.ndarray | None:
        x_hat = cache["x_hat"].reshape(-1, grad.shape[-1])
        inv_std = cache["inv_std"].reshape(-1)
        g2 = np.ascontiguousarray(grad, dtype=x_hat.dtype).reshape(x_hat.shape)
        gamma, _ = self._affine(x_hat.dtype)
        dx = np.empty_like(x_hat)
        features = x_hat.shape[1]

        def part(rows: slice) -> tuple[np.ndarray, np.ndarray]:
            dgamma, dbeta = np.empty(features), np.empty(features)
            layer_norm_kernels.backward(g2[rows], x_hat[rows], inv_std[rows], gamma, dx[rows], dgamma, dbeta)
            return dgamma, dbeta

        sums = threads.run(part, threads.parts(len(x_hat), features * 4))
        if self.scale:
            self.grads["gamma"][...] = sum(s[0] for s in sums).reshape(self.grads["gamma"].shape)
        if self.center:
            self.grads["beta"][...] = sum(s[1] for s in sums).reshape(self.grads["beta"].shape)
        return dx.reshape(grad.shape) if cache.input_grad else None

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        if self._compiled(x):
            return self._forward_compiled(x, cache)
        mean = x.mean(axis=self._axes, keepdims=True)
        xc = x - mean
        var = np.mean(xc * xc, axis=self._axes, keepdims=True)
        inv_std = 1 / np.sqrt(var + x.dtype.type(self.epsilon))
        x_hat = xc * inv_std
        if cache is not None:
            cache["x_hat"], cache["inv_std"] = x_hat, inv_std
        y = x_hat * self.params["gamma"].reshape(self._broadcast) if self.scale else x_hat.copy()
        if self.center:
            y += self.params["beta"].reshape(self._broadcast)
        return y

    def backward(self, grad, cache):
        x_hat, inv_std = cache["x_hat"], cache["inv_std"]
        if self._compiled(x_hat) and inv_std.shape == (*x_hat.shape[:-1], 1) and grad.shape == x_hat.shape:
            return self._backward_compiled(grad, cache)
        others = tuple(a for a in range(grad.ndim) if a not in self._axes)  # the batch and unnormalized axes
        if self.scale:
            self.grads["gamma"][...] = np.sum(grad * x_hat, axis=others).reshape(self.grads["gamma"].shape)
        if self.center:
            self.grads["beta"][...] = np.sum(grad, axis=others).reshape(self.grads["beta"].shape)
        if not cache.input_grad:
            return None
        g = grad * self.params["gamma"].reshape(self._broadcast) if self.scale else grad
        return inv_std * (g - g.mean(axis=self._axes, keepdims=True)
                          - x_hat * np.mean(g * x_hat, axis=self._axes, keepdims=True))

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "beta_initializer": initializers.serialize(self.beta_initializer),
                "gamma_initializer": initializers.serialize(self.gamma_initializer)}
