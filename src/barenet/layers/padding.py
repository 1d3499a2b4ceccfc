"""Zero padding around images."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from ..errors import ConfigError
from .base import register
from .conv import ImageLayer


def normalize_padding(padding: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """``1`` -> ``((1, 1), (1, 1))``; ``(1, 2)`` -> ``((1, 1), (2, 2))``; ``((1, 0), (2, 3))`` stays;
    anything else (or a negative size) -> :class:`ConfigError`."""
    def size(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0

    pairs: Any = None
    if size(padding):
        pairs = ((padding, padding), (padding, padding))
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(size(p) for p in padding):
            pairs = ((padding[0], padding[0]), (padding[1], padding[1]))
        elif all(isinstance(p, (tuple, list)) and len(p) == 2 and all(size(v) for v in p) for p in padding):
            pairs = tuple(tuple(p) for p in padding)
    if pairs is None:
        raise ConfigError(f"ZeroPadding2D padding must be an integer >= 0, a pair (height, width) of them or "
                          f"((top, bottom), (left, right)), got {padding!r}")
    return (int(pairs[0][0]), int(pairs[0][1])), (int(pairs[1][0]), int(pairs[1][1]))


@register
class ZeroPadding2D(ImageLayer):
    """Add rows and columns of zeros around images: ``(batch, height, width, channels)`` ->
    ``(batch, top + height + bottom, left + width + right, channels)``.

    Parameters
    ----------
    padding : int, (int, int) or ((int, int), (int, int))
        The same number on all four sides; ``(rows, columns)`` added both above and below, left and right;
        or ``((top, bottom), (left, right))``.
    data_format : "channels_last" or "channels_first"
        See :class:`~barenet.layers.conv.ImageLayer`.

    Notes
    -----
    The backward pass crops the gradient back to the image: the padding has no input to send it to.
    """

    def __init__(self, padding: int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = (1, 1),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.padding = normalize_padding(padding)

    def compute_output_shape(self, input_shape):
        h, w, c = self.image_shape(input_shape)
        (top, bottom), (left, right) = self.padding
        return self.sample_shape(top + h + bottom, left + w + right, c)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        return self.from_last(F.pad_spatial(self.to_last(x), self.padding))

    def backward(self, grad, cache):
        (top, _), (left, _) = self.padding
        h, w, _ = self.image_shape(self.input_shape)
        return self.from_last(self.to_last(grad)[:, top:top + h, left:left + w])

    def get_config(self):
        return {**super().get_config(), "padding": [list(p) for p in self.padding]}
