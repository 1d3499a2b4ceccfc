"""Data augmentation as layers: random changes applied to training batches only."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import register
from .conv import ImageLayer

FLIP_MODES = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}


@register
class RandomFlip(ImageLayer):
    r"""Mirror each training image with probability 1/2; the identity at inference.

    Placed first in an image network it gives the model a freshly flipped copy of the training set
    on every pass, which regularizes the way more data would, for images whose class survives the
    mirroring. Like :class:`~barenet.layers.Dropout` it draws from the model's generator, so a seeded
    model flips the same images on every run.

    Parameters
    ----------
    mode : "horizontal", "vertical" or "horizontal_and_vertical"
        Left-right mirroring, top-bottom, or each of the two drawn independently.
    data_format : "channels_last" or "channels_first"
        See :class:`~barenet.layers.conv.ImageLayer`.

    Shapes
    ------
    ``(batch, height, width, channels)`` to the same shape and dtype.

    Notes
    -----
    A flip only permutes pixels, :math:`y = P x`, so :math:`\partial L/\partial x = P^\top g = P g`:
    the gradient of a flipped image is flipped back the same way.
    """

    has_training_mode = True

    def __init__(self, mode: str = "horizontal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in FLIP_MODES:
            raise ConfigError(f"RandomFlip mode must be one of {sorted(FLIP_MODES)}, got {mode!r}")
        self.mode = mode

    def compute_output_shape(self, input_shape):
        self.image_shape(input_shape)  # checks that samples are images
        return tuple(input_shape)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        if not training:
            return x
        out = np.array(self.to_last(x))
        flipped = []
        for axis in FLIP_MODES[self.mode]:
            chosen = np.flatnonzero(self.rng.random(len(out)) < 0.5)
            out[chosen] = np.flip(out[chosen], axis=axis)
            flipped.append((axis, chosen))
        if cache is not None:
            cache["flipped"] = flipped
        return self.from_last(out)

    def backward(self, grad, cache):
        flipped = cache.get("flipped")
        if not flipped:
            return grad
        g = np.array(self.to_last(grad))
        for axis, chosen in reversed(flipped):
            g[chosen] = np.flip(g[chosen], axis=axis)
        return self.from_last(g)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
