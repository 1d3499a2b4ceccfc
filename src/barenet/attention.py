r"""Scaled dot-product attention, forward and backward, on NumPy arrays.

A multi-head attention layer projects its inputs to queries, keys and values, splits them into heads
and calls :func:`scaled_dot_product_attention` on ``(batch, heads, time, depth)`` arrays; its backward
pass calls :func:`scaled_dot_product_attention_backward` with the same ``cache``. Both follow the layer
contract's convention (:mod:`barenet.layers.base`): the forward call stores what the backward pass
needs in a dict handed in by the caller, and keeps nothing when none is given.

The matrix products go to BLAS (``numpy.matmul`` on the ``batch * heads`` stack of matrices); the
masked softmax and its backward pass are the compiled kernels of :mod:`barenet.kernels.attention`. Inside
:func:`barenet.threads.engine` the batch is split across barenet's threads, products included.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from . import threads
from .errors import ConfigError, DataError, ShapeError
from .kernels import attention as kernels
from .kernels import dropout as dropout_kernels

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def scaled_dot_product_attention(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    causal: bool = False,
    dropout: float = 0.0,
    rng: np.random.Generator | None = None,
    scale: float | None = None,
    cache: dict | None = None,
) -> np.ndarray:
    r"""Attend from the queries ``q`` to the keys ``k`` and return the weighted sums of the values ``v``.

    Parameters
    ----------
    q : (batch, heads, T, d)
        Queries, float32 or float64.
    k : (batch, heads, S, d)
        Keys, same dtype.
    v : (batch, heads, S, dv)
        Values, same dtype; ``dv`` may differ from ``d``.
    mask : bool array broadcastable to (batch, heads, T, S), optional
        True where query ``i`` may attend to key ``j`` (the convention of PyTorch's boolean ``attn_mask``
        and of Keras's ``attention_mask``). For padded keys, ``keys_kept[:, None, None, :]`` of a
        ``(batch, S)`` array.
    causal : bool
        Allow only :math:`j \le i`, the lower triangle ``np.tri(T, S)`` aligned at the top-left corner as
        in PyTorch's ``is_causal`` (when ``T != S`` too). Combined with ``mask`` by logical and (PyTorch
        refuses both at once; Keras combines them so).
    dropout : float in [0, 1)
        Probability of dropping each attention weight after the softmax (inverted dropout: the kept weights
        are scaled by :math:`1/(1 - \text{dropout})`). Applied whenever it is above zero: a layer passes
        its rate in training and 0 at inference.
    rng : numpy.random.Generator
        Draws the dropout mask, ``rng.random((batch, heads, T, S), dtype=np.float32) < 1 - dropout``
        (the draws of :class:`~barenet.layers.Dropout`); needed when ``dropout > 0``.
    scale : float, optional
        Factor of the scores; default :math:`1/\sqrt{d}`.
    cache : dict, optional
        When given (a :class:`~barenet.layers.Cache`, or any dict), receives what
        :func:`scaled_dot_product_attention_backward` needs: references to ``q``, ``k``, ``v`` and the
        attention weights, ``cache["probs"]`` (:math:`P` below, before dropout), for a layer that returns
        them. ``None`` keeps nothing.

    Returns
    -------
    ``(batch, heads, T, dv)``, the dtype of ``q``, C-contiguous.

    Notes
    -----
    With :math:`M` the mask (0 where allowed, :math:`-\infty` elsewhere) and :math:`R` the dropout factor
    (:math:`1/(1-\text{dropout})` where kept, 0 where dropped), per batch entry and head:

    .. math:: S = Q K^\top \cdot \text{scale}, \qquad P = \mathrm{softmax}(S + M), \qquad
              \tilde P = P \odot R, \qquad O = \tilde P V.

    The softmax runs along each row with its maximum subtracted, so no score overflows. A masked entry
    gets weight exactly 0, and a query with no allowed key gets an all-zero row of weights, hence a zero
    output row and zero gradients (PyTorch gives the same), never NaN.
    """
    out, part, work = attention_parts(q, k, v, mask=mask, causal=causal, dropout=dropout, rng=rng, scale=scale,
                                      cache=cache)
    threads.run(part, threads.parts(len(q), work))
    return out


def attention_parts(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    causal: bool = False,
    dropout: float = 0.0,
    rng: np.random.Generator | None = None,
    scale: float | None = None,
    cache: dict | None = None,
) -> tuple[np.ndarray, Callable[[slice], None], int]:
    """:func:`scaled_dot_product_attention` checked and set up, but not computed: ``(out, part, work)``.

    ``part(rows)`` computes ``out[rows]`` from ``q[rows]``, ``k[rows]`` and ``v[rows]`` (a slice of the batch),
    which need only be filled by then: a layer runs it in a part of its own that first computes those rows of
    its projections and then uses the output's rows, so that one hand-off to barenet's threads serves all
    three (:mod:`barenet.threads`). ``work`` is a batch row's work for :func:`barenet.threads.parts`. The
    arguments, the ``cache`` and the result are those of :func:`scaled_dot_product_attention`; the dropout
    mask's draws are made here, for the whole batch.
    """
    dtype = _check_inputs(q, k, v)
    batch, heads, t, d = q.shape
    s = k.shape[2]
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"attention dropout must be in [0, 1), got {dropout!r}")
    if dropout > 0 and not isinstance(rng, np.random.Generator):
        raise ConfigError(f"attention dropout={dropout!r} draws its mask from a numpy.random.Generator; "
                          f"pass rng=np.random.default_rng(seed), got rng={rng!r}")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    allowed = _broadcast_mask(mask, (batch, heads, t, s))

    probs = np.empty((batch, heads, t, s), dtype=dtype)
    dropped = probs
    if dropout > 0:
        u = rng.random(probs.shape, dtype=np.float32)
        dropped = np.empty_like(probs)
    out = np.empty((batch, heads, t, v.shape[3]), dtype=dtype)
    blocks = _query_blocks(t, s, causal)

    def part(rows: slice) -> None:
        kt = np.ascontiguousarray(k[rows].swapaxes(2, 3))  # a stack of transposed views would be slower
        for i0, i1, keys in blocks:  # scores a causal mask hides are left out (the softmax writes them 0)
            np.matmul(q[rows, :, i0:i1], kt[..., :keys], out=probs[rows, :, i0:i1, :keys])
        kernels.softmax_forward(probs[rows], None if allowed is None else allowed[rows], causal, scale, probs[rows])
        if dropout > 0:
            kept = np.empty(probs[rows].shape, dtype=bool)
            dropout_kernels.forward(probs[rows].reshape(-1), u[rows].reshape(-1), 1.0 - dropout,
                                    dropped[rows].reshape(-1), kept.reshape(-1))
        for i0, i1, keys in blocks:
            np.matmul(dropped[rows, :, i0:i1, :keys], v[rows, :, :keys], out=out[rows, :, i0:i1])

    if cache is not None:
        cache.update(q=q, k=k, v=v, probs=probs, dropped=dropped, scale=scale, causal=bool(causal))
    return out, part, heads * t * s * (d + v.shape[3])


def scaled_dot_product_attention_backward(
    dout: np.ndarray, cache: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Gradients of :func:`scaled_dot_product_attention` for the call that filled ``cache``.

    Parameters
    ----------
    dout : (batch, heads, T, dv)
        dLoss/dOutput.
    cache : dict
        The ``cache`` of the forward call (it is only read, so it may serve several backward passes).

    Returns
    -------
    ``(dq, dk, dv)``: dLoss/d``q`` ``(batch, heads, T, d)``, dLoss/d``k`` ``(batch, heads, S, d)`` and
    dLoss/d``v`` ``(batch, heads, S, dv)``, C-contiguous, in the inputs' dtype.

    Notes
    -----
    With :math:`dO = \partial L/\partial O` and the forward pass's :math:`P` and :math:`\tilde P`:

    .. math:: dV = \tilde P^\top dO, \qquad d\tilde P = dO\, V^\top, \qquad
              dS = P \odot \big(dP - \mathrm{rowsum}(dP \odot P)\big) \text{ with } dP = d\tilde P \odot R,

    .. math:: dQ = dS\, K \cdot \text{scale}, \qquad dK = dS^\top Q \cdot \text{scale}.

    Masked weights are constants 0, so they pass no gradient. The softmax step is computed as
    :math:`d\tilde P \odot \tilde P - P\,\mathrm{rowsum}(d\tilde P \odot \tilde P)`, which equals the line
    above and needs no copy of the dropout mask (:mod:`barenet.kernels.attention`).
    """
    dq, dk, dv, part, work = attention_backward_parts(dout, cache)
    threads.run(part, threads.parts(len(dq), work))
    return dq, dk, dv


