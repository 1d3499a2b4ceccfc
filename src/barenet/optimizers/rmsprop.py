"""RMSprop."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..kernels import optim
from .base import Optimizer, check_epsilon


class RMSprop(Optimizer):
    r"""Scale each step by a running root mean square of past gradients:

    .. math:: s \leftarrow \rho s + (1-\rho) g^2, \qquad \theta \leftarrow \theta - \eta\, g / \sqrt{s + \epsilon}

    as Keras 3 does (``epsilon_placement="keras"``, the default), or as PyTorch does
    (``epsilon_placement="pytorch"``): :math:`\theta \leftarrow \theta - \eta\, g / (\sqrt{s} + \epsilon)`.

    Parameters
    ----------
    learning_rate : float or Schedule
    rho : float in (0, 1)
        Decay rate of the running mean of squared gradients (Keras's default; PyTorch calls it ``alpha`` and
        defaults to 0.99).
    epsilon : float > 0
        Keras's default, 1e-7 (PyTorch's is 1e-8).
    epsilon_placement : {"keras", "pytorch"}
        ``"keras"`` takes the steps of ``keras.optimizers.RMSprop`` (without momentum, not centered);
        ``"pytorch"`` with ``rho=0.99, epsilon=1e-8`` those of ``torch.optim.RMSprop``. A configuration saved
        before this setting existed has no ``epsilon_placement`` and loads with ``"pytorch"``, the
        formulation it was trained with.
    clipnorm, global_clipnorm : float, optional
        See :class:`~barenet.optimizers.Optimizer`.
    """

    slot_names = ("square_avg",)
    legacy_config = {"epsilon_placement": "pytorch"}

    def __init__(self, learning_rate: Any = 0.001, rho: float = 0.9, epsilon: float = 1e-7, *,
                 epsilon_placement: str = "keras", **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        if not 0.0 < rho < 1.0:
            raise ConfigError(f"RMSprop rho must be in (0, 1), got {rho!r}")
        self.rho = float(rho)
        self.epsilon, self.epsilon_placement = check_epsilon("RMSprop", epsilon, epsilon_placement)

    def update(self, key, param, grad, lr):
        t = param.dtype.type
        s = self.slot("square_avg", key, param)
        optim.rmsprop(param.reshape(-1), grad.reshape(-1), s.reshape(-1), self.segments(key, param)[0],
                      t(lr), t(self.rho), t(self.epsilon), self.epsilon_placement == "keras",
                      self.scratch(param).reshape(-1))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon,
                "epsilon_placement": self.epsilon_placement}
