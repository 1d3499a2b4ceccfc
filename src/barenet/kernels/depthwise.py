r"""Depthwise convolution kernels over channels-last images ``(batch, height, width, channels)``.

Every input channel ``c`` has its own ``multiplier`` filters: the kernel is ``(kh, kw, channels, multiplier)``
and output channel ``c * multiplier + m`` is input channel ``c`` cross-correlated with ``kernel[:, :, c, m]``.
A window of ``kernel_size = (kh, kw)`` taps spaced by ``dilation = (dh, dw)`` moves by ``strides = (sh, sw)``
over the image with ``pads = ((top, bottom), (left, right))`` zeros around it: output pixel ``(p, q)``'s tap
``(i, j)`` reads input pixel ``(p sh + i dh - top, q sw + j dw - left)``, or nothing where that is padding.

.. math:: y_{n,p,q,c,m} = b_{c,m} + \sum_{i,j} \tilde x_{n,\, p s_h + i d_h,\, q s_w + j d_w,\, c}\, K_{i,j,c,m}

This is no matrix product (each output sums ``kh * kw`` products, one per tap), so it is computed as
``kh * kw`` multiply-adds over the whole tensor, one per tap: the NumPy reference with shifted strided views
of the padded image (run a few samples at a time on each of :mod:`barenet.threads`' slices of the batch by
``forward_numpy``/``backward_numpy`` where numba is missing), the compiled form in one pass over the output
with the window's taps inside it and the channels innermost. Backward, with :math:`g = \partial L/\partial y`,

.. math:: \partial L / \partial K_{i,j,c,m} = \sum_{n,p,q} \tilde x_{n,\, p s_h + i d_h,\, q s_w + j d_w,\, c}\,
          g_{n,p,q,c,m}

and :math:`\partial L/\partial \tilde x` gathers :math:`\sum_m g_{n,p,q,c,m} K_{i,j,c,m}` back to the pixel each tap
read (cropped to the image).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import threads
from ._jit import njit

Pair = tuple[int, int]
Pads = tuple[tuple[int, int], tuple[int, int]]

#: Values the NumPy form handles at a time (a few samples' outputs and products, about 1 MB in float32).
CHUNK_VALUES = 1 << 18


def output_size(image: Pair, kernel: Pair, strides: Pair, dilation: Pair, pads: Pads) -> Pair:
    """``(out_height, out_width)`` of windows over an ``image = (height, width)``."""
    return tuple(F.conv_output_length(n, k, s, d, sum(p))
                 for n, k, s, d, p in zip(image, kernel, strides, dilation, pads, strict=True))


def _crop(x: np.ndarray, pads: Pads) -> np.ndarray:
    (top, bottom), (left, right) = pads
    return x[:, top:x.shape[1] - bottom, left:x.shape[2] - right, :]


# --------------------------------------------------------------------------- NumPy reference
def forward_reference(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, strides: Pair, dilation: Pair,
                      pads: Pads) -> np.ndarray:
    """``y : (batch, oh, ow, channels * multiplier)`` in ``x``'s dtype: per filter ``m``, one multiply-add per
    kernel tap over a strided view of the padded image."""
    n, h, w, c = x.shape
    kh, kw, _, dm = kernel.shape
    oh, ow = output_size((h, w), (kh, kw), strides, dilation, pads)
    xp = F.pad_spatial(x, pads)
    out = np.empty((dm, n, oh, ow, c), dtype=x.dtype)  # filter-major, so each sum runs over contiguous channels
    product = np.empty((n, oh, ow, c), dtype=x.dtype)
    for m in range(dm):
        out[m] = 0 if bias is None else bias.reshape(c, dm)[:, m]
        for i, j, rows, cols in F.window_slices((kh, kw), strides, dilation, (oh, ow)):
            np.multiply(xp[:, rows, cols], kernel[i, j, :, m], out=product)
            out[m] += product
    return out[0] if dm == 1 else np.moveaxis(out, 0, -1).reshape(n, oh, ow, c * dm)


def backward_reference(g: np.ndarray, x: np.ndarray, kernel: np.ndarray, strides: Pair, dilation: Pair, pads: Pads,
                       input_grad: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """``(dx, dkernel)`` for ``g : (batch, oh, ow, channels * multiplier)``; ``dx`` (``x``'s shape) is ``None``
    unless ``input_grad``."""
    n, h, w, c = x.shape
    kh, kw, _, dm = kernel.shape
    oh, ow = g.shape[1:3]
    xp = F.pad_spatial(x, pads)
    dkernel = np.empty(kernel.shape, dtype=g.dtype)
    dxp = np.zeros(xp.shape, dtype=g.dtype) if input_grad else None
    product = np.empty((n, oh, ow, c), dtype=g.dtype)
    for m in range(dm):
        gm = np.ascontiguousarray(g.reshape(n, oh, ow, c, dm)[..., m])
        for i, j, rows, cols in F.window_slices((kh, kw), strides, dilation, (oh, ow)):
            np.multiply(xp[:, rows, cols], gm, out=product)
            dkernel[i, j, :, m] = product.sum(axis=(0, 1, 2))
            if dxp is not None:
                np.multiply(gm, kernel[i, j, :, m], out=product)
                dxp[:, rows, cols] += product
    return (None if dxp is None else _crop(dxp, pads)), dkernel


def _chunks(n: int, per_sample: int) -> list[slice]:
    step = max(1, CHUNK_VALUES // max(per_sample, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def forward_numpy(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, strides: Pair, dilation: Pair,
                  pads: Pads) -> np.ndarray:
    """:func:`forward_reference` a few samples at a time (:data:`CHUNK_VALUES`, so that each tap's product
    is added while still in cache), the batch split across :mod:`barenet.threads`: the form used without numba."""
    n, h, w, c = x.shape
    kh, kw, _, dm = kernel.shape
    oh, ow = output_size((h, w), (kh, kw), strides, dilation, pads)
    out = np.empty((n, oh, ow, c * dm), dtype=x.dtype)

    def part(rows: slice) -> None:
        for chunk in _chunks(rows.stop - rows.start, 2 * oh * ow * c * dm):
            chunk = slice(rows.start + chunk.start, rows.start + chunk.stop)
            out[chunk] = forward_reference(x[chunk], kernel, bias, strides, dilation, pads)

    threads.run(part, threads.parts(n, out[0].size * kh * kw if n else 1))
    return out


def backward_numpy(g: np.ndarray, x: np.ndarray, kernel: np.ndarray, strides: Pair, dilation: Pair, pads: Pads,
                   input_grad: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """:func:`backward_reference` a few samples at a time, the batch split across :mod:`barenet.threads`."""
    n = len(x)
    dx = np.empty(x.shape, dtype=g.dtype) if input_grad else None

    def part(rows: slice) -> np.ndarray:
        dkernel = np.zeros(kernel.shape, dtype=g.dtype)
        for chunk in _chunks(rows.stop - rows.start, 2 * g[0].size + x[0].size):
            chunk = slice(rows.start + chunk.start, rows.start + chunk.stop)
            dxc, dkc = backward_reference(g[chunk], x[chunk], kernel, strides, dilation, pads, input_grad)
            dkernel += dkc
            if dx is not None:
                dx[chunk] = dxc
        return dkernel

    sums = threads.run(part, threads.parts(n, g[0].size * kernel.shape[0] * kernel.shape[1] if n else 1))
    return dx, np.sum(sums, axis=0)


# --------------------------------------------------------------------------- compiled forms
# One-thread loop nests over a slice of the batch (barenet.threads runs slices at once), for one filter per
# channel; several filters per channel run them once per filter ``m`` on the strided views ``out[..., m::dm]``.
# Each visits every output pixel once and, for each of its taps inside the image, every channel, innermost
# (contiguous for one filter per channel, so that the loop runs on vector registers).


def _forward(x, k, bias, sh, sw, dh, dw, top, left, out):
    """``out : (batch, oh, ow, channels)`` for ``k : (kh, kw, channels)``, ``bias : (channels,)``."""
    n, h, w, c = x.shape
    kh, kw, _ = k.shape
    _, oh, ow, _ = out.shape
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    out[b, p, q, ch] = bias[ch]
                for i in range(kh):
                    r = p * sh + i * dh - top
                    if r < 0 or r >= h:
                        continue
                    for j in range(kw):
                        s = q * sw + j * dw - left
                        if s < 0 or s >= w:
                            continue
                        for ch in range(c):
                            out[b, p, q, ch] += x[b, r, s, ch] * k[i, j, ch]


def _backward(g, x, k, sh, sw, dh, dw, top, left, dx, dk, want_dx):
    """Adds this slice's kernel gradient to ``dk : (kh, kw, channels)`` (float64) and, with ``want_dx``,
    its input gradient to ``dx``; ``g : (batch, oh, ow, channels)``."""
    n, h, w, c = x.shape
    kh, kw, _ = k.shape
    _, oh, ow, _ = g.shape
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                for i in range(kh):
                    r = p * sh + i * dh - top
                    if r < 0 or r >= h:
                        continue
                    for j in range(kw):
                        s = q * sw + j * dw - left
                        if s < 0 or s >= w:
                            continue
                        for ch in range(c):
                            dk[i, j, ch] += x[b, r, s, ch] * g[b, p, q, ch]
                        if want_dx:
                            for ch in range(c):
                                dx[b, r, s, ch] += g[b, p, q, ch] * k[i, j, ch]


_forward_fast = njit()(_forward)
_backward_fast = njit()(_backward)


def forward_fast(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, strides: Pair, dilation: Pair,
                 pads: Pads) -> np.ndarray:
    """Compiled :func:`forward_reference`: one pass over the output per filter, no padded copy."""
    n, h, w, c = x.shape
    kh, kw, _, dm = kernel.shape
    oh, ow = output_size((h, w), (kh, kw), strides, dilation, pads)
    out = np.empty((n, oh, ow, c * dm), dtype=x.dtype)
    bias = np.zeros(c * dm, dtype=x.dtype) if bias is None else bias.astype(x.dtype, copy=False)
    where = (*strides, *dilation, pads[0][0], pads[1][0])
    filters = [np.ascontiguousarray(kernel[:, :, :, m]) for m in range(dm)]

    def run(x: np.ndarray, out: np.ndarray) -> None:
        for m in range(dm):
            _forward_fast(x, filters[m], bias[m::dm], *where, out[..., m::dm])

    threads.by_rows(run, x, out)
    return out


def backward_fast(g: np.ndarray, x: np.ndarray, kernel: np.ndarray, strides: Pair, dilation: Pair, pads: Pads,
                  input_grad: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Compiled :func:`backward_reference`: one pass over the output gradient per filter; each thread sums its
    slice's kernel gradient in float64, and the slices' sums are added."""
    n, h, w, c = x.shape
    kh, kw, _, dm = kernel.shape
    g = np.ascontiguousarray(g)
    dx = np.empty(x.shape, dtype=g.dtype) if input_grad else np.empty((n, 0, 0, 0), dtype=g.dtype)
    where = (*strides, *dilation, pads[0][0], pads[1][0])
    filters = [np.ascontiguousarray(kernel[:, :, :, m]) for m in range(dm)]

    def part(rows: slice) -> np.ndarray:
        dk = np.zeros((dm, kh, kw, c), dtype=np.float64)
        if input_grad:
            dx[rows] = 0
        for m in range(dm):
            _backward_fast(g[rows, ..., m::dm], x[rows], filters[m], *where, dx[rows], dk[m], input_grad)
        return dk

    sums = threads.run(part, threads.parts(n, max(x[0].size, g[0].size) * kh * kw if n else 1))
    dkernel = np.moveaxis(np.sum(sums, axis=0), 0, -1).astype(g.dtype)
    return (dx if input_grad else None), dkernel


forward = forward_fast if _forward_fast is not None else forward_numpy
backward = backward_fast if _backward_fast is not None else backward_numpy
