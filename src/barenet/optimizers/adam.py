"""Adam and AdamW."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..kernels import optim
from ..layers.base import Layer
from .base import Optimizer, check_epsilon


class Adam(Optimizer):
    r"""Adaptive moment estimation (Kingma and Ba, 2015).

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g, \qquad v \leftarrow \beta_2 v + (1-\beta_2) g^2

    with :math:`t` the 1-based step number, then as Keras 3 does (``epsilon_placement="keras"``, the default)

    .. math:: \theta \leftarrow \theta - \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,\frac{m}{\sqrt v + \epsilon}

    or as PyTorch does (``epsilon_placement="pytorch"``)

    .. math:: \hat m = m / (1-\beta_1^t), \quad \hat v = v / (1-\beta_2^t), \quad
              \theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)

    The two differ only in where :math:`\epsilon` meets the bias correction: Keras's step is PyTorch's with
    :math:`\hat\epsilon = \epsilon / \sqrt{1-\beta_2^t}` in place of :math:`\epsilon`, about 32 times
    larger at the first step with :math:`\beta_2 = 0.999`, and so is computed here.

    Parameters
    ----------
    learning_rate : float or Schedule
    beta_1, beta_2 : float in [0, 1)
        Decay rates of the first and second moment estimates.
    epsilon : float > 0
        Keras's default, 1e-7 (PyTorch's is 1e-8).
    epsilon_placement : {"keras", "pytorch"}
        ``"keras"`` takes the steps of ``keras.optimizers.Adam``; ``"pytorch"`` (with ``epsilon=1e-8``) those
        of ``torch.optim.Adam``. A configuration saved before this setting existed has no
        ``epsilon_placement`` and loads with ``"pytorch"``, the formulation it was trained with.
    clipnorm, global_clipnorm : float, optional
        See :class:`~barenet.optimizers.Optimizer`.

    Notes
    -----
    The moments are kept as exponentially weighted *sums*, :math:`M = m/(1-\beta_1)` and
    :math:`V = v/(1-\beta_2)`, which update without scaling the gradient:

    .. math::
        M \leftarrow \beta_1 M + g, \qquad V \leftarrow \beta_2 V + g^2, \qquad
        \theta \leftarrow \theta - \frac{\eta (1-\beta_1)}{(1-\beta_1^t)\, a}\,
        \frac{M}{\sqrt{V} + \hat\epsilon / a}, \quad a = \sqrt{\frac{1-\beta_2}{1-\beta_2^t}}

    (:math:`\hat\epsilon = \epsilon` for PyTorch's placement), the same step as above with fewer operations
    per element (the update is bound by memory traffic): one pass with numba
    (:func:`barenet.kernels.optim.adam`), 10 NumPy passes without. Their slots are ``m_sum`` and ``v_sum``;
    optimizer state saved with ``m``/``v`` slots (the moments themselves) is converted on :meth:`set_state`.
    """

    slot_names = ("m_sum", "v_sum")
    legacy_config = {"epsilon_placement": "pytorch"}

    def legacy_slots(self) -> dict[str, tuple[str, float]]:
        return {"m": ("m_sum", 1 / (1 - self.beta_1)), "v": ("v_sum", 1 / (1 - self.beta_2))}

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        *,
        epsilon_placement: str = "keras",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate, **kwargs)
        for name, beta in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not 0.0 <= beta < 1.0:
                raise ConfigError(f"Adam {name} must be in [0, 1), got {beta!r}")
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon, self.epsilon_placement = check_epsilon(type(self).__name__, epsilon, epsilon_placement)

    def update(self, key, param, grad, lr):
        t = param.dtype.type
        step = self.iterations  # already incremented: 1-based
        b1, b2 = self.beta_1, self.beta_2
        m = self.slot("m_sum", key, param)
        v = self.slot("v_sum", key, param)
        segments, keys = self.segments(key, param)
        a = math.sqrt((1 - b2) / (1 - b2**step))
        eps = self.epsilon if self.epsilon_placement == "pytorch" else self.epsilon / math.sqrt(1 - b2**step)
        optim.adam(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1), segments,
                   self.shrink(keys, lr).astype(param.dtype, copy=False), t(b1), t(b2), t(eps / a),
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
            "epsilon_placement": self.epsilon_placement,
        }


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov and Hutter, 2019):
    :math:`\theta \leftarrow (1 - \eta\lambda)\,\theta` before the Adam step, for the parameters that
    decay: kernels and embedding matrices, never biases or normalization parameters (the rule of
    :meth:`barenet.layers.Layer.decays`, read from the parameters' keys; the L2 penalty uses it too).

    With ``epsilon_placement="keras"`` (the default) the same steps as ``keras.optimizers.AdamW`` told
    ``exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])``; with ``"pytorch"`` the same as
    ``torch.optim.AdamW`` with the weights in a parameter group of ``weight_decay`` and the other parameters
    in a group without it. The default ``weight_decay`` is PyTorch's, 0.01 (Keras's is 0.004).
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
