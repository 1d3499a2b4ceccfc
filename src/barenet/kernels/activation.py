r"""Activations in compiled passes: bias + ReLU and the exact GELU (with or without the bias), forward and
backward, each in one pass over a ``(rows, units)`` block.

Dense layers with a ReLU compute :math:`y = \max(xW + b, 0)`; after the product, NumPy needs a pass
to add the bias, another (and an allocation) for the maximum, and in backward three passes (the mask
``y > 0``, the product with the incoming gradient, the bias gradient's column sum). These kernels do
each direction in one pass; :func:`bias_gelu_kernels` do the same for a Dense layer with the exact GELU
(a Transformer's feed-forward layer). Shapes: ``z, y, grad, out : (rows, units)``, ``b, db : (units,)``, one
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
# element costs one erfc: in float64 the C library's. In float32 a Chebyshev fit with one exponential
# (Press et al., Numerical Recipes, 6.2: relative error below 1.2e-7 for every argument, under float32's
# rounding), evaluated in float64 over chunks of a row so that the compiler turns every loop into vector
# instructions: the exponential is barenet's own (below), since the C library's exp is a call per element
# that no loop around it can vectorize. The backward pass needs no erfc: the forward output gives
# Phi(z) = y / z (1/2 at z = 0), to the output's own rounding, and only the density needs an exponential.
# Shapes: ``z, y, grad, out : (rows, columns)``, one float dtype.
_SQRT2 = 1.4142135623730951
_INV_SQRT2 = 0.7071067811865476
_INV_SQRT_2PI = 0.3989422804014327
_ERFC_FIT = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
             -0.82215223, 0.17087277)
_CHUNK = 256  # values per vector pass: the scratch rows stay in the L1 cache

# exp(x) = 2^k e^r with k = round(x / ln 2) and r = x - k ln 2 in [-ln2/2, ln2/2] (ln 2 in two parts, Cody and
# Waite, so that k ln 2 is exact); e^r by its Taylor polynomial to r^8 (relative error below 3e-10 there),
# and 2^k written straight into a float64's exponent bits. Rounding to k: adding 1.5 * 2^52 leaves
# round(x / ln 2) in the low bits of the sum's significand, which also gives k as an integer.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52
_ROUND_BITS = 0x4338000000000000  # its bits


def _exp_inplace(x, p):
    r""":math:`x \leftarrow e^x` elementwise for a float64 vector ``x`` (inputs below -708 give
    :math:`e^{-708}`, NaN stays NaN); ``p``: scratch of ``x``'s length."""
    n = x.size
    for j in range(n):
        v = max(x[j], -708.0)
        y = v * _LOG2E + _ROUND
        k = y - _ROUND
        r = (v - k * _LN2_HI) - k * _LN2_LO
        p[j] = 1.0 + r * (1.0 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (
            1 / 5040 + r * (1 / 40320))))))))
        x[j] = y
    bits = x.view(np.int64)
    for j in range(n):
        bits[j] = (bits[j] - _ROUND_BITS + 1023) << 52  # 2^k
    for j in range(n):
        x[j] = p[j] * x[j]


def _gelu32_chunk(zc, oc, t, e, p):
    r""":math:`\text{oc} = z\,\Phi(z)` for a float32 vector ``zc`` of at most ``_CHUNK`` values; ``t, e, p``:
    float64 scratch of ``_CHUNK``."""
    c = _ERFC_FIT
    n = zc.size
    for j in range(n):  # e = Phi(-|z|) = erfc(a) / 2 with a = |z| / sqrt(2), by the Chebyshev fit
        a = abs(np.float64(zc[j])) * _INV_SQRT2
        tj = 1.0 / (1.0 + 0.5 * a)
        fit = c[0] + tj * (c[1] + tj * (c[2] + tj * (c[3] + tj * (c[4] + tj * (c[5] + tj * (c[6] + tj * (
            c[7] + tj * (c[8] + tj * c[9]))))))))
        t[j] = 0.5 * tj
        e[j] = fit - a * a
    _exp(e[:n], p[:n])
    for j in range(n):
        v = np.float64(zc[j])
        tail = t[j] * e[j]
        oc[j] = v * ((1.0 - tail) if v > 0 else tail)


def _gelu32_backward_chunk(gc, zc, yc, oc, gauss, p):
    r""":math:`\text{oc} = g\,(\Phi(z) + z\,\varphi(z))` for float32 vectors of at most ``_CHUNK`` values,
    :math:`\Phi(z) = y / z`; ``gauss, p``: float64 scratch of ``_CHUNK``."""
    n = zc.size
    for j in range(n):
        v = np.float64(zc[j])
        gauss[j] = -0.5 * v * v
    _exp(gauss[:n], p[:n])
    for j in range(n):
        v = np.float64(zc[j])
        cdf = np.float64(yc[j] / zc[j]) if zc[j] != 0 else 0.5
        oc[j] = gc[j] * (cdf + v * _INV_SQRT_2PI * gauss[j])


def _gelu32(z, out):
    flat_z, flat_out = z.reshape(-1), out.reshape(-1)
    t, e, p = np.empty(_CHUNK), np.empty(_CHUNK), np.empty(_CHUNK)
    for start in range(0, flat_z.size, _CHUNK):
        _gelu32_chunk(flat_z[start:start + _CHUNK], flat_out[start:start + _CHUNK], t, e, p)


def _gelu32_backward(grad, z, y, out):
    flat_g, flat_z, flat_y, flat_out = grad.reshape(-1), z.reshape(-1), y.reshape(-1), out.reshape(-1)
    gauss, p = np.empty(_CHUNK), np.empty(_CHUNK)
    for start in range(0, flat_z.size, _CHUNK):
        chunk = slice(start, start + _CHUNK)
        _gelu32_backward_chunk(flat_g[chunk], flat_z[chunk], flat_y[chunk], flat_out[chunk], gauss, p)


