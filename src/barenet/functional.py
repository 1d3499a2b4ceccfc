"""Pure math: activations, their derivatives, numerically stable softmax forms and attention.

Every function takes and returns NumPy arrays and keeps the input dtype. Layers call these;
nothing here holds state. In the stable forms an ``exp`` of a very negative shifted value rounds to 0,
which is the intended result, so those underflows are silenced (they would raise under
``np.errstate(all="raise")``).
"""

from __future__ import annotations

import math

import numpy as np

# Attention lives in its own module (it calls compiled kernels and threads); it is part of this API.
from .attention import scaled_dot_product_attention, scaled_dot_product_attention_backward

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


def gelu(z: np.ndarray, approximate: bool = False) -> np.ndarray:
    r"""Gaussian error linear unit :math:`z\,\Phi(z)`, exact or (``approximate=True``) in its tanh form.

    Notes
    -----
    Exact: :math:`\Phi(z) = \tfrac12 \operatorname{erfc}(-z/\sqrt2)`, the standard normal CDF (Keras's and
    PyTorch's default). Approximate: :math:`\tfrac12 z \,(1 + \tanh(u))`, with
    :math:`u = \sqrt{2/\pi}\,(z + 0.044715 z^3)` (Hendrycks and Gimpel, 2016).
    """
    if not approximate:
        return (z * normal_cdf(z)).astype(z.dtype, copy=False)
    with np.errstate(over="ignore"):  # z**3 overflows for huge z, and tanh(inf) = 1 is the limit
        u = _GELU_C * (z + 0.044715 * z**3)
    return (0.5 * z * (1 + np.tanh(u))).astype(z.dtype, copy=False)


