"""RMSprop."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..kernels import optim
from .base import Optimizer


class RMSprop(Optimizer):
    r"""Scale each step by a running root mean square of past gradients:

    .. math:: s \leftarrow \rho s + (1-\rho) g^2, \qquad
              \theta \leftarrow \theta - \eta\, g / (\sqrt{s} + \epsilon)
    """

    slot_names = ("square_avg",)

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.9, epsilon: float = 1e-7, **kwargs) -> None:
        super().__init__(learning_rate, **kwargs)
        if not 0.0 < rho < 1.0:
            raise ConfigError(f"RMSprop rho must be in (0, 1), got {rho!r}")
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def update(self, key, param, grad, lr):
        t = param.dtype.type
        s = self.slot("square_avg", key, param)
        optim.rmsprop(param.reshape(-1), grad.reshape(-1), s.reshape(-1), self.segments(key, param)[0],
                      t(lr), t(self.rho), t(self.epsilon), self.scratch(param).reshape(-1))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}
