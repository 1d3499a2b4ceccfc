r"""Optimizer updates: each rule in one pass over the parameters.

Every kernel updates 1-d arrays in place: ``theta`` (the parameters), ``g`` (their gradients) and the
rule's slots, all of one dtype and length, usually a whole model's parameters packed end to end.
``segments : (k, 2) int64`` lists ``[start, stop)`` ranges that tile ``[0, len(theta))`` (one per
parameter, or per run of parameters treated alike). Scalars come in the arrays' dtype (a float64
scalar would promote float32 arithmetic).

The NumPy forms make one pass per operation through a scratch array ``tmp`` (no temporaries); the
compiled forms do the same operations in the same order on each element in one pass, so both give the
same bits (no fused multiply-add: numba compiles without fast-math; square root and division are
correctly rounded in both). The compiled loops run on one thread: on a 2-core machine shared with
other work, ``parallel=True`` made Adam's step 6x slower (8 ms against 1.25 ms), and one thread
already runs at memory speed once the loop is vectorized.

The compiled loops do not check bounds, so ``sgd``, ``rmsprop`` and ``adam`` check that the gradient,
the slots and the scratch array have the parameters' shape before either form runs (a gradient of
another size comes straight from :meth:`barenet.optimizers.Optimizer.step`'s caller).
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ._jit import njit


# --------------------------------------------------------------------- SGD
def sgd_reference(theta, g, velocity, segments, lr, mu, nesterov, tmp):
    r"""Plain (``mu == 0``, ``velocity`` ignored), momentum or Nesterov step.

    .. math:: v \leftarrow \mu v - \eta g,\quad \theta \leftarrow \theta + v
              \ \text{or (Nesterov)}\ \theta \leftarrow \theta - \eta g + \mu v
    """
    np.multiply(g, lr, out=tmp)
    if mu == 0:
        theta -= tmp
        return
    velocity *= mu
    velocity -= tmp
    if nesterov:
        theta -= tmp
        np.multiply(velocity, mu, out=tmp)
        theta += tmp
    else:
        theta += velocity


def _sgd(theta, g, velocity, segments, lr, mu, nesterov, tmp):
    n = theta.size
    if mu == 0:
        for i in range(n):
            theta[i] = theta[i] - g[i] * lr
    elif nesterov:
        for i in range(n):
            step = g[i] * lr
            v = velocity[i] * mu - step
            velocity[i] = v
            theta[i] = (theta[i] - step) + v * mu
    else:
        for i in range(n):
            v = velocity[i] * mu - g[i] * lr
            velocity[i] = v
            theta[i] = theta[i] + v


# --------------------------------------------------------------------- RMSprop
def rmsprop_reference(theta, g, s, segments, lr, rho, eps, eps_inside, tmp):
    r""":math:`s \leftarrow \rho s + (1-\rho) g^2`, then with ``eps_inside`` (Keras)
    :math:`\theta \leftarrow \theta - \eta g / \sqrt{s + \epsilon}`, else (PyTorch)
    :math:`\theta \leftarrow \theta - \eta g / (\sqrt s + \epsilon)`."""
    one = theta.dtype.type(1)
    np.square(g, out=tmp)
    tmp *= one - rho
    s *= rho
    s += tmp
    if eps_inside:
        np.add(s, eps, out=tmp)
        np.sqrt(tmp, out=tmp)
    else:
        np.sqrt(s, out=tmp)
        tmp += eps
    np.divide(g, tmp, out=tmp)
    tmp *= lr
    theta -= tmp


def _rmsprop(theta, g, s, segments, lr, rho, eps, eps_inside, tmp):
    one_minus_rho = theta.dtype.type(1) - rho
    if eps_inside:
        for i in range(theta.size):
            gi = g[i]
            si = s[i] * rho + (gi * gi) * one_minus_rho
            s[i] = si
            theta[i] = theta[i] - (gi / np.sqrt(si + eps)) * lr
    else:
        for i in range(theta.size):
            gi = g[i]
            si = s[i] * rho + (gi * gi) * one_minus_rho
            s[i] = si
            theta[i] = theta[i] - (gi / (np.sqrt(si) + eps)) * lr


# --------------------------------------------------------------------- Adam / AdamW
def adam_reference(theta, g, M, V, segments, shrink, b1, b2, eps, step, tmp):
    r"""Adam on moment sums, after multiplying each segment of ``theta`` by ``shrink : (k,)``.

    .. math::
        \theta \leftarrow s\,\theta, \quad M \leftarrow \beta_1 M + g, \quad V \leftarrow \beta_2 V + g^2, \quad
        \theta \leftarrow \theta - \text{step}\cdot M / (\sqrt V + \epsilon)

    ``shrink`` is AdamW's decoupled decay :math:`1 - \eta\lambda` on decayed segments and 1 elsewhere;
    ``eps`` and ``step`` already hold the bias corrections (see :class:`barenet.optimizers.Adam`).
    """
    for (lo, hi), s in zip(segments, shrink, strict=True):
        if s != 1:
            theta[lo:hi] *= s
    M *= b1
    M += g
    np.square(g, out=tmp)
    V *= b2
    V += tmp
    np.sqrt(V, out=tmp)
    tmp += eps
    np.divide(M, tmp, out=tmp)
    tmp *= step
    theta -= tmp


def _adam(theta, g, M, V, segments, shrink, b1, b2, eps, step, tmp):
    for c in range(segments.shape[0]):
        s = shrink[c]
        lo, hi = segments[c, 0], segments[c, 1]
        # Slices indexed from 0 by a range: no negative-index checks, so LLVM vectorizes the loop.
        th, gg, MM, VV = theta[lo:hi], g[lo:hi], M[lo:hi], V[lo:hi]
        for i in range(th.size):
            gi = gg[i]
            m = MM[i] * b1 + gi
            v = VV[i] * b2 + gi * gi
            MM[i] = m
            VV[i] = v
            th[i] = th[i] * s - (m / (np.sqrt(v) + eps)) * step


#: How the compiled forms are compiled. ``error_model="numpy"``: division by zero gives inf/nan as in
#: NumPy instead of a Python exception, which also drops the per-element zero test that keeps LLVM from
#: vectorizing (0.25 ms against 1.25 ms for Adam on the benchmark MLP's 235k float32 parameters).
COMPILE_OPTIONS = {"error_model": "numpy"}


def _pick(reference, kernel):
    """The compiled form of ``kernel`` when numba is enabled, else ``reference``."""
    compiled = njit(**COMPILE_OPTIONS)(kernel)
    return compiled if compiled is not None else reference


_sgd_form = _pick(sgd_reference, _sgd)
_rmsprop_form = _pick(rmsprop_reference, _rmsprop)
_adam_form = _pick(adam_reference, _adam)


def _check(rule: str, theta: np.ndarray, g: np.ndarray, *slots: np.ndarray) -> None:
    """A :class:`~barenet.errors.ShapeError` unless ``g`` and ``slots`` are 1-d arrays of ``theta``'s shape."""
    if g.size != theta.size:
        raise ShapeError(f"{rule} update expects a gradient of the parameters' {theta.size} values, got {g.size}")
    if theta.ndim != 1 or g.shape != theta.shape:
        raise ShapeError(f"{rule} update expects parameters and gradient as 1-d arrays, got {theta.shape} and "
                         f"{g.shape}")
    if any(s.shape != theta.shape for s in slots):
        raise ShapeError(f"{rule} update expects slots and scratch of the parameters' shape {theta.shape}, got "
                         f"{', '.join(str(s.shape) for s in slots)}")


def sgd(theta, g, velocity, segments, lr, mu, nesterov, tmp):
    """:func:`sgd_reference` (by the compiled form when there is one), after checking the shapes."""
    _check("sgd", theta, g, velocity, tmp)
    _sgd_form(theta, g, velocity, segments, lr, mu, nesterov, tmp)


def rmsprop(theta, g, s, segments, lr, rho, eps, eps_inside, tmp):
    """:func:`rmsprop_reference` (by the compiled form when there is one), after checking the shapes."""
    _check("rmsprop", theta, g, s, tmp)
    _rmsprop_form(theta, g, s, segments, lr, rho, eps, eps_inside, tmp)


def adam(theta, g, M, V, segments, shrink, b1, b2, eps, step, tmp):
    """:func:`adam_reference` (by the compiled form when there is one), after checking the shapes."""
    _check("adam", theta, g, M, V, tmp)
    if segments.ndim != 2 or shrink.shape != segments.shape[:1]:
        raise ShapeError(f"adam update expects segments (k, 2) and one shrink factor per segment, got "
                         f"{segments.shape} and {shrink.shape}")
    _adam_form(theta, g, M, V, segments, shrink, b1, b2, eps, step, tmp)