def _bias_gelu32(z, b, out):
    rows, cols = z.shape
    t, e, p = np.empty(_CHUNK), np.empty(_CHUNK), np.empty(_CHUNK)
    for r in range(rows):
        zr, outr = z[r], out[r]
        for j in range(cols):
            zr[j] += b[j]
        for start in range(0, cols, _CHUNK):
            _gelu32_chunk(zr[start:start + _CHUNK], outr[start:start + _CHUNK], t, e, p)


def _gelu32_bias_backward(grad, z, y, out, db):
    rows, cols = z.shape
    gauss, p, total = np.empty(_CHUNK), np.empty(_CHUNK), np.zeros(cols)
    for r in range(rows):
        gr, zr, yr, outr = grad[r], z[r], y[r], out[r]
        for start in range(0, cols, _CHUNK):
            chunk = slice(start, start + _CHUNK)
            _gelu32_backward_chunk(gr[chunk], zr[chunk], yr[chunk], outr[chunk], gauss, p)
        for j in range(cols):
            total[j] += outr[j]
    db[:] = total


def _gelu_row(zr, outr):
    for j in range(zr.size):
        v = np.float64(zr[j])
        outr[j] = v * 0.5 * math.erfc(-v / _SQRT2)


def _gelu_backward_row(gr, zr, yr, outr):
    for j in range(zr.size):
        v = zr[j]
        cdf = yr[j] / v if v != 0 else 0.5
        outr[j] = gr[j] * (cdf + v * _INV_SQRT_2PI * math.exp(-0.5 * v * v))


def _gelu(z, out):
    for r in range(z.shape[0]):
        _gelu_row(z[r], out[r])


def _gelu_backward(grad, z, y, out):
    for r in range(z.shape[0]):
        _gelu_backward_row(grad[r], z[r], y[r], out[r])


def _bias_gelu(z, b, out):
    for r in range(z.shape[0]):
        zr = z[r]
        for j in range(zr.size):
            zr[j] += b[j]
        _gelu_row(zr, out[r])


def _gelu_bias_backward(grad, z, y, out, db):
    db[:] = 0
    for r in range(z.shape[0]):
        outr = out[r]
        _gelu_backward_row(grad[r], z[r], y[r], outr)
        for j in range(outr.size):
            db[j] += outr[j]


_exp = njit(inline="always")(_exp_inplace)
_gelu32_chunk = njit(inline="always")(_gelu32_chunk)
_gelu32_backward_chunk = njit(inline="always")(_gelu32_backward_chunk)
_gelu_row = njit(inline="always")(_gelu_row)
_gelu_backward_row = njit(inline="always")(_gelu_backward_row)
_gelu64_fast = njit(error_model="numpy")(_gelu)
_gelu64_backward_fast = njit(error_model="numpy")(_gelu_backward)
# contract: a * b + c as one fused multiply-add (one rounding instead of two): the float32 kernels' float64
# polynomials and exponentials run 1.2-1.4x faster, and their float32 results are the same
_gelu32_fast = njit(error_model="numpy", fastmath={"contract"})(_gelu32)
_gelu32_backward_fast = njit(error_model="numpy", fastmath={"contract"})(_gelu32_backward)
_bias_gelu64_fast = njit(error_model="numpy")(_bias_gelu)
_gelu64_bias_backward_fast = njit(error_model="numpy")(_gelu_bias_backward)
_bias_gelu32_fast = njit(error_model="numpy", fastmath={"contract"})(_bias_gelu32)
_gelu32_bias_backward_fast = njit(error_model="numpy", fastmath={"contract"})(_gelu32_bias_backward)


def gelu_kernels(dtype: np.dtype) -> tuple | None:
    r"""``(gelu, gelu_backward)`` compiled for ``dtype`` (float32 or float64), or ``None`` without numba or for
    another dtype (callers then use :func:`barenet.functional.gelu` and :func:`barenet.functional.gelu_grad`).

    ``gelu(z, out)``: :math:`\text{out} = z\,\Phi(z)`; ``gelu_backward(grad, z, y, out)``, with ``y`` the
    forward output: :math:`\text{out} = g\,(\Phi(z) + z\,\varphi(z))`, :math:`\Phi(z)` read as
    :math:`y / z` (:math:`1/2` at :math:`z = 0`).
    """
    if _gelu64_fast is None:
        return None
    return {np.dtype(np.float32): (_gelu32_fast, _gelu32_backward_fast),
            np.dtype(np.float64): (_gelu64_fast, _gelu64_backward_fast)}.get(np.dtype(dtype))


def bias_gelu_kernels(dtype: np.dtype) -> tuple | None:
    r"""``(bias_gelu, gelu_bias_backward)`` compiled for ``dtype`` (float32 or float64), or ``None`` without
    numba or for another dtype: a Dense layer's bias and exact GELU in one pass each way.

    ``bias_gelu(z, b, out)``: :math:`z \leftarrow z + b` in place, then :math:`\text{out} = z\,\Phi(z)`;
    ``gelu_bias_backward(grad, z, y, out, db)``: ``out`` as ``gelu_backward``'s and :math:`db = \sum_{rows}
    \text{out}` (added up in float64). Shapes: ``z, y, grad, out : (rows, units)``, ``b, db : (units,)``.
    """
    if _bias_gelu64_fast is None:
        return None
    return {np.dtype(np.float32): (_bias_gelu32_fast, _gelu32_bias_backward_fast),
            np.dtype(np.float64): (_bias_gelu64_fast, _gelu64_bias_backward_fast)}.get(np.dtype(dtype))
