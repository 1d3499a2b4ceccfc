r"""Numerical gradient checking.

Compares analytic gradients with central differences
:math:`\frac{f(\theta + h) - f(\theta - h)}{2h}` in float64. The relative error of each entry is
:math:`|a - n| / \max(|a| + |n|, \text{floor})`; a correct gradient in float64 gives about 1e-9
or less with ``h = 1e-6``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError
from .layers.base import Cache, Layer


@dataclass
class GradcheckResult:
    """Worst relative error per checked array (``"input"`` and parameter names) and overall."""

    errors: dict[str, float] = field(default_factory=dict)

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def __bool__(self) -> bool:  # truthy when it passed the default tolerance
        return self.max_error < 1e-6

    def __repr__(self) -> str:
        detail = ", ".join(f"{k}: {v:.2e}" for k, v in self.errors.items())
        return f"GradcheckResult(max_error={self.max_error:.2e}; {detail})"


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to the array ``x``, perturbed in place."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray, floor: float = 1e-8) -> float:
    """Largest entry-wise :math:`|a - n| / \\max(|a| + |n|, floor)`."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    if a.shape != n.shape:
        raise ConfigError(f"analytic gradient has shape {a.shape}, numeric {n.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), floor)))


def gradcheck(
    target: Layer | Callable[..., float] | object,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    *,
    h: float = 1e-6,
    seed: int = 0,
    training: bool = True,
    check_input: bool = True,
    before_forward: Callable[[], None] | None = None,
) -> GradcheckResult:
    """Check the gradients of a layer, a loss or a compiled model against central differences.

    Parameters
    ----------
    target
        * a built :class:`~barenet.layers.Layer` (float64): checks ``backward`` for the input ``x``
          and every parameter, using the scalar :math:`\\sum_j r_j\\, y_j` with fixed random weights
          ``r`` so that every output entry matters;
        * a :class:`~barenet.losses.Loss`: checks ``gradient`` (and ``fused`` when it has one)
          with respect to predictions ``x`` for targets ``y``;
        * a compiled, built float64 :class:`~barenet.Sequential`: checks the gradient of the training
          loss (including the L2 penalty) with respect to every parameter on data ``(x, y)``.
    before_forward
        Called before every forward pass; use it to reset random state, e.g. to give Dropout the
        same mask each time (``lambda: setattr(layer, "rng", np.random.default_rng(0))``).
    """
    from .losses import Loss
    from .models.sequential import Sequential

    reset = before_forward or (lambda: None)
    if isinstance(target, Loss):
        return _check_loss(target, x, y, h)
    if isinstance(target, Sequential):
        return _check_model(target, x, y, h, reset)
    if isinstance(target, Layer):
        return _check_layer(target, x, h, seed, training, check_input, reset)
    raise ConfigError(f"gradcheck takes a Layer, a Loss or a Sequential model, got {type(target).__name__}")


def _require_float64(arrays: dict[str, np.ndarray], what: str) -> None:
    for name, a in arrays.items():
        if a.dtype != np.float64:
            raise ConfigError(f"gradcheck needs float64; {what} {name!r} is {a.dtype}")


def _check_layer(layer, x, h, seed, training, check_input, reset) -> GradcheckResult:
    if x is None:
        raise ConfigError("gradcheck of a layer needs an input array x")
    x = np.array(x, dtype=np.float64)
    _require_float64(layer.params, "parameter")
    reset()
    out = layer.forward(x, training=training)
    r = np.random.default_rng(seed).standard_normal(out.shape)

    def f() -> float:
        reset()
        return float(np.sum(layer.forward(x, training=training) * r))

    reset()
    cache = Cache(input_grad=check_input)
    layer.forward(x, training=training, cache=cache)
    dx = layer.backward(r.copy(), cache)
    analytic = {name: g.copy() for name, g in layer.grads.items()}
    result = GradcheckResult()
    if check_input:
        result.errors["input"] = relative_error(dx, numerical_gradient(f, x, h))
    for name, param in layer.params.items():
        result.errors[name] = relative_error(analytic[name], numerical_gradient(f, param, h))
    return result


def _check_loss(loss, y_pred, y_true, h) -> GradcheckResult:
    if y_pred is None or y_true is None:
        raise ConfigError("gradcheck of a loss needs predictions x and targets y")
    p = np.array(y_pred, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.float64)
    result = GradcheckResult()
    result.errors["y_pred"] = relative_error(loss.gradient(p, t), numerical_gradient(lambda: loss(p, t), p, h))
    if loss.fuses_with is not None:
        z = p
        _, dz, _ = loss.fused(z, t)
        result.errors["logits"] = relative_error(dz, numerical_gradient(lambda: loss.fused(z, t)[0], z, h))
    return result


def _check_model(model, x, y, h, reset) -> GradcheckResult:
    if model.dtype != np.float64:
        raise ConfigError(f"gradcheck needs a float64 model (Sequential(..., dtype='float64')), got {model.dtype}")
    if x is None or y is None:
        raise ConfigError("gradcheck of a model needs data x and targets y")
    if not model.built:
        model.build(np.shape(x)[1:])
    x = model.check_inputs(x)
    y = model.check_targets(y, len(x))

    def f() -> float:
        reset()
        return model.loss_and_gradients(x, y, None, training=True, need_grad=False)[0]

    reset()
    model.loss_and_gradients(x, y, None, training=True)
    analytic = {k: g.copy() for k, g in model.gradients().items()}
    result = GradcheckResult()
    for key, param in model.parameters().items():
        result.errors[key] = relative_error(analytic[key], numerical_gradient(f, param, h))
    return result
