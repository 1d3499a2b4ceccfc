"""Pooling over image windows: max, average and global average."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..errors import ConfigError, ShapeError
from .base import register
from .conv import ImageLayer, normalize_pair, resolve_padding


class Pooling2D(ImageLayer):
    """Shared shape logic of :class:`MaxPooling2D` and :class:`AveragePooling2D`.

    Parameters
    ----------
    pool_size : int or (int, int)
        Window height and width.
    strides : int, (int, int) or None
        Step between windows; ``None`` means ``pool_size`` (windows that tile the image).
    padding : "valid" or "same"
        ``"valid"`` drops windows that do not fit; ``"same"`` pads so that there are
        ``ceil(size / stride)`` outputs, the extra row/column going at the bottom/right. Padded
        pixels never take part: they are never a maximum and are not counted in an average.
    data_format : "channels_last" or "channels_first"
        See :class:`~barenet.layers.conv.ImageLayer`.

    Shapes
    ------
    ``(batch, height, width, channels)`` -> ``(batch, out_height, out_width, channels)``, same dtype.
    """

    def __init__(self, pool_size: int | tuple[int, int] = 2, strides: int | tuple[int, int] | None = None,
                 padding: str = "valid", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        self.pool_size = normalize_pair(pool_size, "pool_size", name)
        self.strides = self.pool_size if strides is None else normalize_pair(strides, "strides", name)
        if padding not in ("valid", "same"):
            raise ConfigError(f"{name} padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding

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
        oh, ow, _ = self.image_shape(self.output_shape)
        self._out_hw = (oh, ow)
        # When windows do not overlap, each input pixel gets the gradient of at most one output.
        self._overlap = self.strides[0] < self.pool_size[0] or self.strides[1] < self.pool_size[1]

    def taps(self):
        """``(i, j, rows, cols)`` per window offset; ``x[:, rows, cols]`` is a strided view of the padded
        image holding tap ``(i, j)`` of every window (see :func:`barenet.functional.window_slices`)."""
        return F.window_slices(self.pool_size, self.strides, (1, 1), self._out_hw)

    def scatter(self, dxp: np.ndarray, rows: slice, cols: slice, a: np.ndarray, b: np.ndarray) -> None:
        """``dxp[:, rows, cols] += a * b``, written in place when windows do not overlap."""
        if self._overlap:
            dxp[:, rows, cols] += a * b
        else:
            np.multiply(a, b, out=dxp[:, rows, cols])

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


@register
class MaxPooling2D(Pooling2D):
    r"""Largest value of each window, per channel.

    Notes
    -----
    :math:`y_{n,p,q,c} = \max_{i,j} \tilde x_{n,\, p s_h + i,\, q s_w + j,\, c}`. The gradient of each output
    goes to the one input that won its window (the first in row-major order on a tie, as in PyTorch),
    so :math:`\partial L/\partial x` is a scatter of :math:`\partial L/\partial y` to the winners. The
    backward pass walks the ``ph * pw`` window taps in order: each tap equal to its window's maximum takes
    the gradient still pending for that window and clears it, so later ties get nothing.
    """

    def forward(self, x, *, training=False):
        self.check_input(x)
        x = self.to_last(x)
        pad_value = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
        xp = F.pad_spatial(x, self._pads, pad_value)
        out = None
        for _, _, rows, cols in self.taps():
            out = xp[:, rows, cols].copy() if out is None else np.maximum(out, xp[:, rows, cols], out=out)
        self._xp, self._out = xp, out
        return self.from_last(out)

    def backward(self, grad):
        pending = np.array(self.to_last(grad))  # gradient not yet given to a window's winner
        xp, out = self._xp, self._out
        dxp = np.zeros(xp.shape, dtype=grad.dtype)
        last = self.pool_size[0] * self.pool_size[1] - 1
        for k, (_, _, rows, cols) in enumerate(self.taps()):
            hit = xp[:, rows, cols] == out
            self.scatter(dxp, rows, cols, pending, hit)
            if k < last:
                np.multiply(pending, ~hit, out=pending)  # later ties get nothing
        return self.from_last(_crop(dxp, self._pads))


@register
class AveragePooling2D(Pooling2D):
    r"""Mean of each window, per channel.

    Notes
    -----
    :math:`y_{n,p,q,c} = \frac{1}{|W_{pq}|}\sum_{(i,j) \in W_{pq}} x_{n,i,j,c}` over the window's pixels inside
    the image (padding is not counted, as in Keras), so
    :math:`\partial L/\partial x_{n,i,j,c} = \sum_{pq:\,(i,j) \in W_{pq}} g_{n,p,q,c} / |W_{pq}|`.
    """

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        h, w, _ = self.image_shape(self.input_shape)
        rows, cols = (window_counts(n, k, s, pad[0], o) for n, k, s, pad, o in
                      zip((h, w), self.pool_size, self.strides, self._pads, self._out_hw, strict=True))
        count = np.outer(rows, cols).astype(self.dtype)[None, :, :, None]
        self._scale = 1 / count  # (1, oh, ow, 1): 1 / pixels inside each window

    def forward(self, x, *, training=False):
        self.check_input(x)
        xp = F.pad_spatial(self.to_last(x), self._pads)
        self._padded_shape = xp.shape
        out = None
        for _, _, rows, cols in self.taps():
            out = xp[:, rows, cols].copy() if out is None else np.add(out, xp[:, rows, cols], out=out)
        out *= self._scale
        return self.from_last(out)

    def backward(self, grad):
        g = self.to_last(grad)
        dxp = np.zeros(self._padded_shape, dtype=grad.dtype)
        for _, _, rows, cols in self.taps():
            self.scatter(dxp, rows, cols, g, self._scale)
        return self.from_last(_crop(dxp, self._pads))


@register
class GlobalAveragePooling2D(ImageLayer):
    r"""Mean over height and width: ``(batch, height, width, channels)`` -> ``(batch, channels)``.

    Notes
    -----
    :math:`y_{n,c} = \frac{1}{HW}\sum_{i,j} x_{n,i,j,c}`, so :math:`\partial L/\partial x_{n,i,j,c} = g_{n,c}/(HW)`.
    """

    def compute_output_shape(self, input_shape):
        return (self.image_shape(input_shape)[2],)

    def forward(self, x, *, training=False):
        self.check_input(x)
        return self.to_last(x).mean(axis=(1, 2), dtype=x.dtype)

    def backward(self, grad):
        h, w, c = self.image_shape(self.input_shape)
        g = grad * grad.dtype.type(1 / (h * w))
        return self.from_last(np.broadcast_to(g[:, None, None, :], (len(grad), h, w, c)).copy())


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


def _crop(x: np.ndarray, pads) -> np.ndarray:
    (top, bottom), (left, right) = pads
    return x[:, top:x.shape[1] - bottom, left:x.shape[2] - right, :]