def attention_backward_parts(
    dout: np.ndarray, cache: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Callable[[slice], None], int]:
    """:func:`scaled_dot_product_attention_backward` set up, not computed: ``(dq, dk, dv, part, work)``, where
    ``part(rows)`` fills those rows (a slice of the batch) of the three gradients from ``dout[rows]``, which
    need only be filled by then (see :func:`attention_parts`). ``dout`` in the forward pass's dtype is used
    as it is, not copied."""
    q, k, v, probs, dropped, scale, causal = (cache[key] for key in ("q", "k", "v", "probs", "dropped", "scale",
                                                                     "causal"))
    batch, heads, t, s = probs.shape
    if dout.shape != (batch, heads, t, v.shape[3]):
        raise ShapeError(f"attention backward expected dout of shape {(batch, heads, t, v.shape[3])}, "
                         f"got {dout.shape}")
    dout = np.asarray(dout, dtype=probs.dtype)
    dq, dk, dv = np.empty(q.shape, q.dtype), np.empty(k.shape, k.dtype), np.empty(v.shape, v.dtype)
    dscores = np.empty_like(probs)
    blocks = _query_blocks(t, s, causal)
    # keys j0:j1 are seen by the queries from `first` on (all of them without a causal mask)
    key_blocks = [(0, s, 0)] if not causal else [(j0, j1, j0) for j0, j1, _ in _query_blocks(s, s, True)]

    def part(rows: slice) -> None:
        vt = np.ascontiguousarray(v[rows].swapaxes(2, 3))  # a stack of transposed views would be slower
        for i0, i1, keys in blocks:  # only where the weights may be nonzero; the kernel zeroes the rest
            np.matmul(dout[rows, :, i0:i1], vt[..., :keys], out=dscores[rows, :, i0:i1, :keys])
        kernels.softmax_backward(dscores[rows].reshape(-1, s), probs[rows].reshape(-1, s),
                                 dropped[rows].reshape(-1, s), scale, t if causal else 0)
        for i0, i1, keys in blocks:
            np.matmul(dscores[rows, :, i0:i1, :keys], k[rows, :, :keys], out=dq[rows, :, i0:i1])
        for j0, j1, first in key_blocks:
            if first >= t:  # keys past the last query: no query sees them
                dv[rows, :, j0:j1] = 0
                dk[rows, :, j0:j1] = 0
                continue
            np.matmul(dropped[rows, :, first:, j0:j1].swapaxes(2, 3), dout[rows, :, first:], out=dv[rows, :, j0:j1])
            np.matmul(dscores[rows, :, first:, j0:j1].swapaxes(2, 3), q[rows, :, first:], out=dk[rows, :, j0:j1])

    return dq, dk, dv, part, heads * t * s * (2 * q.shape[3] + 2 * v.shape[3])


