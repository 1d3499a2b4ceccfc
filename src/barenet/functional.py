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
    ``(batch, out_height, out_width, kh, kw, channels)``, with ``windows[n, p, q, i, j, c] =
    x[n, p*sh + i*dh, q*sw + j*dw, c]``. Nothing is copied.
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
