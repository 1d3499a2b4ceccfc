r"""Activation layers: element-wise nonlinearities (and softmax over the last axis).

Each stores in the call's cache what its derivative needs (the input ``x`` or the output ``y``). For an
element-wise :math:`y = f(z)` the backward pass is :math:`\partial L/\partial z = \partial L/\partial y \odot f'(z)`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .. import functional as F
from .. import threads
from ..errors import ConfigError
from ..kernels import activation as kernels
from .base import Cache, Layer, register


class _ByName(type):
    """Calling :class:`Activation` itself with a name makes that activation's layer (Keras's
    ``Activation("relu")``): ``Activation("relu")`` is a :class:`ReLU`, ``Activation("gelu", approximate=True)``
    a tanh :class:`GELU`. Subclasses are called as any class."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is not Activation:
            return super().__call__(*args, **kwargs)
        if len(args) != 1 or not isinstance(args[0], str):
            raise ConfigError(f"Activation(...) takes the name of an activation, one of {sorted(_BY_KIND)}, "
                              f"and its keyword arguments; got {args!r}")
        return _by_name(args[0])(**kwargs)


class Activation(Layer, metaclass=_ByName):
    """Base class of parameter-free activation layers. ``kind`` is the name used in strings.

    ``Activation("silu")`` (any name ``barenet.layers.activations.get`` knows) makes the layer of that name, as
    in Keras.
    """

    kind: ClassVar[str] = ""
    supports_masking = True  # element-wise: a padding mask passes on unchanged

    def forward(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        y = self.function(x)
        if cache is not None:
            cache["x"], cache["y"] = x, y
        return y

    def function(self, x: np.ndarray) -> np.ndarray:
        """The activation itself, without caching."""
        raise NotImplementedError


@register
class Linear(Activation):
    """Identity, :math:`f(z) = z`."""

    kind = "linear"

    def function(self, x):
        return x

    def backward(self, grad, cache):
        return grad


@register
class ReLU(Activation):
    r""":math:`f(z) = \max(z, 0)`, :math:`f'(z) = [z > 0]`."""

    kind = "relu"

    def function(self, x):
        return F.relu(x)

    # Both directions on slices of the batch at once (barenet.threads): after a convolution the maps are large.
    def forward(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        y = np.empty(x.shape, dtype=x.dtype)
        threads.by_rows(lambda x, y: np.maximum(x, 0, out=y), x, y)
        if cache is not None:
            cache["y"] = y
        return y

    def backward(self, grad, cache):
        y = cache["y"]
        dz = np.empty(np.broadcast_shapes(grad.shape, y.shape), dtype=np.result_type(grad, y))
        threads.by_rows(lambda g, y, dz: np.multiply(g, y > 0, out=dz), grad, y, dz)
        return dz


@register
class LeakyReLU(Activation):
    r""":math:`f(z) = z` for :math:`z>0`, :math:`\alpha z` otherwise."""

    kind = "leaky_relu"

    def __init__(self, alpha: float = 0.01, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def function(self, x):
        return F.leaky_relu(x, self.alpha)

    def backward(self, grad, cache):
        return np.where(cache["x"] > 0, grad, grad * grad.dtype.type(self.alpha))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


@register
class ELU(Activation):
    r""":math:`f(z) = z` for :math:`z>0`, :math:`\alpha(e^z-1)` otherwise; :math:`f'(z) = f(z)+\alpha` there."""

    kind = "elu"

    def __init__(self, alpha: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alpha = float(alpha)

    def function(self, x):
        return F.elu(x, self.alpha)

    def backward(self, grad, cache):
        return np.where(cache["x"] > 0, grad, grad * (cache["y"] + grad.dtype.type(self.alpha)))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` as ``(batch, values)``, a view of a contiguous array."""
    return a.reshape(len(a), -1)


@register
class GELU(Activation):
    r"""Gaussian error linear unit :math:`z\,\Phi(z)` (see :func:`barenet.functional.gelu`).

    Parameters
    ----------
    approximate : bool
        ``False`` (default, as in Keras and PyTorch): the exact form with the normal CDF :math:`\Phi`;
        ``True``: the tanh approximation (PyTorch's ``approximate="tanh"``).

    Notes
    -----
    Configurations written before ``approximate`` existed, ``"gelu"`` as a layer's ``activation`` or a
    ``GELU`` layer's config without the key, meant the tanh form, and ``barenet.layers.activations.deserialize`` and
    :meth:`from_config` read them so; a configuration written now always holds ``approximate``.
    """

    kind = "gelu"

    def __init__(self, approximate: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(approximate, (bool, np.bool_)):
            raise ConfigError(f"GELU approximate must be True or False, got {approximate!r}")
        self.approximate = bool(approximate)

    def function(self, x):
        compiled = self._compiled(x)
        if compiled:
            y = np.empty(x.shape, dtype=x.dtype)
            threads.by_rows(compiled[0], _rows(x), _rows(y))
            return y
        return F.gelu(x, self.approximate)

    def backward(self, grad, cache):
        x, y = cache["x"], cache["y"]
        compiled = self._compiled(x)
        if compiled and grad.dtype == x.dtype and y.flags.c_contiguous:
            g = np.ascontiguousarray(grad)
            dx = np.empty(x.shape, dtype=x.dtype)
            threads.by_rows(compiled[1], _rows(g), _rows(x), _rows(y), _rows(dx))
            return dx
        return grad * F.gelu_grad(x, self.approximate)

    def _compiled(self, x: np.ndarray) -> tuple | None:
        """The compiled exact kernels (:func:`barenet.kernels.activation.gelu_kernels`) that serve ``x``, if
        any: the exact form, numba installed, a contiguous float32/float64 array with a batch axis."""
        if self.approximate or x.ndim < 1 or x.size == 0 or not x.flags.c_contiguous:
            return None
        return kernels.gelu_kernels(x.dtype)

    def get_config(self):
        return {**super().get_config(), "approximate": self.approximate}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> GELU:
        return super().from_config({"approximate": True, **config})  # without the key: the old tanh meaning

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"approximate": True, **state})  # pickled before the exact form existed


@register
class SiLU(Activation):
    r"""Sigmoid linear unit (swish) :math:`f(z) = z\,\sigma(z)`, :math:`f'(z) = \sigma(z)(1 + z(1 - \sigma(z)))`."""

    kind = "silu"

    def function(self, x):
        return F.silu(x)

    def backward(self, grad, cache):
        return grad * F.silu_grad(cache["x"])


@register
class Softplus(Activation):
    r""":math:`f(z) = \log(1 + e^z)`, computed without overflow; :math:`f'(z) = \sigma(z)`."""

    kind = "softplus"

    def function(self, x):
        return F.softplus(x)

    def backward(self, grad, cache):
        return grad * F.sigmoid(cache["x"])


@register
class ReLU6(Activation):
    r""":math:`f(z) = \min(\max(z, 0), 6)`, :math:`f'(z) = [0 < z < 6]`."""

    kind = "relu6"

    def function(self, x):
        return F.relu6(x)

    def backward(self, grad, cache):
        x = cache["x"]
        return grad * ((x > 0) & (x < 6))


@register
class HardSigmoid(Activation):
    r""":math:`f(z) = \mathrm{relu6}(z + 3)/6` (Keras 3, PyTorch), :math:`f'(z) = [-3 < z < 3]/6`."""

    kind = "hard_sigmoid"

    def function(self, x):
        return F.hard_sigmoid(x)

    def backward(self, grad, cache):
        x = cache["x"]
        return grad * ((x > -3) & (x < 3)) / grad.dtype.type(6)


@register
class HardSwish(Activation):
    r""":math:`f(z) = z\,\mathrm{relu6}(z + 3)/6` (MobileNetV3's hard swish, Keras's ``hard_silu``).

    Notes
    -----
    :math:`f'(z) = 0` below -3, 1 above 3 and :math:`z/3 + 1/2` between.
    """

    kind = "hard_swish"

    def function(self, x):
        return F.hard_swish(x)

    def backward(self, grad, cache):
        x = cache["x"]
        slope = np.where(x < 3, x / x.dtype.type(3) + x.dtype.type(0.5), 1)
        return grad * np.where(x > -3, slope, 0).astype(x.dtype, copy=False)


@register
class Mish(Activation):
    r""":math:`f(z) = z \tanh(\mathrm{softplus}(z))` (Misra, 2019); see :func:`barenet.functional.mish_grad`."""

    kind = "mish"

    def function(self, x):
        return F.mish(x)

    def backward(self, grad, cache):
        return grad * F.mish_grad(cache["x"])


@register
class Sigmoid(Activation):
    r""":math:`\sigma(z) = 1/(1+e^{-z})`, :math:`\sigma'(z) = \sigma(z)(1-\sigma(z))`."""

    kind = "sigmoid"

    def function(self, x):
        return F.sigmoid(x)

    def backward(self, grad, cache):
        y = cache["y"]
        return grad * y * (1 - y)


@register
class Tanh(Activation):
    r""":math:`\tanh z`, derivative :math:`1 - \tanh^2 z`."""

    kind = "tanh"

    def function(self, x):
        return np.tanh(x)

    def backward(self, grad, cache):
        y = cache["y"]
        return grad * (1 - y * y)


@register
class Softmax(Activation):
    r"""Softmax over the last axis: :math:`y_i = e^{z_i}/\sum_j e^{z_j}`.

    Notes
    -----
    The Jacobian-vector product is :math:`\partial L/\partial z = y \odot (g - \langle g, y\rangle)`.
    Paired with categorical cross-entropy the model uses the fused form
    :math:`\partial L/\partial z = y - t` instead.
    """

    kind = "softmax"

    def function(self, x):
        return F.softmax(x, axis=-1)

    def backward(self, grad, cache):
        y = cache["y"]
        return y * (grad - np.sum(grad * y, axis=-1, keepdims=True))


_BY_KIND: dict[str, type[Activation]] = {
    cls.kind: cls for cls in (Linear, ReLU, LeakyReLU, ELU, GELU, Sigmoid, Tanh, Softmax)
}
_BY_KIND.update({cls.kind: cls for cls in (SiLU, Softplus, ReLU6, HardSigmoid, HardSwish, Mish)})
#: Other names of the same activations (Keras's and PyTorch's).
ALIASES = {"swish": "silu", "hard_silu": "hard_swish"}


def _by_name(name: str) -> type[Activation]:
    """The class of the activation called ``name`` (any case, aliases included), or a :class:`ConfigError`."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _BY_KIND:
        raise ConfigError(f"unknown activation {name!r}; expected one of {sorted(_BY_KIND)} "
                          f"(or an alias: {sorted(ALIASES)}), an Activation layer or None")
    return _BY_KIND[key]


def get(activation: str | Activation | None) -> Activation:
    """Resolve ``"relu"``, an :class:`Activation` instance or ``None`` (linear) to a fresh layer object."""
    if activation is None:
        return Linear()
    if isinstance(activation, Activation):
        return type(activation).from_config(activation.get_config())
    if isinstance(activation, str):
        return _by_name(activation)()
    raise ConfigError(
        f"unknown activation {activation!r}; expected one of {sorted(_BY_KIND)}, an Activation layer or None"
    )


def serialize(activation: Activation) -> str | dict:
    """``"relu"``, or ``{"kind": "leaky_relu", "alpha": 0.1}`` when it has arguments (GELU always does)."""
    config = {k: v for k, v in activation.get_config().items() if k != "name"}
    return {"kind": activation.kind, **config} if config else activation.kind


def deserialize(spec: str | dict | None) -> Activation:
    """Inverse of :func:`serialize`. The bare string ``"gelu"`` is a configuration from before GELU had its
    exact form, and means the tanh approximation it meant then (see :class:`GELU`)."""
    if isinstance(spec, dict):
        spec = dict(spec)
        kind = spec.pop("kind", None)
        if kind not in _BY_KIND:
            raise ConfigError(f"unknown activation {kind!r}; expected one of {sorted(_BY_KIND)}")
        return _BY_KIND[kind].from_config(spec)
    if isinstance(spec, str) and spec.lower() == GELU.kind:
        return GELU(approximate=True)
    return get(spec)


class Activated:
    """Mixin for layers that compute logits :math:`z` and then an activation :math:`y = f(z)` (Dense, Conv2D).

    The layer implements ``forward_logits`` and ``backward_logits`` and holds ``self.activation``; this
    mixin composes them. The model calls the two halves directly when it fuses the final sigmoid or
    softmax with the loss.
    """

    activation: Activation

    def forward(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        z = self.forward_logits(x, training=training, cache=cache)
        return self.activation.forward(z, training=training, cache=None if cache is None else cache.child("activation"))

    def backward(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        return self.backward_logits(self.activation.backward(grad, cache["activation"]), cache)

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        config = dict(config)
        config["activation"] = deserialize(config.get("activation"))
        return super().from_config(config)