#: With a causal mask, queries are taken in blocks of at least this many rows (a block of queries needs the keys
#: up to its last query only); smaller products would run below BLAS's speed.
_BLOCK = 32


def _query_blocks(t: int, s: int, causal: bool) -> list[tuple[int, int, int]]:
    """``(start, stop, keys)`` per block of queries: queries ``start:stop`` may attend to keys ``:keys`` only.
    One block of every query and key without ``causal``; with it, query ``i`` sees keys ``0..i``, so a block
    needs the keys up to its last query (about 8 blocks, of at least :data:`_BLOCK` queries: for ``T = S``
    the products skip close to half of the scores)."""
    if not causal:
        return [(0, t, s)]
    size = max(_BLOCK, -(-t // 8))
    return [(i, min(i + size, t), min(i + size, s)) for i in range(0, t, size)]


def _check_inputs(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.dtype:
    """The common float dtype of ``q``, ``k``, ``v``, after checking their shapes fit together."""
    for name, a in (("q", q), ("k", k), ("v", v)):
        if not isinstance(a, np.ndarray) or a.ndim != 4:
            shape = getattr(a, "shape", type(a).__name__)
            raise ShapeError(f"attention expects {name} as a 4-d array (batch, heads, time, depth), got {shape}")
    dtypes = {q.dtype, k.dtype, v.dtype}
    if len(dtypes) != 1 or q.dtype not in _FLOATS:
        raise DataError(f"attention expects q, k and v of one float dtype (float32 or float64), got "
                        f"{q.dtype}, {k.dtype} and {v.dtype}")
    if k.shape[:2] != q.shape[:2] or v.shape[:3] != k.shape[:3] or k.shape[3] != q.shape[3]:
        raise ShapeError(f"attention expects q (batch, heads, T, d), k (batch, heads, S, d) and v "
                         f"(batch, heads, S, dv); got q {q.shape}, k {k.shape}, v {v.shape}")
    return q.dtype


def _broadcast_mask(mask: np.ndarray | None, shape: tuple[int, int, int, int]) -> np.ndarray | None:
    """``mask`` as a read-only boolean view of ``shape`` (``None`` stays ``None``)."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise DataError(f"attention mask must be boolean, True where attention is allowed; got dtype "
                        f"{mask.dtype} (for a 0/1 array pass mask.astype(bool))")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ShapeError(f"attention mask of shape {mask.shape} does not broadcast to (batch, heads, T, S) = "
                         f"{shape}") from None
