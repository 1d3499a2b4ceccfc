"""Inverted dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..kernels import dropout as kernels
from .base import Layer, register


@register
class Dropout(Layer):
    r"""Zero each input with probability ``rate`` during training and scale the rest by :math:`1/(1-p)`.

    At inference (``training=False``) it is the identity, so no rescaling is needed there.
    The mask is drawn from the generator the model hands to :meth:`build` (one float32 uniform per
    input, kept where it is below ``1 - rate``); set ``layer.rng`` to a fresh seeded generator before each
    call to get the same mask again (as gradient checks do). Both directions are one pass each
    (:mod:`barenet.kernels.dropout`).

    Shapes: any ``(batch, ...)`` to the same shape.
    """

    has_training_mode = True
    supports_masking = True

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ConfigError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x, *, training=False, cache=None):
        if not training or self.rate == 0.0:
            return x
        x = np.ascontiguousarray(x)
        u = self.rng.random(x.shape, dtype=np.float32)
        mask = np.empty(x.shape, dtype=bool)
        y = np.empty_like(x)
        kernels.forward(x.reshape(-1), u.reshape(-1), 1.0 - self.rate, y.reshape(-1), mask.reshape(-1))
        if cache is not None:
            cache["mask"] = mask
        return y

    def backward(self, grad, cache):
        mask = cache.get("mask")
        if mask is None:
            return grad
        dx = np.empty(mask.shape, dtype=grad.dtype)
        kernels.backward(np.ascontiguousarray(grad).reshape(-1), mask.reshape(-1), 1.0 - self.rate, dx.reshape(-1))
        return dx

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}
