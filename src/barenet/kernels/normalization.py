r"""Batch-normalization kernels over a ``(outer, channels, inner)`` view of the input.

Any input with a channel axis reshapes to such a view without a copy (when contiguous): ``outer`` is
the product of the axes before the channel axis, ``inner`` of those after it. Channels-last images and
``(batch, features)`` have ``inner = 1``; channels-first images ``(batch, channels, height, width)``
have ``outer = batch`` and ``inner = height * width``. Statistics are taken over ``outer`` and ``inner``,
:math:`m = \mathrm{outer} \cdot \mathrm{inner}` values per channel.

Three kernels, each in a NumPy form (the reference) and a compiled form:

``moments(x)``
    per-channel batch mean and (biased) variance;
``normalize(x, mean, inv_std, gamma, beta)``
    :math:`y = (x - \mu)\,\sigma^{-1}\gamma + \beta`;
``backward(g, x, mean, inv_std, gamma, training)``
    :math:`\partial L/\partial x`, :math:`\partial L/\partial \gamma`, :math:`\partial L/\partial \beta`.

The compiled forms read the input twice in the forward pass (statistics, then normalization) and twice
in the backward pass (two per-channel sums, then the input gradient), accumulating in float64. Each is
a one-thread loop nest run on slices of ``outer`` at once by :mod:`barenet.threads` (numba's own
parallel loops competed with the BLAS threads of the convolutions and made a training step several
times slower on a machine of a few cores). The compiled loops do not check bounds, so ``normalize`` and
``backward`` check the shapes they are given before either form runs.
"""

from __future__ import annotations

import numpy as np

from .. import threads
from ..errors import ShapeError
from ._jit import NUMBA_ENABLED, njit

# --------------------------------------------------------------------------- NumPy reference
# With ``inner = 1`` NumPy broadcasts a per-channel vector over rows of only a few channels, with inner
# loops so short that they cost several times the arithmetic. The reference therefore works on "wide
# rows" of ``reps`` consecutive feature vectors, ``(outer / reps, reps * channels)``, with per-channel
# vectors tiled ``reps`` times.


def _reps(outer: int) -> int:
    """Largest divisor of ``outer`` up to 32: feature vectors per wide row."""
    return next(r for r in range(min(outer, 32), 0, -1) if outer % r == 0)


