"""Stochastic gradient descent, with optional (Nesterov) momentum."""

from __future__ import annotations

from typing import Any

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
        lr = param.dtype.type(lr)
        if self.momentum == 0.0:
            param -= lr * grad
            return
        mu = param.dtype.type(self.momentum)
        v = self.slot("velocity", key, param)
        v *= mu
        v -= lr * grad
        if self.nesterov:
            param += mu * v - lr * grad
        else:
            param += v

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
