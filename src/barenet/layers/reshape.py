"""Layers that only change the shape of each sample."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, ShapeError
from .base import Layer, register


@register
class Flatten(Layer):
    """Flatten each sample to a vector: ``(batch, d1, d2, ...)`` -> ``(batch, d1*d2*...)``."""

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad, cache):
        return grad.reshape(grad.shape[0], *self.input_shape)


@register
class Reshape(Layer):
    """Reshape each sample to ``target_shape`` (one entry may be -1): ``(batch, *in)`` -> ``(batch, *target)``."""

    def __init__(self, target_shape: tuple[int, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        target_shape = tuple(int(d) for d in target_shape)
        if sum(d == -1 for d in target_shape) > 1 or any(d < -1 or d == 0 for d in target_shape):
            raise ConfigError(f"Reshape target_shape must be positive sizes with at most one -1, got {target_shape}")
        self.target_shape = target_shape

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([d for d in self.target_shape if d != -1]))
        if -1 in self.target_shape:
            if size % known:
                raise ShapeError(f"{self.describe()} cannot reshape samples of shape {input_shape} ({size} values)")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if known != size:
            raise ShapeError(
                f"{self.describe()} cannot reshape samples of shape {input_shape} ({size} values) "
                f"to {self.target_shape} ({known} values)"
            )
        return self.target_shape

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        return x.reshape(x.shape[0], *self.output_shape)

    def backward(self, grad, cache):
        return grad.reshape(grad.shape[0], *self.input_shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}
