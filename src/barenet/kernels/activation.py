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
# element costs one erfc: in float64 the C library's; in float32 a Chebyshev fit with one exponential
# (Press et al., Numerical Recipes, 6.2: relative error below 1.2e-7 for every argument, under float32's
# rounding), three to five times faster. Shapes: ``z, grad, out : (rows, columns)``, one float dtype.
_SQRT2 = 1.4142135623730951
_INV_SQRT_2PI = 0.3989422804014327
_ERFC_FIT = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
             -0.82215223, 0.17087277)


def _normal_cdf32(v):
    r""":math:`\Phi(v) = \tfrac12 \operatorname{erfc}(-v/\sqrt2)` for float64 ``v`` to float32 accuracy, and
    :math:`e^{-v^2/2}`."""
    a = abs(v) / _SQRT2
    t = 1.0 / (1.0 + 0.5 * a)
    c = _ERFC_FIT
    fit = c[0] + t * (c[1] + t * (c[2] + t * (c[3] + t * (c[4] + t * (c[5] + t * (c[6] + t * (c[7] + t * (
        c[8] + t * c[9]))))))))
    gauss = math.exp(-a * a)
    tail = 0.5 * t * gauss * math.exp(fit)  # Phi(-|v|)
    return (1.0 - tail if v > 0 else tail), gauss


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


def _gelu32(z, out):
    rows, cols = z.shape
    for r in range(rows):
        zr, outr = z[r], out[r]
        for j in range(cols):
            v = np.float64(zr[j])
            outr[j] = v * _cdf32(v)[0]


def _gelu32_backward(grad, z, out):
    rows, cols = z.shape
    for r in range(rows):
        gr, zr, outr = grad[r], z[r], out[r]
        for j in range(cols):
            v = np.float64(zr[j])
            cdf, gauss = _cdf32(v)
            outr[j] = gr[j] * (cdf + v * _INV_SQRT_2PI * gauss)


_cdf32 = njit(inline="always")(_normal_cdf32)
_gelu64_fast = njit(error_model="numpy")(_gelu)
_gelu64_backward_fast = njit(error_model="numpy")(_gelu_backward)
_gelu32_fast = njit(error_model="numpy")(_gelu32)
_gelu32_backward_fast = njit(error_model="numpy")(_gelu32_backward)


def gelu_kernels(dtype: np.dtype) -> tuple | None:
    r"""``(gelu, gelu_backward)`` compiled for ``dtype`` (float32 or float64), or ``None`` without numba or for
    another dtype (callers then use :func:`barenet.functional.gelu` and :func:`barenet.functional.gelu_grad`).

    ``gelu(z, out)``: :math:`\text{out} = z\,\Phi(z)`; ``gelu_backward(grad, z, out)``:
    :math:`\text{out} = g\,(\Phi(z) + z\,\varphi(z))`.
    """
    if _gelu64_fast is None:
        return None
    return {np.dtype(np.float32): (_gelu32_fast, _gelu32_backward_fast),
            np.dtype(np.float64): (_gelu64_fast, _gelu64_backward_fast)}.get(np.dtype(dtype))
