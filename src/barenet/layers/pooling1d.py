"""Pooling over sequences ``(batch, steps, features)``: max, average, global max and global average.

The windowed pools run the image pooling kernels (:mod:`barenet.kernels.pooling`) on a sequence seen as an
image one row high, so both kinds share one implementation and its tie and padding rules.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..errors import ConfigError, ShapeError
from ..kernels import pooling as kernels
from .base import Layer, register
from .conv import DATA_FORMATS, resolve_padding
from .pooling import window_counts


class SequenceLayer(Layer):
    """Base of layers over sequences ``(batch, steps, features)``.

    ``data_format="channels_last"`` is barenet's layout. With ``"channels_first"`` the layer takes and returns
    ``(batch, features, steps)`` (PyTorch's ``(N, C, L)``) and computes on the transposed view.
    """

    def __init__(self, *, data_format: str = "channels_last", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if data_format not in DATA_FORMATS:
            raise ConfigError(f"{type(self).__name__} data_format must be one of {DATA_FORMATS}, got {data_format!r}")
        self.data_format = data_format

    def sequence_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """``(steps, features)`` of one sample in this layer's ``data_format``."""
        if len(input_shape) != 2:
            order = "(steps, features)" if self.data_format == "channels_last" else "(features, steps)"
            raise ShapeError(f"{self.describe()} expects sequences {order} per sample, got sample shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape) if self.data_format == "channels_last" else tuple(input_shape[::-1])

    def sample_shape(self, steps: int, features: int) -> tuple[int, int]:
        """Inverse of :meth:`sequence_shape`."""
        return (steps, features) if self.data_format == "channels_last" else (features, steps)

    def to_last(self, x: np.ndarray) -> np.ndarray:
        """A ``(batch, steps, features)`` view of a batch given in this layer's layout."""
        return x.transpose(0, 2, 1) if self.data_format == "channels_first" else x

    def from_last(self, x: np.ndarray) -> np.ndarray:
        """A view of a ``(batch, steps, features)`` batch in this layer's layout."""
        return x.transpose(0, 2, 1) if self.data_format == "channels_first" else x

    def get_config(self):
        config = super().get_config()
        if self.data_format != "channels_last":
            config["data_format"] = self.data_format
        return config


def _positive(value: Any, what: str, owner: str) -> int:
    """``3`` or ``(3,)`` -> ``3``; anything but one positive integer -> :class:`ConfigError`."""
    item = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if not isinstance(item, (int, np.integer)) or isinstance(item, bool) or item < 1:
        raise ConfigError(f"{owner} {what} must be a positive integer, got {value!r}")
    return int(item)


class Pooling1D(SequenceLayer):
    """Shared shape logic of :class:`MaxPooling1D` and :class:`AveragePooling1D`.

    Parameters
    ----------
    pool_size : int
        Window length.
    strides : int or None
        Step between windows; ``None`` means ``pool_size``.
    padding : "valid" or "same"
        ``"valid"`` drops windows that do not fit; ``"same"`` pads so that there are ``ceil(steps / stride)``
        outputs, the extra step going at the end. Padded steps never take part: they are never a maximum and
        are not counted in an average.
    data_format : "channels_last" or "channels_first"
        See :class:`SequenceLayer`.

    Shapes
    ------
    ``(batch, steps, features)`` -> ``(batch, out_steps, features)``, same dtype.
    """

    splits_batch = True

    def __init__(self, pool_size: int = 2, strides: int | None = None, padding: str = "valid",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        self.pool_size = _positive(pool_size, "pool_size", name)
        self.strides = self.pool_size if strides is None else _positive(strides, "strides", name)
        if padding not in ("valid", "same"):
            raise ConfigError(f"{name} padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding

    def _pads(self, steps: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The 2-D kernels' pads for a sequence seen as a ``(1, steps)`` image."""
        return resolve_padding(self.padding, (1, steps), (1, self.pool_size), (1, self.strides), (1, 1))

    def compute_output_shape(self, input_shape):
        steps, features = self.sequence_shape(input_shape)
        out = F.conv_output_length(steps, self.pool_size, self.strides, 1, sum(self._pads(steps)[1]))
        if out < 1:
            raise ShapeError(f"{self.describe()} cannot pool sequences of {steps} steps with windows of "
                             f"{self.pool_size} and padding {self.padding!r}")
        return self.sample_shape(out, features)

    def _window(self) -> tuple[tuple[int, int], tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
        """``(pool, strides, pads)`` of the 2-D kernels."""
        return (1, self.pool_size), (1, self.strides), self._pads(self.sequence_shape(self.input_shape)[0])

    def _image(self, x: np.ndarray) -> np.ndarray:
        """``x`` as channels-last images one row high, ``(batch, 1, steps, features)``."""
        return self.to_last(x)[:, None]

    def _sequence(self, y: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`_image`."""
        return self.from_last(y[:, 0])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}


@register
class MaxPooling1D(Pooling1D):
    r"""Largest value of each window of steps, per feature.

    Notes
    -----
    :math:`y_{n,p,c} = \max_i \tilde x_{n,\, p s + i,\, c}`; the gradient of each output goes to the one step
    that won its window (the first on a tie, as in PyTorch).
    """

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        out, winners = kernels.max_forward(self._image(x), *self._window())
        if cache is not None:
            cache["winners"] = winners
        return self._sequence(out)

    def backward(self, grad, cache):
        steps, features = self.sequence_shape(self.input_shape)
        dx = kernels.max_backward(self._image(grad), cache["winners"], (len(grad), 1, steps, features),
                                  *self._window())
        return self._sequence(dx)


@register
class AveragePooling1D(Pooling1D):
    r"""Mean of each window of steps, per feature.

    Notes
    -----
    :math:`y_{n,p,c} = \frac{1}{|W_p|}\sum_{i \in W_p} x_{n,i,c}` over the window's steps inside the sequence
    (padding is not counted, as in Keras), so :math:`\partial L/\partial x_{n,i,c} = \sum_{p:\,i \in W_p}
    g_{n,p,c} / |W_p|`.
    """

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        steps = self.sequence_shape(self.input_shape)[0]
        out = self.sequence_shape(self.output_shape)[0]
        counts = window_counts(steps, self.pool_size, self.strides, self._pads(steps)[1][0], out)
        self._scale = (1 / counts[None, :]).astype(self.dtype)  # (1, out): 1 / steps inside each window

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        out = kernels.average_forward(self._image(x), *self._window(), self._scale.astype(x.dtype, copy=False))
        return self._sequence(out)

    def backward(self, grad, cache):
        steps, features = self.sequence_shape(self.input_shape)
        dx = kernels.average_backward(self._image(grad), (len(grad), 1, steps, features), *self._window(),
                                      self._scale.astype(grad.dtype, copy=False))
        return self._sequence(dx)


@register
class GlobalAveragePooling1D(SequenceLayer):
    r"""Mean over the steps: ``(batch, steps, features)`` -> ``(batch, features)``; over the real steps only
    when the input carries a padding mask (:mod:`barenet.models.masking`), as in Keras.

    Notes
    -----
    :math:`y_{n,c} = \frac1T\sum_t x_{n,t,c}`, so :math:`\partial L/\partial x_{n,t,c} = g_{n,c}/T`. With a
    mask :math:`m`, :math:`y_{n,c} = \sum_t m_{n,t} x_{n,t,c} / \sum_t m_{n,t}` and
    :math:`\partial L/\partial x_{n,t,c} = m_{n,t}\, g_{n,c} / \sum_t m_{n,t}`. A sequence without a real step
    pools to zeros (Keras divides 0 by 0 there).
    """

    supports_masking = True

    def compute_output_shape(self, input_shape):
        return (self.sequence_shape(input_shape)[1],)

    def compute_mask(self, x, mask=None):
        return None  # the steps are gone

    def forward(self, x, *, training=False, cache=None, mask=None):
        self.check_input(x)
        if mask is None:
            return self.to_last(x).mean(axis=1, dtype=x.dtype)
        weights = self._step_weights(mask, x.dtype)
        if cache is not None:
            cache["weights"] = weights
        return np.einsum("nt,ntc->nc", weights, self.to_last(x))

    @staticmethod
    def _step_weights(mask: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """``m / sum_t m`` per sequence ``(batch, steps)``; zeros for a sequence without a real step."""
        m = np.asarray(mask, dtype=dtype)
        return m / np.maximum(m.sum(axis=1, keepdims=True), 1)

    def backward(self, grad, cache):
        steps, features = self.sequence_shape(self.input_shape)
        if "weights" in cache:
            return self.from_last(cache["weights"][:, :, None] * grad[:, None, :])
        g = grad * grad.dtype.type(1 / steps)
        return self.from_last(np.broadcast_to(g[:, None, :], (len(grad), steps, features)).copy())


@register
class GlobalMaxPooling1D(SequenceLayer):
    r"""Largest value over the steps: ``(batch, steps, features)`` -> ``(batch, features)``.

    Notes
    -----
    :math:`y_{n,c} = \max_t x_{n,t,c}`; the gradient goes to the first step that reaches the maximum (as in
    PyTorch), all others get zero.
    """

    def compute_output_shape(self, input_shape):
        return (self.sequence_shape(input_shape)[1],)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        x = self.to_last(x)
        winners = x.argmax(axis=1)[:, None, :]  # (batch, 1, features): the first maximum
        if cache is not None:
            cache["winners"] = winners
        return np.take_along_axis(x, winners, axis=1)[:, 0, :]

    def backward(self, grad, cache):
        steps, features = self.sequence_shape(self.input_shape)
        dx = np.zeros((len(grad), steps, features), dtype=grad.dtype)
        np.put_along_axis(dx, cache["winners"], grad[:, None, :], axis=1)
        return self.from_last(dx)