def gelu_grad(z: np.ndarray, approximate: bool = False) -> np.ndarray:
    r"""Derivative of :func:`gelu`: :math:`\Phi(z) + z\,\varphi(z)` exact, with :math:`\varphi` the standard
    normal density; :math:`\tfrac12(1+\tanh u) + \tfrac12 z (1-\tanh^2 u)\sqrt{2/\pi}(1 + 3\cdot0.044715 z^2)`
    approximate."""
    if not approximate:
        z64 = z.astype(np.float64, copy=False)
        with np.errstate(under="ignore", over="ignore"):
            density = np.exp(-0.5 * z64 * z64) / np.sqrt(2 * np.pi)
        return (normal_cdf(z64) + z64 * density).astype(z.dtype, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        t = np.tanh(_GELU_C * (z + 0.044715 * z**3))
        du = _GELU_C * (1 + 3 * 0.044715 * z**2)
        return np.where(np.abs(z) < 1e10, 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * du, z > 0).astype(z.dtype,
                                                                                                 copy=False)


# --------------------------------------------------------------------------- the error function
# erf and erfc from three pieces, in float64: a Chebyshev interpolant of erf(z)/z in t = z^2 for |z| < 1; of
# the scaled erfcx(z) = exp(z^2) erfc(z), which varies slowly, for 1 <= z < 3; and Laplace's continued fraction
# erfc(z) = exp(-z^2) / sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...)))) from z = 3, where 30 terms reach
# double precision. The interpolants are computed once from the math module's erf and erfc; their degrees are
# the lowest that reach a relative error of about 2e-15 (higher ones only add rounding).
def _interpolant(f, degree: int, lo: float, hi: float) -> np.ndarray:
    """Chebyshev coefficients of the degree-``degree`` interpolant of scalar ``f`` on ``[lo, hi]``."""
    nodes = np.polynomial.chebyshev.chebpts1(degree + 1)
    values = np.array([f(lo + (hi - lo) * (s + 1) / 2) for s in nodes])
    return np.polynomial.chebyshev.chebfit(nodes, values, degree)


_ERF_SMALL = _interpolant(lambda t: math.erf(math.sqrt(t)) / math.sqrt(t) if t else 2 / math.sqrt(math.pi), 12,
                          0.0, 1.0)
_ERFCX_MID = _interpolant(lambda z: math.erfc(z) * math.exp(z * z), 18, 1.0, 3.0)
_ERFC_FRACTION_TERMS = 30


def _chebval(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """:math:`\\sum_k c_k T_k(x)` by Clenshaw's recurrence on three buffers (``numpy``'s ``chebval`` allocates
    new arrays at every term)."""
    x2, tmp = 2 * x, np.empty_like(x)
    b1, b2 = np.full_like(x, c[-1]), np.zeros_like(x)
    for ck in c[-2:0:-1]:  # b_k = c_k + 2x b_{k+1} - b_{k+2}
        np.multiply(x2, b1, out=tmp)
        np.subtract(tmp, b2, out=b2)
        b2 += ck
        b1, b2 = b2, b1
    np.multiply(x, b1, out=tmp)
    tmp -= b2
    tmp += c[0]
    return tmp


def _erf_small(z: np.ndarray) -> np.ndarray:
    """erf of float64 ``z`` with ``|z| < 1``."""
    return z * _chebval(2 * z * z - 1, _ERF_SMALL)


def _exp_minus_square(a: np.ndarray) -> np.ndarray:
    """:math:`e^{-a^2}` for float64 ``a`` without the rounding of :math:`a^2`, which :math:`e^x` would magnify
    :math:`a^2` times: with ``h`` = ``a`` cut to 26 significant bits, :math:`h^2` is exact and
    :math:`a^2 = h^2 + (a - h)(a + h)`. Beyond :math:`|a| = 40` the result is 0 (and ``inf`` is no NaN)."""
    a = np.minimum(np.abs(a), 40.0)
    h = (a.view(np.uint64) & np.uint64(~((1 << 27) - 1) & (2**64 - 1))).view(np.float64)
    with np.errstate(under="ignore"):
        return np.exp(-h * h) * np.exp(-(a - h) * (a + h))


def _erfc_large(a: np.ndarray) -> np.ndarray:
    """erfc of float64 ``a >= 1`` (or NaN, or +inf)."""
    out = np.empty_like(a)
    mid = a < 3
    out[mid] = _exp_minus_square(a[mid]) * _chebval(a[mid] - 2, _ERFCX_MID)
    b = a[~mid]
    t = b.copy()
    with np.errstate(under="ignore", over="ignore"):
        for k in range(_ERFC_FRACTION_TERMS, 0, -1):
            t = b + (k / 2) / t
        out[~mid] = _exp_minus_square(b) / (np.sqrt(np.pi) * t)
    return out


def erf(z: np.ndarray) -> np.ndarray:
    r"""The error function :math:`\frac{2}{\sqrt\pi}\int_0^z e^{-t^2}\,dt`, element-wise, in ``z``'s dtype.

    Computed in float64 to a relative error of about 2e-15 (see the comment above the implementation).
    """
    z64 = np.asarray(z, dtype=np.float64)
    a = np.abs(z64)
    out = np.empty_like(z64)
    small = a < 1
    out[small] = _erf_small(z64[small])
    out[~small] = np.copysign(1 - _erfc_large(a[~small]), z64[~small])
    return out.astype(np.result_type(z, np.float32), copy=False)


def erfc(z: np.ndarray) -> np.ndarray:
    r"""The complementary error function :math:`1 - \operatorname{erf}(z)`, accurate in relative terms
    where it is tiny (large ``z``), element-wise, in ``z``'s dtype."""
    z64 = np.asarray(z, dtype=np.float64)
    a = np.abs(z64)
    out = np.empty_like(z64)
    small = a < 1
    out[small] = 1 - _erf_small(z64[small])
    large = ~small
    tail = _erfc_large(a[large])
    out[large] = np.where(z64[large] < 0, 2 - tail, tail)
    return out.astype(np.result_type(z, np.float32), copy=False)


def normal_cdf(z: np.ndarray) -> np.ndarray:
    r"""The standard normal CDF :math:`\Phi(z) = \tfrac12 \operatorname{erfc}(-z/\sqrt2)`, relative accuracy kept
    in the lower tail."""
    return 0.5 * erfc(-np.asarray(z) / np.sqrt(2).astype(np.result_type(z, np.float32)))


# --------------------------------------------------------------------------- more activations
def silu(z: np.ndarray) -> np.ndarray:
    r"""Sigmoid linear unit (swish) :math:`z\,\sigma(z)`."""
    return z * sigmoid(z)


def silu_grad(z: np.ndarray) -> np.ndarray:
    r"""Derivative of :func:`silu`: :math:`\sigma(z)\,(1 + z(1 - \sigma(z)))`."""
    s = sigmoid(z)
    return s * (1 + z * (1 - s))


def relu6(z: np.ndarray) -> np.ndarray:
    r""":math:`\min(\max(z, 0), 6)`."""
    return np.clip(z, 0, 6)


def hard_sigmoid(z: np.ndarray) -> np.ndarray:
    r"""Piecewise-linear sigmoid :math:`\mathrm{relu6}(z + 3)/6` (Keras 3's and PyTorch's definition): 0 below
    -3, 1 above 3, :math:`z/6 + 1/2` between."""
    return np.clip(z + z.dtype.type(3), 0, 6) / z.dtype.type(6)


def hard_swish(z: np.ndarray) -> np.ndarray:
    r""":math:`z\,\mathrm{hard\_sigmoid}(z) = z\,\mathrm{relu6}(z + 3)/6` (MobileNetV3)."""
    return z * hard_sigmoid(z)


def mish(z: np.ndarray) -> np.ndarray:
    r""":math:`z \tanh(\mathrm{softplus}(z))` (Misra, 2019), without overflow for large :math:`|z|`."""
    return z * np.tanh(softplus(z))


def mish_grad(z: np.ndarray) -> np.ndarray:
    r"""Derivative of :func:`mish`: :math:`\tanh s + z\,(1 - \tanh^2 s)\,\sigma(z)`, with
    :math:`s = \mathrm{softplus}(z)`."""
    t = np.tanh(softplus(z))
    with np.errstate(under="ignore"):
        return t + z * (1 - t * t) * sigmoid(z)


def logsumexp(z: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`\log \sum_j e^{z_j}` along ``axis``, shifted by the maximum so it never overflows.
    The reduced axis is kept (size 1)."""
    m = np.max(z, axis=axis, keepdims=True)
    with np.errstate(under="ignore"):
        return m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`e^{z_i - \max z} / \sum_j e^{z_j - \max z}` along ``axis``; rows sum to 1, no overflow."""
    e = z - z.max(axis=axis, keepdims=True)  # the methods: np.max and np.sum add microseconds a call
    with np.errstate(under="ignore"):
        np.exp(e, out=e)
    e /= e.sum(axis=axis, keepdims=True)
    return e


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    r""":math:`z_i - \log\sum_j e^{z_j}`, finite for any finite logits."""
    return z - logsumexp(z, axis=axis)


def log_softmax_and_softmax(z: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    r"""Both :func:`log_softmax` and :func:`softmax` of ``z``, sharing one shift, one ``exp`` and one ``log``.

    Notes
    -----
    With :math:`s = z - \max z` and :math:`S = \sum_j e^{s_j}` along ``axis``:
    :math:`\log p = s - \log S` and :math:`p = e^{s} / S`.
    """
    logp = z - z.max(axis=axis, keepdims=True)
    with np.errstate(under="ignore"):
        p = np.exp(logp)
    total = p.sum(axis=axis, keepdims=True)
    p /= total
    logp -= np.log(total)
    return logp, p


def softplus(z: np.ndarray) -> np.ndarray:
    r""":math:`\log(1 + e^{z})` computed as :math:`\max(z,0) + \log(1 + e^{-|z|})`: no overflow."""
    with np.errstate(under="ignore"):
        return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


# --------------------------------------------------------------------------- convolution helpers
# Images are channels-last, ``(batch, height, width, channels)``. A 2-d window is described by
# ``kernel_size = (kh, kw)``, ``strides = (sh, sw)`` and ``dilation = (dh, dw)``; a window of the
# dilated kernel spans ``(k - 1) * d + 1`` pixels.


def conv_output_length(size: int, kernel: int, stride: int = 1, dilation: int = 1, padding: int = 0) -> int:
    r"""Number of window positions along one axis of ``size`` pixels with ``padding`` pixels added in total.

    Notes
    -----
    :math:`\lfloor (n + p - ((k-1)d + 1)) / s \rfloor + 1`; zero or less means the window does not fit.
    """
    return (size + padding - ((kernel - 1) * dilation + 1)) // stride + 1


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    r"""Pixels to add ``(before, after)`` along one axis so that there are :math:`\lceil n / s \rceil` outputs.

    Notes
    -----
    The total is :math:`\max((\lceil n/s \rceil - 1)s + (k-1)d + 1 - n,\ 0)`; an odd total puts the extra
    pixel after, as TensorFlow and Keras do.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_spatial(x: np.ndarray, pads: tuple[tuple[int, int], tuple[int, int]], value: float = 0.0) -> np.ndarray:
    """Pad the height and width axes of ``x : (batch, height, width, channels)`` with ``value``.

    Returns ``x`` itself when every pad is zero (no copy).
    """
    if not any(pads[0]) and not any(pads[1]):
        return x
    (top, bottom), (left, right) = pads
    out = np.full((x.shape[0], x.shape[1] + top + bottom, x.shape[2] + left + right, x.shape[3]), value, x.dtype)
    out[:, top:top + x.shape[1], left:left + x.shape[2], :] = x
    return out


def window_slices(kernel_size: tuple[int, int], strides: tuple[int, int], dilation: tuple[int, int],
                  out_size: tuple[int, int]):
    """Yield ``(i, j, rows, cols)`` for every kernel offset: ``x[:, rows, cols]`` holds, for every output
    pixel, the input pixel under kernel tap ``(i, j)`` (a strided view, no copy)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel_size, strides, dilation, out_size
    for i in range(kh):
        rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
        for j in range(kw):
            yield i, j, rows, slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)


def sliding_windows(x: np.ndarray, kernel_size: tuple[int, int], strides: tuple[int, int] = (1, 1),
                    dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Every window of ``x : (batch, height, width, channels)`` as a read-only strided view.

    Returns
    -------
    ndarray
        ``(batch, out_height, out_width, kh, kw, channels)``, with
        ``windows[n, p, q, i, j, c] = x[n, p*sh + i*dh, q*sw + j*dw, c]``. Nothing is copied.
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    n, h, w, c = x.shape
    oh, ow = conv_output_length(h, kh, sh, dh), conv_output_length(w, kw, sw, dw)
    sn, sy, sx, sc = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, oh, ow, kh, kw, c), (sn, sy * sh, sx * sw, sy * dh, sx * dw, sc), writeable=False
    )


def im2col(x: np.ndarray, kernel_size: tuple[int, int], strides: tuple[int, int] = (1, 1),
           dilation: tuple[int, int] = (1, 1), out: np.ndarray | None = None) -> np.ndarray:
    r"""Unfold the windows of ``x : (batch, height, width, channels)`` into the rows of a matrix.

    Returns
    -------
    ``cols : (batch * out_height * out_width, kh * kw * channels)``, same dtype as ``x``, row-major over
    ``(batch, out_height, out_width)`` and ``(kh, kw, channels)``. A convolution with a kernel
    ``W : (kh, kw, channels, filters)`` is then one matrix product ``cols @ W.reshape(-1, filters)``.
    Written into ``out`` (C-contiguous, that shape and dtype) when it is given.

    Notes
    -----
    This is the one copy a convolution makes of its input. With many channels the strided window view
    copies fastest in one go; with few, each row holds short runs and one copy per kernel tap is faster.
    """
    windows = sliding_windows(x, kernel_size, strides, dilation)
    n, oh, ow, kh, kw, c = windows.shape
    if out is None:
        out = np.empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
    cols = out.reshape(windows.shape)
    if c >= 8:
        np.copyto(cols, windows)
        return out
    for i, j, rows, cols_ in window_slices(kernel_size, strides, dilation, (oh, ow)):
        cols[:, :, :, i, j, :] = x[:, rows, cols_, :]
    return out


def im2col_groups(x: np.ndarray, kernel_size: tuple[int, int], strides: tuple[int, int] = (1, 1),
                  dilation: tuple[int, int] = (1, 1), groups: int = 1) -> np.ndarray:
    r"""The windows of ``x : (batch, height, width, channels)`` unfolded per group of channels.

    Returns
    -------
    ``cols : (groups, batch * out_height * out_width, kh * kw * channels / groups)``, C-contiguous:
    ``cols[k]`` is :func:`im2col` of the ``k``-th block of ``channels / groups`` channels, so a grouped
    convolution is one batched product ``numpy.matmul(cols, W_blocks)`` over the group axis. One strided copy.
    """
    windows = sliding_windows(x, kernel_size, strides, dilation)
    n, oh, ow, kh, kw, c = windows.shape
    cg = c // groups
    out = np.empty((groups, n, oh, ow, kh, kw, cg), dtype=x.dtype)
    np.copyto(out, windows.reshape(n, oh, ow, kh, kw, groups, cg).transpose(5, 0, 1, 2, 3, 4, 6))
    return out.reshape(groups, n * oh * ow, kh * kw * cg)


def col2im(taps: np.ndarray, image_shape: tuple[int, int, int, int], kernel_size: tuple[int, int],
           strides: tuple[int, int] = (1, 1), dilation: tuple[int, int] = (1, 1),
           out: np.ndarray | None = None) -> np.ndarray:
    r"""Adjoint of :func:`im2col`: add each window entry back to the pixel it was read from.

    Parameters
    ----------
    taps : (kh * kw, batch * out_height * out_width, channels)
        The columns of :func:`im2col` arranged tap-major: ``taps[i * kw + j]`` holds, for every window,
        the entries of kernel tap ``(i, j)``; that is ``cols.reshape(m, kh * kw, channels).transpose(1, 0, 2)``.
        A convolution's input gradient comes out of ``numpy.matmul`` in this layout directly.
    image_shape : (batch, height, width, channels)
        Shape of the (padded) image given to :func:`im2col`.

    Returns
    -------
    ``(batch, height, width, channels)``; pixels covered by several windows receive the sum, pixels
    covered by none receive zero. One strided addition per kernel tap, :math:`k_h k_w` in all; with the
    tap-major layout each addition reads a contiguous block. Written into ``out`` (any array of
    ``image_shape``, its previous values overwritten) when it is given.
    """
    n, h, w, c = image_shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    oh, ow = conv_output_length(h, kh, sh, dh), conv_output_length(w, kw, sw, dw)
    taps = taps.reshape(kh, kw, n, oh, ow, c)
    if out is None:
        out = np.zeros(image_shape, dtype=taps.dtype)
    else:
        out[...] = 0
    for i, j, rows, cols in window_slices(kernel_size, strides, dilation, (oh, ow)):
        out[:, rows, cols, :] += taps[i, j]
    return out


__all__ = ["col2im", "conv_output_length", "elu", "erf", "erfc", "gelu", "gelu_grad", "hard_sigmoid", "hard_swish",
    "im2col", "im2col_groups", "leaky_relu", "log_softmax", "log_softmax_and_softmax", "logsumexp", "mish",
    "mish_grad", "normal_cdf", "pad_spatial", "relu", "relu6", "same_padding", "scaled_dot_product_attention",
    "scaled_dot_product_attention_backward", "sigmoid", "silu", "silu_grad", "sliding_windows", "softmax", "softplus",
    "window_slices"]
