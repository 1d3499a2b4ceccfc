"""Pooling over image windows: max, average, global average and global max."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..errors import ConfigError, ShapeError
from ..kernels import pooling as kernels
from .base import register
from .conv import ImageLayer, normalize_padding, normalize_pair, padding_config, resolve_padding


class Pooling2D(ImageLayer):
    """Shared shape logic of :class:`MaxPooling2D` and :class:`AveragePooling2D`.

    Parameters
    ----------
    pool_size : int or (int, int)
        Window height and width.
    strides : int, (int, int) or None
        Step between windows; ``None`` means ``pool_size`` (windows that tile the image).
    padding : "valid", "same", int, (int, int) or ((int, int), (int, int))
        ``"valid"`` drops windows that do not fit; ``"same"`` pads so that there are
        ``ceil(size / stride)`` outputs, the extra row/column going at the bottom/right; an integer
        ``p`` or a pair ``(ph, pw)`` pads that many rows/columns on each side (PyTorch's ``padding``),
        ``((top, bottom), (left, right))`` those amounts (ONNX's ``pads``); each smaller than the window,
        so that every window holds a pixel of the image. Padded pixels never take part: they are never a
        maximum and are not counted in an average (unless ``AveragePooling2D(count_include_pad=True)``).
    data_format : "channels_last" or "channels_first"
        See :class:`~barenet.layers.conv.ImageLayer`.

    Shapes
    ------
    ``(batch, height, width, channels)`` -> ``(batch, out_height, out_width, channels)``, same dtype.
    """

    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
                 padding: str | int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = "valid",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        self.pool_size = normalize_pair(pool_size, "pool_size", name)
        self.strides = self.pool_size if strides is None else normalize_pair(strides, "strides", name)
        self.padding = normalize_padding(padding, name)
        if not isinstance(self.padding, str):
            sides = resolve_padding(self.padding, (1, 1), self.pool_size, self.strides, (1, 1))
            if any(p >= k for pair, k in zip(sides, self.pool_size, strict=True) for p in pair):
                raise ConfigError(f"{name} pads {padding!r}, as much as its {self.pool_size} window or more; "
                                  f"padding must be smaller than the window on every side, so that every "
                                  f"window holds a pixel of the image")

    def compute_output_shape(self, input_shape):
        h, w, c = self.image_shape(input_shape)
        pads = resolve_padding(self.padding, (h, w), self.pool_size, self.strides, (1, 1))
        out = [F.conv_output_length(n, k, s, 1, sum(p))
               for n, k, s, p in zip((h, w), self.pool_size, self.strides, pads, strict=True)]
        if min(out) < 1:
            raise ShapeError(f"{self.describe()} cannot pool {h}x{w} images with {self.pool_size} windows "
                             f"and padding {self.padding!r}")
        return self.sample_shape(out[0], out[1], c)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        h, w, _ = self.image_shape(self.input_shape)
        self._pads = resolve_padding(self.padding, (h, w), self.pool_size, self.strides, (1, 1))

    def _image_shape(self, x: np.ndarray) -> tuple[int, int, int, int]:
        """``(batch, height, width, channels)`` of a batch in this layer's layout."""
        return (len(x), *self.image_shape(self.input_shape))

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": padding_config(self.padding)}


@register
class MaxPooling2D(Pooling2D):
    r"""Largest value of each window, per channel.

    Notes
    -----
    :math:`y_{n,p,q,c} = \max_{i,j} \tilde x_{n,\, p s_h + i,\, q s_w + j,\, c}`. The gradient of each output
    goes to the one input that won its window (the first in row-major order on a tie, as in PyTorch),
    so :math:`\partial L/\partial x` is a scatter of :math:`\partial L/\partial y` to the winners. The
    forward pass records each window's winning tap (:mod:`barenet.kernels.pooling`), so the backward
    pass compares nothing.
    """

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        out, winners = kernels.max_forward(self.to_last(x), self.pool_size, self.strides, self._pads)
        if cache is not None:
            cache["winners"], cache["shape"] = winners, self._image_shape(x)
        return self.from_last(out)

    def backward(self, grad, cache):
        dx = kernels.max_backward(self.to_last(grad), cache["winners"], cache["shape"], self.pool_size,
                                  self.strides, self._pads)
        return self.from_last(dx)


@register
class AveragePooling2D(Pooling2D):
    r"""Mean of each window, per channel.

    Notes
    -----
    :math:`y_{n,p,q,c} = \frac{1}{|W_{pq}|}\sum_{(i,j) \in W_{pq}} x_{n,i,j,c}` over the window's pixels inside
    the image (padding is not counted, as in Keras), so
    :math:`\partial L/\partial x_{n,i,j,c} = \sum_{pq:\,(i,j) \in W_{pq}} g_{n,p,q,c} / |W_{pq}|`.

    ``count_include_pad=True`` divides every window by its full size :math:`k_h k_w` instead, padded zeros
    counted: PyTorch's ``AvgPool2d`` default and ONNX ``AveragePool(count_include_pad=1)``, which an
    imported network needs to give the same numbers. It differs from the default only where windows
    overlap the padding.
    """

    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
                 padding: str | int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = "valid", *,
                 count_include_pad: bool = False, **kwargs: Any) -> None:
        super().__init__(pool_size, strides, padding, **kwargs)
        if not isinstance(count_include_pad, (bool, np.bool_)):
            raise ConfigError(f"AveragePooling2D count_include_pad must be True or False, got {count_include_pad!r}")
        self.count_include_pad = bool(count_include_pad)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        h, w, _ = self.image_shape(self.input_shape)
        out_hw = self.image_shape(self.output_shape)[:2]
        if self.count_include_pad:
            self._scale = np.full(out_hw, 1 / (self.pool_size[0] * self.pool_size[1]), dtype=self.dtype)
            return
        rows, cols = (window_counts(n, k, s, pad[0], o) for n, k, s, pad, o in
                      zip((h, w), self.pool_size, self.strides, self._pads, out_hw, strict=True))
        self._scale = (1 / np.outer(rows, cols)).astype(self.dtype)  # (oh, ow): 1 / pixels inside each window

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        if cache is not None:
            cache["shape"] = self._image_shape(x)
        out = kernels.average_forward(self.to_last(x), self.pool_size, self.strides, self._pads,
                                      self._scale.astype(x.dtype, copy=False))
        return self.from_last(out)

    def backward(self, grad, cache):
        dx = kernels.average_backward(self.to_last(grad), cache["shape"], self.pool_size, self.strides,
                                      self._pads, self._scale.astype(grad.dtype, copy=False))
        return self.from_last(dx)

    def get_config(self):
        config = super().get_config()
        if self.count_include_pad:
            config["count_include_pad"] = True
        return config


@register
class GlobalAveragePooling2D(ImageLayer):
    r"""Mean over height and width: ``(batch, height, width, channels)`` -> ``(batch, channels)``.

    Notes
    -----
    :math:`y_{n,c} = \frac{1}{HW}\sum_{i,j} x_{n,i,j,c}`, so :math:`\partial L/\partial x_{n,i,j,c} = g_{n,c}/(HW)`.
    """

    def compute_output_shape(self, input_shape):
        return (self.image_shape(input_shape)[2],)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        return self.to_last(x).mean(axis=(1, 2), dtype=x.dtype)

    def backward(self, grad, cache):
        h, w, c = self.image_shape(self.input_shape)
        g = grad * grad.dtype.type(1 / (h * w))
        return self.from_last(np.broadcast_to(g[:, None, None, :], (len(grad), h, w, c)).copy())



@register
class GlobalMaxPooling2D(ImageLayer):
    r"""Largest value over height and width: ``(batch, height, width, channels)`` -> ``(batch, channels)``.

    Notes
    -----
    :math:`y_{n,c} = \max_{i,j} x_{n,i,j,c}`; the gradient goes to the first pixel in row-major order that
    reaches the maximum (as in PyTorch), all others get zero.
    """

    def compute_output_shape(self, input_shape):
        return (self.image_shape(input_shape)[2],)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        n, (h, w, c) = len(x), self.image_shape(self.input_shape)
        pixels = self.to_last(x).reshape(n, h * w, c)
        winners = pixels.argmax(axis=1)[:, None, :]  # (batch, 1, channels): the first maximum
        if cache is not None:
            cache["winners"] = winners
        return np.take_along_axis(pixels, winners, axis=1)[:, 0, :]

    def backward(self, grad, cache):
        h, w, c = self.image_shape(self.input_shape)
        dx = np.zeros((len(grad), h * w, c), dtype=grad.dtype)
        np.put_along_axis(dx, cache["winners"], grad[:, None, :], axis=1)
        return self.from_last(dx.reshape(len(grad), h, w, c))


def window_counts(size: int, pool: int, stride: int, pad_before: int, out: int) -> np.ndarray:
    r"""Image pixels (not padding) under each of the ``out`` windows along one axis: int64 ``(out,)``.

    Notes
    -----
    Window :math:`p` covers image positions :math:`[ps - t,\ ps - t + k)` for ``pad_before`` :math:`t`, so it
    holds :math:`\min(ps - t + k, n) - \max(ps - t, 0)` of the ``size`` :math:`n` pixels. A 2-D window's
    count is the product of its row and column counts, so a layer's counts are one outer product.
    """
    start = np.arange(out, dtype=np.int64) * stride - pad_before
    return np.minimum(start + pool, size) - np.maximum(start, 0)

