"""Cropping1D: drop steps at the start and end of each sequence (Keras's layer of that name)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, ShapeError
from .base import Layer, register


@register
class Cropping1D(Layer):
    """Keep the steps from ``start`` to ``time - end`` of each sequence: ``(batch, time, features)`` to
    ``(batch, time - start - end, features)``.

    Parameters
    ----------
    cropping : int or (int, int)
        Steps dropped at the start and at the end (one number: both).

    Notes
    -----
    ``y = x[:, start:time - end]``; the input gradient is the output gradient put back in place, zero on the
    cropped steps. Cropping to one step (``(k, time - k - 1)``) picks step ``k``, as a Transformer's pooler
    takes the first token.
    """

    def __init__(self, cropping: int | tuple[int, int] = (1, 1), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pair = (cropping, cropping) if isinstance(cropping, (int, np.integer)) else tuple(cropping)
        if len(pair) != 2 or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 0
                                     for c in pair):
            raise ConfigError(f"Cropping1D cropping must be an integer >= 0 or a pair (start, end), got {cropping!r}")
        self.cropping = (int(pair[0]), int(pair[1]))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ShapeError(f"{self.describe()} expects sequences (batch, time, features), got samples of shape "
                             f"{tuple(input_shape)}")
        kept = input_shape[0] - sum(self.cropping)
        if kept < 1:
            raise ShapeError(f"{self.describe()} crops {sum(self.cropping)} of {input_shape[0]} steps; at least one "
                             "must remain")
        return (kept, input_shape[1])

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        start, end = self.cropping
        return np.ascontiguousarray(x[:, start:x.shape[1] - end])

    def backward(self, grad, cache):
        if not cache.input_grad:
            return None
        start, _ = self.cropping
        dx = np.zeros((grad.shape[0], *self.input_shape), dtype=grad.dtype)
        dx[:, start:start + grad.shape[1]] = grad
        return dx

    def get_config(self):
        return {**super().get_config(), "cropping": list(self.cropping)}
