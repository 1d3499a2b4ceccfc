"""Upsampling of images by whole factors: nearest neighbour or bilinear."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import register
from .conv import ImageLayer, normalize_pair

INTERPOLATIONS = ("nearest", "bilinear")


def bilinear_matrix(size: int, factor: int) -> np.ndarray:
    r"""The ``(size * factor, size)`` matrix that resizes a row of ``size`` values by linear interpolation.

    Notes
    -----
    Half-pixel centres, as Keras (``tf.image.resize``) and PyTorch (``align_corners=False``): output
    :math:`o` reads the input at :math:`s = (o + \tfrac12)/f - \tfrac12`, clamped at 0, i.e. between pixels
    :math:`\lfloor s \rfloor` and the next one (the last pixel for positions past it) with weights
    :math:`1 - (s - \lfloor s \rfloor)` and :math:`s - \lfloor s \rfloor`. Each row sums to 1.
    """
    source = np.maximum((np.arange(size * factor) + 0.5) / factor - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = source - low
    rows = np.arange(size * factor)
    matrix = np.zeros((size * factor, size))
    np.add.at(matrix, (rows, low), 1 - frac)
    np.add.at(matrix, (rows, high), frac)
    return matrix


@register
class UpSampling2D(ImageLayer):
    r"""Enlarge images by whole factors: ``(batch, height, width, channels)`` ->
    ``(batch, height * size[0], width * size[1], channels)``.

    Parameters
    ----------
    size : int or (int, int)
        The factors for height and width.
    interpolation : "nearest" or "bilinear"
        ``"nearest"`` repeats each pixel; ``"bilinear"`` interpolates between pixel centres (Keras's bilinear
        resize, PyTorch's ``interpolate(mode="bilinear", align_corners=False)``).
    data_format : "channels_last" or "channels_first"
        See :class:`~barenet.layers.conv.ImageLayer`.

    Notes
    -----
    Both modes are linear maps applied to the rows and then the columns of each channel:
    :math:`y = A_h\, x\, A_w^\top` with ``A = bilinear_matrix(size, factor)`` (for nearest, :math:`A` has a
    single 1 per row). The backward pass is the transposed map, :math:`\partial L/\partial x = A_h^\top g A_w`:
    for nearest, each input pixel receives the sum of the gradients of its copies.
    """

    def __init__(self, size: int | tuple[int, int] = (2, 2), interpolation: str = "nearest", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = normalize_pair(size, "size", "UpSampling2D")
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"UpSampling2D interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        self.interpolation = interpolation

    def compute_output_shape(self, input_shape):
        h, w, c = self.image_shape(input_shape)
        return self.sample_shape(h * self.size[0], w * self.size[1], c)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        if self.interpolation == "bilinear":
            h, w, _ = self.image_shape(self.input_shape)
            self._rows = bilinear_matrix(h, self.size[0]).astype(self.dtype)
            self._cols = bilinear_matrix(w, self.size[1]).astype(self.dtype)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        x = self.to_last(x)
        n, h, w, c = x.shape
        fh, fw = self.size
        if self.interpolation == "nearest":
            y = np.broadcast_to(x[:, :, None, :, None, :], (n, h, fh, w, fw, c)).reshape(n, h * fh, w * fw, c)
        else:
            rows, cols = self._rows.astype(x.dtype, copy=False), self._cols.astype(x.dtype, copy=False)
            t = np.matmul(rows, x.reshape(n, h, w * c)).reshape(n, h * fh, w, c)  # A_h x
            y = np.einsum("jw,niwc->nijc", cols, t, optimize=True)  # (A_h x) A_w^T
        return self.from_last(y)

    def backward(self, grad, cache):
        g = self.to_last(grad)
        n, oh, ow, c = g.shape
        fh, fw = self.size
        h, w = oh // fh, ow // fw
        if self.interpolation == "nearest":
            dx = g.reshape(n, h, fh, w, fw, c).sum(axis=(2, 4))
        else:
            rows, cols = self._rows.astype(g.dtype, copy=False), self._cols.astype(g.dtype, copy=False)
            t = np.einsum("jw,nijc->niwc", cols, g, optimize=True)  # g A_w
            dx = np.matmul(rows.T, t.reshape(n, oh, w * c)).reshape(n, h, w, c)  # A_h^T g A_w
        return self.from_last(dx)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "interpolation": self.interpolation}
