"""Adam and AdamW."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..kernels import optim
from ..layers.base import Layer
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

    the same step as above with fewer operations per element (the update is bound by memory traffic):
    one pass with numba (:func:`barenet.kernels.optim.adam`), 10 NumPy passes without. Their slots are
    ``m_sum`` and ``v_sum``; optimizer state saved with
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
        t = param.dtype.type
        step = self.iterations  # already incremented: 1-based
        b1, b2 = self.beta_1, self.beta_2
        m = self.slot("m_sum", key, param)
        v = self.slot("v_sum", key, param)
        segments, keys = self.segments(key, param)
        a = math.sqrt((1 - b2) / (1 - b2**step))
        optim.adam(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), segments,
                   self.shrink(keys, lr).astype(param.dtype, copy=False), t(b1), t(b2), t(self.epsilon / a),
                   t(lr * (1 - b1) / ((1 - b1**step) * a)), self.scratch(param).reshape(-1))

    def shrink(self, keys: list[str], lr: float) -> np.ndarray:
        """Factor applied to each listed parameter before the step: 1 (Adam has no weight decay)."""
        return np.ones(len(keys))

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov and Hutter, 2019):
    :math:`\theta \leftarrow (1 - \eta\lambda)\,\theta` before the Adam step, for the parameters that
    decay: kernels and embedding matrices, never biases or normalization parameters (the rule of
    :meth:`barenet.layers.Layer.decays`, read from the parameters' keys; the L2 penalty uses it too).

    The same as PyTorch's ``AdamW`` with the weights in a parameter group of ``weight_decay`` and the
    other parameters in a group without it.
    """

    def __init__(self, learning_rate: Any = 0.001, weight_decay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(learning_rate, **kwargs)
        if weight_decay < 0:
            raise ConfigError(f"AdamW weight_decay must be >= 0, got {weight_decay!r}")
        self.weight_decay = float(weight_decay)

    def shrink(self, keys, lr):
        return np.array([1 - lr * self.weight_decay if Layer.decays(key) else 1.0 for key in keys])

    def get_config(self):
        return {**super().get_config(), "weight_decay": self.weight_decay}