def _work(x: np.ndarray) -> np.ndarray:
    """The view the reference computes on: wide rows for ``inner = 1``, else ``x`` itself."""
    outer, channels, inner = x.shape
    return x.reshape(outer // _reps(outer), -1) if inner == 1 else x


def _expand(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A per-channel ``(channels,)`` vector shaped to broadcast against ``_work(x)``."""
    return np.tile(v, _reps(x.shape[0])) if x.shape[2] == 1 else v[:, None]


def _fold(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per-position totals (a reduction of ``_work(x)`` over its rows) summed into ``(channels,)``."""
    return w.reshape(-1, x.shape[1]).sum(axis=0) if x.shape[2] == 1 else w


def _channel_sum(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=(0, 2))``: for ``inner = 1`` as one matrix-vector product (far faster than a
    strided reduction)."""
    w = _work(a)
    if a.shape[2] == 1:
        return _fold(np.ones(w.shape[0], dtype=a.dtype) @ w, a)
    return w.sum(axis=2).sum(axis=0)


def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a * b).sum(axis=(0, 2))`` without the product array."""
    if a.shape[2] == 1:
        return _fold(np.einsum("ij,ij->j", _work(a), _work(b)), a)
    return np.einsum("oci,oci->c", a, b)


def moments_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-channel mean and biased variance of ``x : (outer, channels, inner)``, in ``x``'s dtype.

    Two passes: :math:`\mu = \sum x / m`, then :math:`\sigma^2 = \sum (x-\mu)^2 / m`.
    """
    m = x.dtype.type(x.shape[0] * x.shape[2])
    mean = _channel_sum(x) / m
    centred = _work(x) - _expand(mean, x)
    var = _channel_dot(centred.reshape(x.shape), centred.reshape(x.shape)) / m
    return mean, var


def normalize_reference(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
                        beta: np.ndarray) -> np.ndarray:
    r""":math:`y = (x - \mu)\,(\gamma \sigma^{-1}) + \beta`, same shape and dtype as ``x``."""
    y = _work(x) - _expand(mean, x)
    y *= _expand(gamma * inv_std, x)
    y += _expand(beta, x)
    return y.reshape(x.shape)


def backward_reference(g: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
                       training: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`normalize_reference` for ``g = dL/dy : (outer, channels, inner)``.

    Returns ``(dx, dgamma, dbeta)``. With :math:`\hat x = (x-\mu)\sigma^{-1}`:
    :math:`\partial L/\partial\beta = \sum g`, :math:`\partial L/\partial\gamma = \sum g \hat x`, and in
    training (where :math:`\mu, \sigma` depend on :math:`x`)

    .. math:: \partial L/\partial x = \gamma\sigma^{-1}\Big(g - \tfrac1m \textstyle\sum g
              - \hat x\, \tfrac1m \sum g \hat x\Big),

    at inference simply :math:`\gamma\sigma^{-1} g`.
    """
    centred = _work(x) - _expand(mean, x)
    dbeta = _channel_sum(g)
    dgamma = _channel_dot(g, centred.reshape(x.shape)) * inv_std
    scale = _expand(gamma * inv_std, x)
    gw = _work(g)
    if not training:
        return (gw * scale).reshape(g.shape), dgamma, dbeta
    m = g.dtype.type(g.shape[0] * g.shape[2])
    centred *= _expand(dgamma * inv_std / m, x)  # now x_hat * sum(g x_hat) / m
    np.subtract(gw, centred, out=centred)
    centred -= _expand(dbeta / m, x)
    centred *= scale
    return centred.reshape(g.shape), dgamma, dbeta


# --------------------------------------------------------------------------- compiled forms
def _blocks(outer: int) -> int:
    """Blocks of ``outer`` whose partial sums are added separately (float64 partial sums, short chains)."""
    return max(1, min(outer, 8))


# Two loop orders: rows ``(outer, channels)`` with the channels innermost when ``inner = 1`` (channels-last
# data), planes ``(outer, channels, inner)`` with the positions innermost otherwise; either way the
# innermost loop is long and contiguous.


def _rows_sums(x, shift, s, ss):
    """Per-block, per-channel sums of ``x - shift`` and of its square, into float64 ``s, ss : (blocks, channels)``
    (zeros on entry)."""
    outer, channels = x.shape
    blocks = s.shape[0]
    for b in range(blocks):
        acc = np.zeros(channels)
        acc2 = np.zeros(channels)
        for o in range(b * outer // blocks, (b + 1) * outer // blocks):
            for c in range(channels):
                v = x[o, c] - shift[c]
                acc[c] += v
                acc2[c] += v * v
        s[b] = acc
        ss[b] = acc2


def _planes_sums(x, shift, s, ss):
    """:func:`_rows_sums` for ``(outer, channels, inner)``."""
    outer, channels, inner = x.shape
    blocks = s.shape[0]
    for b in range(blocks):
        for o in range(b * outer // blocks, (b + 1) * outer // blocks):
            for c in range(channels):
                acc = 0.0
                acc2 = 0.0
                for i in range(inner):
                    v = x[o, c, i] - shift[c]
                    acc += v
                    acc2 += v * v
                s[b, c] += acc
                ss[b, c] += acc2


def _rows_affine(x, mean, a, b, y):
    """``y = (x - mean) * a + b`` per channel, ``mean, a, b : (channels,)`` in ``x``'s dtype."""
    outer, channels = x.shape
    for o in range(outer):
        for c in range(channels):
            y[o, c] = (x[o, c] - mean[c]) * a[c] + b[c]


def _planes_affine(x, mean, a, b, y):
    """:func:`_rows_affine` for ``(outer, channels, inner)``."""
    outer, channels, inner = x.shape
    for o in range(outer):
        for c in range(channels):
            for i in range(inner):
                y[o, c, i] = (x[o, c, i] - mean[c]) * a[c] + b[c]


def _rows_gradient_sums(g, x, mean, sg, sgx):
    """Per-block, per-channel sums of ``g`` and ``g * (x - mean)``, into float64 ``sg, sgx : (blocks, channels)``
    (zeros on entry)."""
    outer, channels = x.shape
    blocks = sg.shape[0]
    for b in range(blocks):
        acc = np.zeros(channels)
        acc2 = np.zeros(channels)
        for o in range(b * outer // blocks, (b + 1) * outer // blocks):
            for c in range(channels):
                gv = g[o, c]
                acc[c] += gv
                acc2[c] += gv * (x[o, c] - mean[c])
        sg[b] = acc
        sgx[b] = acc2


def _planes_gradient_sums(g, x, mean, sg, sgx):
    """:func:`_rows_gradient_sums` for ``(outer, channels, inner)``."""
    outer, channels, inner = x.shape
    blocks = sg.shape[0]
    for b in range(blocks):
        for o in range(b * outer // blocks, (b + 1) * outer // blocks):
            for c in range(channels):
                acc = 0.0
                acc2 = 0.0
                for i in range(inner):
                    gv = g[o, c, i]
                    acc += gv
                    acc2 += gv * (x[o, c, i] - mean[c])
                sg[b, c] += acc
                sgx[b, c] += acc2


def _rows_input_gradient(g, x, mean, a, k, b, dx):
    """``dx = g * a + (x - mean) * k + b`` per channel."""
    outer, channels = x.shape
    for o in range(outer):
        for c in range(channels):
            dx[o, c] = g[o, c] * a[c] + (x[o, c] - mean[c]) * k[c] + b[c]


def _planes_input_gradient(g, x, mean, a, k, b, dx):
    """:func:`_rows_input_gradient` for ``(outer, channels, inner)``."""
    outer, channels, inner = x.shape
    for o in range(outer):
        for c in range(channels):
            for i in range(inner):
                dx[o, c, i] = g[o, c, i] * a[c] + (x[o, c, i] - mean[c]) * k[c] + b[c]


_COMPILED = {name: njit()(kernel) for name, kernel in (
    ("rows_sums", _rows_sums), ("planes_sums", _planes_sums), ("rows_affine", _rows_affine),
    ("planes_affine", _planes_affine), ("rows_gradient_sums", _rows_gradient_sums),
    ("planes_gradient_sums", _planes_gradient_sums), ("rows_input_gradient", _rows_input_gradient),
    ("planes_input_gradient", _planes_input_gradient))}


def _compiled(name: str, *arrays: np.ndarray):
    """The compiled kernel ``rows_<name>`` or ``planes_<name>`` for these ``(outer, channels, inner)``
    arrays, and the arrays in its layout (contiguous; 2-d for rows)."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    if arrays[0].shape[2] == 1:
        return _COMPILED[f"rows_{name}"], [a[:, :, 0] for a in arrays]
    return _COMPILED[f"planes_{name}"], arrays


def _split_sums(name: str, *arrays: np.ndarray, vector: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``kernel(*arrays, vector, first, second)`` for the sums kernel ``name`` on slices of ``outer`` at once,
    each slice filling its own blocks of the float64 per-block sums; returns each sum added up,
    ``(channels,)``. The kernels write into given arrays rather than return new ones: numba hands back a
    new array through a Python call, in which a Ctrl-C surfaces as a ``SystemError``."""
    kernel, arrays = _compiled(name, *arrays)
    outer = arrays[0].shape[0]
    slices = threads.parts(outer, arrays[0][0].size if outer else 1)
    per_slice = max(1, _blocks(arrays[0].shape[0]) // len(slices))
    first, second = np.zeros((2, len(slices) * per_slice, arrays[0].shape[1]))
    index = {rows.start: k for k, rows in enumerate(slices)}

    def part(rows: slice) -> None:
        blocks = slice(index[rows.start] * per_slice, (index[rows.start] + 1) * per_slice)
        kernel(*(a[rows] for a in arrays), vector, first[blocks], second[blocks])

    threads.run(part, slices)
    return first.sum(axis=0), second.sum(axis=0)


def _split_map(name: str, *arrays: np.ndarray, vectors: tuple[np.ndarray, ...], out: np.ndarray) -> None:
    """``kernel(*arrays, *vectors, out)`` for the element-wise kernel ``name``, on slices of ``outer`` at once;
    ``out`` is a new C-contiguous array of the input's shape."""
    kernel, arrays = _compiled(name, *arrays, out)
    threads.by_rows(lambda *rows: kernel(*rows[:-1], *vectors, rows[-1]), *arrays)


def moments_fast(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compiled :func:`moments_reference`: one pass, float64 sums of ``x - x[0, :, 0]`` (the shift keeps
    the variance exact when the mean is large against the spread)."""
    m = x.shape[0] * x.shape[2]
    shift = x[0, :, 0].astype(np.float64)
    s, ss = _split_sums("sums", x, vector=shift)
    s, ss = s / m, ss / m
    mean = shift + s
    var = np.maximum(ss - s * s, 0.0)
    return mean.astype(x.dtype), var.astype(x.dtype)


def normalize_fast(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
                   beta: np.ndarray) -> np.ndarray:
    """Compiled :func:`normalize_reference`: one pass, ``y = (x - mean) * a + beta`` with
    ``a = gamma / sigma``."""
    a = (gamma.astype(np.float64) * inv_std).astype(x.dtype)
    y = np.empty(x.shape, dtype=x.dtype)
    _split_map("affine", x, vectors=(mean.astype(x.dtype), a, beta.astype(x.dtype)), out=y)
    return y


def backward_fast(g: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
                  training: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Compiled :func:`backward_reference`: one pass for the sums, one for
    :math:`\partial L/\partial x = g a + (x - \mu) k + b` with per-channel :math:`a = \gamma\sigma^{-1}`,
    :math:`k = -a \sigma^{-1} \tfrac1m \sum g\hat x` and :math:`b = -a \tfrac1m \sum g`
    (:math:`k = b = 0` at inference)."""
    sg, sgx = _split_sums("gradient_sums", g, x, vector=mean.astype(np.float64))
    inv = inv_std.astype(np.float64)
    dbeta, dgamma = sg, sgx * inv
    a = gamma.astype(np.float64) * inv
    if training:
        m = x.shape[0] * x.shape[2]
        k = -a * inv * dgamma / m
        b = -a * dbeta / m
    else:
        k = b = np.zeros_like(a)
    dx = np.empty(g.shape, dtype=g.dtype)
    _split_map("input_gradient", g, x, out=dx, vectors=(mean.astype(g.dtype), a.astype(g.dtype),
                                                        k.astype(g.dtype), b.astype(g.dtype)))
    return dx, dgamma.astype(g.dtype), dbeta.astype(g.dtype)


moments = moments_fast if NUMBA_ENABLED else moments_reference
_normalize_form = normalize_fast if NUMBA_ENABLED else normalize_reference
_backward_form = backward_fast if NUMBA_ENABLED else backward_reference


def _check_vectors(what: str, x: np.ndarray, *vectors: np.ndarray) -> None:
    if x.ndim != 3 or any(v.shape != x.shape[1:2] for v in vectors):
        raise ShapeError(f"batch normalization {what} expects an input (outer, channels, inner) and per-channel "
                         f"vectors (channels,), got {x.shape} and {', '.join(str(v.shape) for v in vectors)}")


def normalize(x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
              beta: np.ndarray) -> np.ndarray:
    """:func:`normalize_reference` (by the compiled form when numba is enabled), after checking the shapes."""
    _check_vectors("forward", x, mean, inv_std, gamma, beta)
    return _normalize_form(x, mean, inv_std, gamma, beta)


def backward(g: np.ndarray, x: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, gamma: np.ndarray,
             training: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`backward_reference` (by the compiled form when numba is enabled), after checking the shapes."""
    _check_vectors("backward", x, mean, inv_std, gamma)
    if g.shape != x.shape:
        raise ShapeError(f"batch normalization backward expects a gradient of the forward pass's input shape, "
                         f"{x.shape} as (outer, channels, inner), got {g.shape}")
    return _backward_form(g, x, mean, inv_std, gamma, training)
