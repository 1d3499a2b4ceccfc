"""Inverted dropout."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import Layer, register


@register
class Dropout(Layer):
    r"""Zero each input with probability ``rate`` during training and scale the rest by :math:`1/(1-p)`.

    At inference (``training=False``) it is the identity, so no rescaling is needed there.
    The mask is drawn from the generator the model hands to :meth:`build`; set ``layer.rng``
    to a fresh seeded generator before each call to get the same mask again (as gradient checks do).

    Shapes: any ``(batch, ...)`` to the same shape.
    """

    has_training_mode = True

    def __init__(self, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ConfigError(f"Dropout rate must be in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x, *, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        keep = 1.0 - self.rate
        self._mask = (self.rng.random(x.shape, dtype=np.float32) < keep).astype(x.dtype)
        self._mask *= x.dtype.type(1.0 / keep)
        return x * self._mask

    def backward(self, grad):
        return grad if self._mask is None else grad * self._mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}
