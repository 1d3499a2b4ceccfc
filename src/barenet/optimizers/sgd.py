"""Stochastic gradient descent, with optional (Nesterov) momentum."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import Optimizer


class SGD(Optimizer):
    r"""Gradient descent :math:`\theta \leftarrow \theta - \eta g`, or with momentum :math:`\mu`:

    .. math:: v \leftarrow \mu v - \eta g, \qquad \theta \leftarrow \theta + v

    and with ``nesterov=True``: :math:`\theta \leftarrow \theta + \mu v - \eta g` (the look-ahead
    form used by Keras and PyTorch).
    """

    slot_names = ("velocity",)

    def __init__(self, learning_rate: Any = 0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs) -> None:
        super().__init__(learning_rate, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ConfigError(f"SGD momentum must be in [0, 1), got {momentum!r}")
        if nesterov and momentum == 0:
            raise ConfigError("SGD nesterov=True needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def update(self, key, param, grad, lr):
        # In-place ufuncs through the optimizer's scratch array: no temporaries per step.
        lr = param.dtype.type(lr)
        tmp = self.scratch(param)
        np.multiply(grad, lr, out=tmp)  # eta g
        if self.momentum == 0.0:
            param -= tmp
            return
        mu = param.dtype.type(self.momentum)
        v = self.slot("velocity", key, param)
        v *= mu
        v -= tmp
        if self.nesterov:
            param -= tmp
            np.multiply(v, mu, out=tmp)
            param += tmp
        else:
            param += v

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
