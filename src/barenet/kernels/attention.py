r"""The memory-bound steps of scaled dot-product attention: the masked softmax and its backward pass.

Attention's two products per direction go to BLAS (:mod:`barenet.attention`); between them lie
element-wise steps over the ``(batch, heads, T, S)`` scores, each of which NumPy would make in
several passes with temporaries (scale, mask, maximum, shift, ``exp``, sum, division). The compiled
forms make one pass per row with the row in cache.

``softmax_forward(scores, mask, causal, scale, probs)``
    Per row :math:`i` of ``scores``, with :math:`A_i` the allowed columns (``mask`` True and, with
    ``causal``, :math:`j \le i`), :math:`z_j = \text{scale}\cdot s_{ij}` and :math:`m = \max_{j\in A_i} z_j`:

    .. math:: p_{ij} = e^{z_j - m} / \textstyle\sum_{k\in A_i} e^{z_k - m} \ (j \in A_i), \qquad
              p_{ij} = 0 \ (j \notin A_i).

    A row with no allowed column is all zeros (never NaN). ``probs`` may be ``scores`` itself.
``softmax_backward(grad, probs, dropped, scale, period=0)``
    Given ``grad`` :math:`= \partial L/\partial \tilde p` for the probabilities after dropout,
    :math:`\tilde p = p \odot r` (``dropped``; :math:`r` is the kept-and-rescaled factor, ``dropped`` is
    ``probs`` without dropout), writes :math:`\partial L/\partial s` into ``grad``:

    .. math:: \partial L/\partial s_{ij} = \text{scale}\,\big(g_{ij}\tilde p_{ij} - p_{ij} D_i\big),
              \qquad D_i = \textstyle\sum_j g_{ij} \tilde p_{ij}.

    This is the softmax Jacobian :math:`p_j(\partial L/\partial p_j - \sum_k p_k\,\partial L/\partial p_k)`
    with :math:`\partial L/\partial p = g \odot r` and :math:`p \odot g \odot r = g \odot \tilde p`, so
    the dropout factor itself is never needed. Masked entries have :math:`p = \tilde p = 0` and get zero.
    With a causal mask, ``period`` is :math:`T`: row ``r`` is query :math:`i = r \bmod T`, whose columns
    past :math:`i` are masked, so they are set to 0 without being read (the caller need not compute them).

Shapes: ``scores, probs : (batch, heads, T, S)``, ``probs`` C-contiguous; ``mask`` ``None`` (every
column allowed) or a boolean array of that shape, any strides (a broadcast view); ``grad, probs,
dropped : (rows, S)`` C-contiguous; all of one float dtype. Row sums are accumulated in float64. The two
forms agree to float rounding, except that the compiled forward pass gives 0 where the reference gives a
subnormal weight (below 1.2e-38 in float32, 2.2e-308 in float64).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import njit


def softmax_forward_reference(scores: np.ndarray, mask: np.ndarray | None, causal: bool, scale: float,
                              probs: np.ndarray) -> None:
    """Masked, scaled softmax of the last axis of ``scores`` into ``probs`` (see the module docstring)."""
    t, s = scores.shape[-2:]
    allowed = np.ones((t, s), dtype=bool) if mask is None else mask
    if causal:
        allowed = allowed & np.tri(t, s, dtype=bool)
    z = np.where(allowed, scores * scores.dtype.type(scale), -np.inf)
    m = z.max(axis=-1, keepdims=True)
    m[np.isneginf(m)] = 0  # a fully masked row: every z is -inf, exp gives 0 and the row stays 0
    with np.errstate(under="ignore"):
        e = np.exp(z - m)
    total = e.sum(axis=-1, keepdims=True, dtype=np.float64)
    total[total == 0] = 1  # a fully masked row: 0 / 1
    np.divide(e, total, out=probs, casting="same_kind")


def softmax_backward_reference(grad: np.ndarray, probs: np.ndarray, dropped: np.ndarray, scale: float,
                               period: int = 0) -> None:
    """``grad`` (dLoss/d``dropped``) becomes dLoss/d``scores`` in place (see the module docstring)."""
    if period:
        rows, s = grad.shape
        grad[np.arange(s) > np.arange(rows)[:, None] % period] = 0  # masked: never read
    gp = grad * dropped
    d = gp.sum(axis=-1, keepdims=True, dtype=np.float64).astype(grad.dtype)
    np.subtract(gp, probs * d, out=grad)
    grad *= grad.dtype.type(scale)


# The compiled forward pass computes ``exp`` itself, in a form the compiler turns into SIMD code (a call
# to the C library's ``exp`` per element would be the kernel's main cost): with :math:`x = k \ln 2 + r`,
# :math:`k = \mathrm{round}(x / \ln 2)`, :math:`|r| \le \ln 2 / 2`, :math:`e^x = 2^k e^r`, where :math:`e^r` is a
# polynomial and :math:`2^k` is written as exponent bits into an integer view of a float array. ``ln 2`` is
# split in two parts (Cody and Waite) so that :math:`r` is exact. An exponent below the logarithm of the
# smallest normal number (a weight under 1.2e-38 in float32, 2.2e-308 in float64, relative to the row's
# largest) gives 0 instead of a subnormal number.

#: Per dtype: ``ln 2`` in two parts, :math:`1/\ln 2`, the lowest exponent kept, and 0.5 (in that dtype).
_EXP_CONSTANTS = {
    np.dtype(np.float32): tuple(np.float32(c) for c in (0.693359375, -2.12194440e-4, 1.44269504088896341,
                                                          -87.3365447505531, 0.5)),
    np.dtype(np.float64): (6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.44269504088896341,
                           -708.396418532264106, 0.5),
}
#: Coefficients of :math:`e^r` on :math:`|r| \le \ln 2 / 2`, highest power first: in float32 Cephes'
#: minimax polynomial of ``expf`` (degree 7), in float64 the Taylor polynomial of degree 13 (its remainder
#: is below 1e-17).
_EXP_POLYNOMIAL = {
    np.dtype(np.float32): tuple(np.float32(c) for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                                                          4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
                                                          1.0, 1.0)),
    np.dtype(np.float64): tuple(1.0 / math.factorial(n) for n in range(13, -1, -1)),
}
#: Per dtype: the integer type of its bits, the exponent bias and the position of the exponent.
_EXPONENT = {np.dtype(np.float32): (np.int32, 127, 23), np.dtype(np.float64): (np.int64, 1023, 52)}


def _row_max(x, stop):
    """Largest of ``x[:stop]`` (``stop >= 1``), in eight independent running maxima: the compiler does not
    vectorize a float maximum, and a single running maximum waits on every comparison."""
    big = x[0]
    n8 = stop - stop % 8
    if n8:
        m0, m1, m2, m3, m4, m5, m6, m7 = x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]
        for j in range(8, n8, 8):
            m0, m1, m2, m3 = max(m0, x[j]), max(m1, x[j + 1]), max(m2, x[j + 2]), max(m3, x[j + 3])
            m4, m5, m6, m7 = max(m4, x[j + 4]), max(m5, x[j + 5]), max(m6, x[j + 6]), max(m7, x[j + 7])
        big = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for j in range(n8, stop):
        big = max(big, x[j])
    return big


def _row_sum(x, stop):
    """Float64 sum of ``x[:stop]`` (compiled with reassociation, so it is vectorized)."""
    total = 0.0
    for j in range(stop):
        total += x[j]
    return total


def _row_dot(x, y, stop):
    """Float64 sum of ``x[:stop] * y[:stop]`` (compiled with reassociation, so it is vectorized)."""
    total = 0.0
    for j in range(stop):
        total += x[j] * y[j]
    return total


def _softmax_forward(scores, mask, has_mask, causal, scale, probs, two, two_bits, cell, poly, ln2_hi, ln2_lo,
                     log2e, low, half, bias, shift):
    batch, heads, t, s = scores.shape
    zero = scale - scale
    for b in range(batch):
        for h in range(heads):
            for i in range(t):
                row, allowed, out = scores[b, h, i], mask[b, h, i], probs[b, h, i]
                stop = min(i + 1, s) if causal else s
                seen = stop > 0
                if has_mask:
                    seen = False
                    for j in range(stop):
                        seen |= allowed[j]
                        out[j] = row[j] * scale if allowed[j] else -np.inf
                else:
                    for j in range(stop):
                        out[j] = row[j] * scale
                if not seen:
                    stop = 0
                else:
                    big = _row_max(out, stop)
                    for j in range(stop):  # out[j] = exp(out[j] - big); masked (-inf) gives 0, NaN stays NaN
                        x = out[j] - big
                        y = low if x < low else x
                        k = np.floor(y * log2e + half)
                        r = y - k * ln2_hi - k * ln2_lo
                        p = zero
                        for c in poly:
                            p = p * r + c
                        two_bits[j] = (np.int64(k) + bias) << shift
                        out[j] = zero if x <= low else p
                    for j in range(stop):
                        out[j] *= two[j]
                    cell[0] = 1.0 / _row_sum(out, stop)  # the reciprocal in the data's dtype
                    inv = cell[0]
                    for j in range(stop):
                        out[j] *= inv
                for j in range(stop, s):
                    out[j] = zero


def _softmax_backward(grad, probs, dropped, scale, cell, period):
    rows, s = grad.shape
    zero = scale - scale
    for r in range(rows):
        g, p, q = grad[r], probs[r], dropped[r]
        stop = min(r % period + 1, s) if period else s
        cell[0] = _row_dot(g, q, stop)
        d = cell[0]
        for j in range(stop):
            g[j] = scale * (g[j] * q[j] - p[j] * d)
        for j in range(stop, s):
            g[j] = zero


_row_max = njit(error_model="numpy")(_row_max) or _row_max
_row_sum = njit(error_model="numpy", fastmath={"reassoc"})(_row_sum) or _row_sum
_row_dot = njit(error_model="numpy", fastmath={"reassoc"})(_row_dot) or _row_dot
_softmax_forward_fast = njit(error_model="numpy", fastmath={"contract"})(_softmax_forward)
_softmax_backward_fast = njit(error_model="numpy", fastmath={"contract"})(_softmax_backward)


def softmax_forward_fast(scores: np.ndarray, mask: np.ndarray | None, causal: bool, scale: float,
                         probs: np.ndarray) -> None:
    """Compiled :func:`softmax_forward_reference`."""
    dtype = scores.dtype
    two = np.empty(scores.shape[-1], dtype)
    bits, bias, shift = _EXPONENT[dtype]
    has_mask = mask is not None
    if not has_mask:
        mask = np.broadcast_to(np.ones((1, 1, 1, 1), dtype=bool), scores.shape)
    _softmax_forward_fast(scores, mask, has_mask, bool(causal), dtype.type(scale), probs, two, two.view(bits),
                          np.empty(1, dtype), _EXP_POLYNOMIAL[dtype], *_EXP_CONSTANTS[dtype], bias, shift)


def softmax_backward_fast(grad: np.ndarray, probs: np.ndarray, dropped: np.ndarray, scale: float,
                          period: int = 0) -> None:
    """Compiled :func:`softmax_backward_reference`."""
    _softmax_backward_fast(grad, probs, dropped, grad.dtype.type(scale), np.empty(1, grad.dtype), int(period))


softmax_forward = softmax_forward_fast if _softmax_forward_fast is not None else softmax_forward_reference
softmax_backward = softmax_backward_fast if _softmax_backward_fast is not None else softmax_backward_reference
