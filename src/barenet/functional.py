"""Pure math: activations, their derivatives and numerically stable softmax forms.

Every function takes and returns NumPy arrays and keeps the input dtype. Layers call these;
nothing here holds state. In the stable forms an ``exp`` of a very negative shifted value rounds to 0,
which is the intended result, so those underflows are silenced (they would raise under
``np.errstate(all="raise")``).
"""

from __future__ import annotations

import numpy as np

_GELU_C = np.sqrt(2.0 / np.pi)


def sigmoid(z: np.ndarray) -> np.ndarray:
    r"""Logistic function :math:`\sigma(z) = 1 / (1 + e^{-z})` without overflow.

    Notes
    -----
    Written as :math:`\tfrac12(1 + \tanh(z/2))`, which is exact and never evaluates
    ``exp`` of a large positive number, so logits of +-1e4 give 0 and 1 with no warning.
    """
    out = np.multiply(z, 0.5, dtype=z.dtype)
    np.tanh(out, out=out)
    out += 1
    out *= 0.5
    return out


def relu(z: np.ndarray) -> np.ndarray:
    """:math:`\\max(z, 0)`."""
    return np.maximum(z, 0)


def leaky_relu(z: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    """:math:`z` where positive, :math:`\\alpha z` elsewhere."""
    return np.where(z > 0, z, z * z.dtype.type(alpha))


def elu(z: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    r""":math:`z` where positive, :math:`\alpha (e^{z} - 1)` elsewhere (``expm1`` of the clipped value)."""
    return np.where(z > 0, z, z.dtype.type(alpha) * np.expm1(np.minimum(z, 0)))


def gelu(z: np.ndarray) -> np.ndarray:
    r"""Gaussian error linear unit, tanh approximation.

    Notes
    -----
    :math:`\mathrm{GELU}(z) = \tfrac12 z \,(1 + \tanh(u))`, with
    :math:`u = \sqrt{2/\pi}\,(z + 0.044715 z^3)` (Hendrycks and Gimpel, 2016).
    """
    u = _GELU_C * (z + 0.044715 * z**3)
    return (0.5 * z * (1 + np.tanh(u))).astype(z.dtype, copy=False)


def gelu_grad(z: np.ndarray) -> np.ndarray:
    r"""Derivative of :func:`gelu`:
    :math:`\tfrac12(1+\tanh u) + \tfrac12 z (1-\tanh^2 u)\sqrt{2/\pi}(1 + 3\cdot0.044715 z^2)`."""
    t = np.tanh(_GELU_C * (z + 0.044715 * z**3))
    du = _GELU_C * (1 + 3 * 0.044715 * z**2)
    return (0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du).astype(z.dtype, copy=False)


def logsumexp(z: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`\log \sum_j e^{z_j}` along ``axis``, shifted by the maximum so it never overflows.
    The reduced axis is kept (size 1)."""
    m = np.max(z, axis=axis, keepdims=True)
    with np.errstate(under="ignore"):
        return m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`e^{z_i - \max z} / \sum_j e^{z_j - \max z}` along ``axis``; rows sum to 1, no overflow."""
    e = z - np.max(z, axis=axis, keepdims=True)
    with np.errstate(under="ignore"):
        np.exp(e, out=e)
    e /= np.sum(e, axis=axis, keepdims=True)
    return e


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`z_i - \log\sum_j e^{z_j}`, finite for any finite logits."""
    return z - logsumexp(z, axis=axis)


def softplus(z: np.ndarray) -> np.ndarray:
    r""":math:`\log(1 + e^{z})` computed as :math:`\max(z,0) + \log(1 + e^{-|z|})`: no overflow."""
    with np.errstate(under="ignore"):
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))
