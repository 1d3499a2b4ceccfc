r"""Max- and average-pooling kernels over channels-last images ``(batch, height, width, channels)``.

A window of ``pool = (ph, pw)`` taps moves by ``strides = (sh, sw)`` over the image with
``pads = ((top, bottom), (left, right))`` pixels added around it; padded pixels never take part (they
are never a maximum and are not counted in an average). Output pixel ``(p, q)``'s tap ``(i, j)`` reads
input pixel ``(p sh + i - top, q sw + j - left)``; the tap's number is ``k = i pw + j``.

``max_forward`` returns, beside the maxima, the winning tap of every window and channel (the first in
row-major order on a tie, as in PyTorch; the first NaN wins over any number, so NaN propagates). The backward pass
is then a scatter of the output gradient to the winners, with no comparison.

The compiled loops do not check bounds, so ``max_backward`` and ``average_backward`` check that the
gradient has the forward pass's output shape, and ``max_backward`` that each winner is a tap of its
window where the tap is used as an address, before either form runs.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import threads
from ..errors import DataError, ShapeError
from ._jit import njit

Pair = tuple[int, int]
Pads = tuple[tuple[int, int], tuple[int, int]]


def output_size(image: Pair, pool: Pair, strides: Pair, pads: Pads) -> Pair:
    """``(out_height, out_width)`` of windows over an ``image = (height, width)``."""
    return tuple(F.conv_output_length(n, k, s, 1, sum(p))
                 for n, k, s, p in zip(image, pool, strides, pads, strict=True))


def _arg_dtype(pool: Pair) -> np.dtype:
    """The smallest integer type that numbers every tap of a window."""
    return np.dtype(np.uint8) if pool[0] * pool[1] <= 256 else np.dtype(np.int32)


def _crop(x: np.ndarray, pads: Pads) -> np.ndarray:
    (top, bottom), (left, right) = pads
    return x[:, top:x.shape[1] - bottom, left:x.shape[2] - right, :]


# --------------------------------------------------------------------------- NumPy reference
def max_forward_reference(x: np.ndarray, pool: Pair, strides: Pair, pads: Pads) -> tuple[np.ndarray, np.ndarray]:
    """Window maxima ``(batch, oh, ow, channels)`` (``x``'s dtype) and winning taps (same shape, unsigned
    integers): one strided pass per tap over the padded image."""
    oh, ow = output_size(x.shape[1:3], pool, strides, pads)
    low = -np.inf if np.issubdtype(x.dtype, np.floating) else np.iinfo(x.dtype).min
    xp = F.pad_spatial(x, pads, low)
    out = arg = None
    for i, j, rows, cols in F.window_slices(pool, strides, (1, 1), (oh, ow)):
        tap = xp[:, rows, cols]
        if out is None:
            out, arg = tap.copy(), np.zeros(tap.shape, dtype=_arg_dtype(pool))
            continue
        better = (tap > out) | ((tap != tap) & (out == out))  # greater (first wins a tie), or a first NaN
        np.copyto(out, tap, where=better)
        arg[better] = i * pool[1] + j
    return out, arg


def max_backward_reference(g: np.ndarray, arg: np.ndarray, image_shape: tuple[int, ...], pool: Pair,
                           strides: Pair, pads: Pads) -> np.ndarray:
    """``dx : image_shape`` (``g``'s dtype): each window's gradient ``g`` added to its winning pixel."""
    n, h, w, c = image_shape
    (top, bottom), (left, right) = pads
    dxp = np.zeros((n, h + top + bottom, w + left + right, c), dtype=g.dtype)
    overlap = strides[0] < pool[0] or strides[1] < pool[1]
    for i, j, rows, cols in F.window_slices(pool, strides, (1, 1), g.shape[1:3]):
        won = g * (arg == i * pool[1] + j)
        if overlap:
            dxp[:, rows, cols] += won
        else:  # each pixel is in at most one window
            dxp[:, rows, cols] = won
    return _crop(dxp, pads)


def average_forward_reference(x: np.ndarray, pool: Pair, strides: Pair, pads: Pads,
                              scale: np.ndarray) -> np.ndarray:
    """Window means ``(batch, oh, ow, channels)``; ``scale : (oh, ow)`` is 1 / (pixels of each window
    inside the image)."""
    xp = F.pad_spatial(x, pads)
    out = None
    for _, _, rows, cols in F.window_slices(pool, strides, (1, 1), scale.shape):
        out = xp[:, rows, cols].copy() if out is None else np.add(out, xp[:, rows, cols], out=out)
    out *= scale[:, :, None]
    return out


def average_backward_reference(g: np.ndarray, image_shape: tuple[int, ...], pool: Pair, strides: Pair,
                               pads: Pads, scale: np.ndarray) -> np.ndarray:
    """``dx : image_shape``: each window's ``g * scale`` added to every pixel of the window."""
    n, h, w, c = image_shape
    (top, bottom), (left, right) = pads
    dxp = np.zeros((n, h + top + bottom, w + left + right, c), dtype=g.dtype)
    share = g * scale[:, :, None]
    for _, _, rows, cols in F.window_slices(pool, strides, (1, 1), scale.shape):
        dxp[:, rows, cols] += share
    return _crop(dxp, pads)


# --------------------------------------------------------------------------- compiled forms
# One-thread loop nests, run on slices of the batch at once by barenet.threads (see
# barenet.kernels.normalization); each visits every output pixel once, its window's taps inside the
# image, and the channels innermost (contiguous in channels-last data).


def _max_forward(x, ph, pw, sh, sw, top, left, out, arg):
    n, h, w, c = x.shape
    _, oh, ow, _ = out.shape
    for b in range(n):
        for p in range(oh):
            i_lo, i_hi = max(0, top - p * sh), min(ph, h + top - p * sh)  # taps inside the image
            for q in range(ow):
                j_lo, j_hi = max(0, left - q * sw), min(pw, w + left - q * sw)
                for ch in range(c):  # the window's running maximum stays in a register
                    best = x[b, p * sh + i_lo - top, q * sw + j_lo - left, ch]
                    k = i_lo * pw + j_lo
                    for i in range(i_lo, i_hi):
                        for j in range(j_lo, j_hi):
                            v = x[b, p * sh + i - top, q * sw + j - left, ch]
                            if v > best or (v != v and best == best):
                                best = v
                                k = i * pw + j
                    out[b, p, q, ch] = best
                    arg[b, p, q, ch] = k


def _max_forward_2x2(x, out, arg):
    """:func:`_max_forward` for 2x2 windows at stride 2 without padding, the taps unrolled: the common
    case, several times faster than the general loop nest."""
    n, h, w, c = x.shape
    _, oh, ow, _ = out.shape
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    best = x[b, 2 * p, 2 * q, ch]
                    k = 0
                    v = x[b, 2 * p, 2 * q + 1, ch]
                    if v > best or (v != v and best == best):
                        best = v
                        k = 1
                    v = x[b, 2 * p + 1, 2 * q, ch]
                    if v > best or (v != v and best == best):
                        best = v
                        k = 2
                    v = x[b, 2 * p + 1, 2 * q + 1, ch]
                    if v > best or (v != v and best == best):
                        best = v
                        k = 3
                    out[b, p, q, ch] = best
                    arg[b, p, q, ch] = k


def _max_backward(g, arg, pw, sh, sw, top, left, dx):
    n, oh, ow, c = g.shape
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    k = arg[b, p, q, ch]
                    dx[b, p * sh + k // pw - top, q * sw + k % pw - left, ch] += g[b, p, q, ch]


def _max_backward_2x2(g, arg, dx, zero):
    """:func:`_max_backward` for 2x2 windows at stride 2 without padding: every pixel of a window is
    written (the gradient to the winner, ``zero`` of ``g``'s type to the others), so ``dx`` need not be
    zeroed first."""
    n, oh, ow, c = g.shape
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    k = arg[b, p, q, ch]
                    v = g[b, p, q, ch]
                    dx[b, 2 * p, 2 * q, ch] = v if k == 0 else zero
                    dx[b, 2 * p, 2 * q + 1, ch] = v if k == 1 else zero
                    dx[b, 2 * p + 1, 2 * q, ch] = v if k == 2 else zero
                    dx[b, 2 * p + 1, 2 * q + 1, ch] = v if k == 3 else zero


def _average_forward(x, ph, pw, sh, sw, top, left, scale, out):
    n, h, w, c = x.shape
    _, oh, ow, _ = out.shape
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                for ch in range(c):
                    out[b, p, q, ch] = 0
                for i in range(ph):
                    r = p * sh + i - top
                    if r < 0 or r >= h:
                        continue
                    for j in range(pw):
                        s = q * sw + j - left
                        if s < 0 or s >= w:
                            continue
                        for ch in range(c):
                            out[b, p, q, ch] += x[b, r, s, ch]
                for ch in range(c):
                    out[b, p, q, ch] *= scale[p, q]


def _average_backward(g, ph, pw, sh, sw, top, left, scale, dx):
    n, h, w, c = dx.shape
    _, oh, ow, _ = g.shape
    for b in range(n):
        for p in range(oh):
            for q in range(ow):
                f = scale[p, q]
                for i in range(ph):
                    r = p * sh + i - top
                    if r < 0 or r >= h:
                        continue
                    for j in range(pw):
                        s = q * sw + j - left
                        if s < 0 or s >= w:
                            continue
                        for ch in range(c):
                            dx[b, r, s, ch] += g[b, p, q, ch] * f


_max_forward_fast = njit()(_max_forward)
_max_forward_2x2_fast = njit()(_max_forward_2x2)
_max_backward_fast = njit()(_max_backward)
_max_backward_2x2_fast = njit()(_max_backward_2x2)
_average_forward_fast = njit()(_average_forward)
_average_backward_fast = njit()(_average_backward)


def _halving(pool: Pair, strides: Pair, pads: Pads) -> bool:
    """2x2 windows at stride 2 without padding, the case with unrolled kernels."""
    return pool == strides == (2, 2) and not any(pads[0]) and not any(pads[1])


def max_forward_fast(x: np.ndarray, pool: Pair, strides: Pair, pads: Pads) -> tuple[np.ndarray, np.ndarray]:
    """Compiled :func:`max_forward_reference`: one pass over the input, no padded copy."""
    oh, ow = output_size(x.shape[1:3], pool, strides, pads)
    out = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
    arg = np.empty(out.shape, dtype=_arg_dtype(pool))
    if _halving(pool, strides, pads):
        threads.by_rows(_max_forward_2x2_fast, x, out, arg)
    else:
        threads.by_rows(lambda x, out, arg: _max_forward_fast(x, *pool, *strides, pads[0][0], pads[1][0], out, arg),
                        x, out, arg)
    return out, arg


def max_backward_fast(g: np.ndarray, arg: np.ndarray, image_shape: tuple[int, ...], pool: Pair, strides: Pair,
                      pads: Pads) -> np.ndarray:
    """Compiled :func:`max_backward_reference`: one scatter of the gradient to the winners (for 2x2
    windows at stride 2, one pass writing every pixel, with no zeroing first)."""
    g = np.ascontiguousarray(g)
    if _halving(pool, strides, pads):
        dx = np.empty(image_shape, dtype=g.dtype)
        _, oh, ow, _ = g.shape
        dx[:, 2 * oh:] = 0  # a last row or column that no window covers
        dx[:, :, 2 * ow:] = 0
        zero = g.dtype.type(0)
        threads.by_rows(lambda g, arg, dx: _max_backward_2x2_fast(g, arg, dx, zero), g, arg, dx)
        return dx

    def scatter(g, arg, dx):
        dx[...] = 0
        _max_backward_fast(g, arg, pool[1], *strides, pads[0][0], pads[1][0], dx)

    dx = np.empty(image_shape, dtype=g.dtype)
    threads.by_rows(scatter, g, arg, dx)
    return dx


def average_forward_fast(x: np.ndarray, pool: Pair, strides: Pair, pads: Pads, scale: np.ndarray) -> np.ndarray:
    """Compiled :func:`average_forward_reference`."""
    out = np.empty((x.shape[0], *scale.shape, x.shape[3]), dtype=x.dtype)
    threads.by_rows(lambda x, out: _average_forward_fast(x, *pool, *strides, pads[0][0], pads[1][0], scale, out),
                    x, out)
    return out


def average_backward_fast(g: np.ndarray, image_shape: tuple[int, ...], pool: Pair, strides: Pair, pads: Pads,
                          scale: np.ndarray) -> np.ndarray:
    """Compiled :func:`average_backward_reference`."""
    def spread(g, dx):
        dx[...] = 0
        _average_backward_fast(g, *pool, *strides, pads[0][0], pads[1][0], scale, dx)

    dx = np.empty(image_shape, dtype=g.dtype)
    threads.by_rows(spread, np.ascontiguousarray(g), dx)
    return dx


_max_backward_form = max_backward_fast if _max_backward_fast is not None else max_backward_reference
_average_backward_form = average_backward_fast if _average_backward_fast is not None else average_backward_reference
max_forward = max_forward_fast if _max_forward_fast is not None else max_forward_reference
average_forward = average_forward_fast if _average_forward_fast is not None else average_forward_reference


def _check_gradient(what: str, g: np.ndarray, image_shape: tuple[int, ...], pool: Pair, strides: Pair,
                    pads: Pads) -> None:
    """A :class:`~barenet.errors.ShapeError` unless ``g`` is shaped as the forward output of ``image_shape``."""
    expected = (image_shape[0], *output_size(image_shape[1:3], pool, strides, pads), image_shape[3])
    if g.shape != expected:
        raise ShapeError(f"{what} backward expects a gradient of shape {expected} (the forward pass's output), "
                         f"got {g.shape}")


def max_backward(g: np.ndarray, arg: np.ndarray, image_shape: tuple[int, ...], pool: Pair, strides: Pair,
                 pads: Pads) -> np.ndarray:
    """:func:`max_backward_reference` (by the compiled form when there is one), after checking ``g`` and
    ``arg`` against the forward pass; raises :class:`~barenet.errors.ShapeError` or
    :class:`~barenet.errors.DataError`."""
    _check_gradient("max pooling", g, image_shape, pool, strides, pads)
    if arg.shape != g.shape:
        raise ShapeError(f"max pooling backward expects winners of the gradient's shape {g.shape}, got {arg.shape}")
    taps = pool[0] * pool[1]
    # The 2x2 kernel compares each winner with the four taps and uses none as an address.
    if not _halving(pool, strides, pads) and arg.size and arg.max() >= taps:
        raise DataError(f"max pooling backward got winning tap {int(arg.max())}; a {pool[0]}x{pool[1]} window's "
                        f"taps are 0 to {taps - 1}")
    return _max_backward_form(g, arg, image_shape, pool, strides, pads)


def average_backward(g: np.ndarray, image_shape: tuple[int, ...], pool: Pair, strides: Pair, pads: Pads,
                     scale: np.ndarray) -> np.ndarray:
    """:func:`average_backward_reference` (by the compiled form when there is one), after checking ``g`` and
    ``scale`` against the forward pass; raises :class:`~barenet.errors.ShapeError`."""
    _check_gradient("average pooling", g, image_shape, pool, strides, pads)
    if scale.shape != g.shape[1:3]:
        raise ShapeError(f"average pooling backward expects a scale of shape {g.shape[1:3]}, got {scale.shape}")
    return _average_backward_form(g, image_shape, pool, strides, pads, scale)
