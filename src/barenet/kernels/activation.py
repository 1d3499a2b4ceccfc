r"""Bias + ReLU, forward and backward, each in one pass over a ``(rows, units)`` block.

Dense layers with a ReLU compute :math:`y = \max(xW + b, 0)`; after the product, NumPy needs a pass
to add the bias, another (and an allocation) for the maximum, and in backward three passes (the mask
``y > 0``, the product with the incoming gradient, the bias gradient's column sum). These kernels do
each direction in one pass. Shapes: ``z, y, grad, out : (rows, units)``, ``b, db : (units,)``, one
float dtype.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import njit


def bias_relu_reference(z: np.ndarray, b: np.ndarray) -> None:
    r""":math:`z \leftarrow \max(z + b, 0)` in place (NaN stays NaN)."""
    z += b
    np.maximum(z, 0, out=z)


def _bias_relu(z, b):
    rows, units = z.shape
    for r in range(rows):
        zr = z[r]
        for j in range(units):
            v = zr[j] + b[j]
            zr[j] = 0 if v < 0 else v


def relu_bias_backward_reference(grad: np.ndarray, y: np.ndarray, out: np.ndarray, db: np.ndarray) -> None:
    r""":math:`\text{out} = g \odot [y > 0]` (dLoss/dz) and :math:`db = \sum_{rows} \text{out}`."""
    np.multiply(grad, y > 0, out=out)
    np.sum(out, axis=0, out=db)


def _relu_bias_backward(grad, y, out, db):
    rows, units = grad.shape
    db[:] = 0
    for r in range(rows):
        gr, yr, outr = grad[r], y[r], out[r]
        for j in range(units):
            v = gr[j] if yr[j] > 0 else 0
            outr[j] = v
            db[j] += v


_bias_relu_fast = njit(error_model="numpy")(_bias_relu)
_relu_bias_backward_fast = njit(error_model="numpy")(_relu_bias_backward)
bias_relu = _bias_relu_fast or bias_relu_reference
relu_bias_backward = _relu_bias_backward_fast or relu_bias_backward_reference


# --------------------------------------------------------------------------- exact GELU
# GELU's exact form needs erfc, which NumPy lacks: barenet.functional builds it from several array passes
# (a Chebyshev series and a continued fraction), the largest cost of a Transformer's step. Compiled, each
# element calls the C library's erfc once, in float64 whatever the arrays' dtype. Shapes: ``z, grad, out :
# (rows, columns)``, one float dtype (``out`` may be ``grad``).
_SQRT2 = 1.4142135623730951
_INV_SQRT_2PI = 0.3989422804014327


def _gelu(z, out):
    rows, cols = z.shape
    for r in range(rows):
        zr, outr = z[r], out[r]
        for j in range(cols):
            v = np.float64(zr[j])
            outr[j] = v * 0.5 * math.erfc(-v / _SQRT2)


def _gelu_backward(grad, z, out):
    rows, cols = z.shape
    for r in range(rows):
        gr, zr, outr = grad[r], z[r], out[r]
        for j in range(cols):
            v = np.float64(zr[j])
            outr[j] = gr[j] * (0.5 * math.erfc(-v / _SQRT2) + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))


#: ``gelu(z, out)``: :math:`\text{out} = z\,\Phi(z)`; ``gelu_backward(grad, z, out)``:
#: :math:`\text{out} = g\,(\Phi(z) + z\,\varphi(z))`. ``None`` without numba (callers use
#: :func:`barenet.functional.gelu` and :func:`barenet.functional.gelu_grad`).
gelu = njit(error_model="numpy")(_gelu)
gelu_backward = njit(error_model="numpy")(_gelu_backward)
