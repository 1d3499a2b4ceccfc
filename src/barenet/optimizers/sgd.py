"""Stochastic gradient descent, with optional (Nesterov) momentum."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..kernels import optim
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
        t = param.dtype.type
        velocity = self.slot("velocity", key, param) if self.momentum else param
        optim.sgd(param.reshape(-1), grad.reshape(-1), velocity.reshape(-1), self.segments(key, param)[0],
                  t(lr), t(self.momentum), self.nesterov, self.scratch(param).reshape(-1))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
