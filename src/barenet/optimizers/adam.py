"""Adam and AdamW."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import Optimizer


class Adam(Optimizer):
    r"""Adaptive moment estimation (Kingma and Ba, 2015).

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2 \\
        \hat m = m / (1-\beta_1^t), \qquad \hat v = v / (1-\beta_2^t) \\
        \theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)

    with :math:`t` the 1-based step number.

    The moments are kept as exponentially weighted *sums*, :math:`M = m/(1-\beta_1)` and
    :math:`V = v/(1-\beta_2)`, which update without scaling the gradient:

    .. math::
        M \leftarrow \beta_1 M + g, \qquad V \leftarrow \beta_2 V + g^2, \qquad
        \theta \leftarrow \theta - \frac{\eta (1-\beta_1)}{(1-\beta_1^t)\, a}\,
        \frac{M}{\sqrt{V} + \epsilon / a}, \quad a = \sqrt{\frac{1-\beta_2}{1-\beta_2^t}}

    the same step as above, in 10 element-wise passes over the parameters instead of 13 (the update is
    bound by memory traffic). Their slots are ``m_sum`` and ``v_sum``; optimizer state saved with
    ``m``/``v`` slots (the moments themselves) is converted on :meth:`set_state`.
    """

    slot_names = ("m_sum", "v_sum")

    def legacy_slots(self) -> dict[str, tuple[str, float]]:
        return {"m": ("m_sum", 1 / (1 - self.beta_1)), "v": ("v_sum", 1 / (1 - self.beta_2))}

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"Adam {name} must be in [0, 1), got {beta!r}")
        if not epsilon > 0:
            raise ConfigError(f"Adam epsilon must be > 0, got {epsilon!r}")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def update(self, key, param, grad, lr):
        # Every step goes through one scratch array with in-place ufuncs: no temporaries are allocated.
        t = param.dtype.type
        step = self.iterations  # already incremented: 1-based
        b1, b2 = self.beta_1, self.beta_2
        m = self.slot("m_sum", key, param)
        v = self.slot("v_sum", key, param)
        tmp = self.scratch(param)
        m *= t(b1)
        m += grad
        np.square(grad, out=tmp)
        v *= t(b2)
        v += tmp
        a = math.sqrt((1 - b2) / (1 - b2**step))
        np.sqrt(v, out=tmp)
        tmp += t(self.epsilon / a)
        np.divide(m, tmp, out=tmp)
        tmp *= t(lr * (1 - b1) / ((1 - b1**step) * a))
        param -= tmp

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov and Hutter, 2019):
    :math:`\theta \leftarrow \theta - \eta\lambda\theta` before the Adam step.
    Decay applies to every parameter with more than one dimension (kernels, not biases or
    normalization scales)."""

    def __init__(self, learning_rate: Any = 0.001, weight_decay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        if weight_decay < 0:
            raise ConfigError(f"AdamW weight_decay must be >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)

    def before_update(self, params, lr):
        for param in params.values():
            if param.ndim > 1:
                param *= param.dtype.type(1 - lr * self.weight_decay)

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.weight_decay}
