r"""Attention heads moved between the projections' layout and the heads' own, with the bias on the way.

A multi-head attention layer computes its projections for all heads in one matrix product, whose rows are
``(batch, time)`` positions and whose columns are ``(heads, width)``; attention itself wants each head's
``(time, width)`` matrix contiguous. NumPy moves a ``(batch, time, heads, width)`` array to ``(batch,
heads, time, width)`` through its strided iterator, one short inner loop of ``width`` values at a time: for
``width = 32`` that costs several times the copy itself. These kernels make the move in one pass, adding
the projection's bias on the way forward and summing the bias gradient on the way back.

``heads_first(src, bias, out)``
    :math:`\text{out}[b, h, t, :] = \text{src}[b, t, h, :] + \text{bias}[h, :]`.
``heads_last(src, out, dbias)``
    :math:`\text{out}[b, t, h, :] = \text{src}[b, h, t, :]` and, when ``dbias`` is not ``None``,
    :math:`\text{dbias}[h, :] = \sum_{b, t} \text{src}[b, h, t, :]` (added up in float64).

Shapes: ``src, out`` ``(batch, time, heads, width)`` and ``(batch, heads, time, width)`` (either order as
above), any strides with the last axis contiguous (a view of the projections' ``(batch * time, heads *
width)`` matrix); ``bias, dbias : (heads, width)``; one float dtype.
"""

from __future__ import annotations

import numpy as np

from .. import threads
from ._jit import njit


def heads_first_reference(src: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    np.add(src.transpose(0, 2, 1, 3), bias[:, None, :], out=out)


def heads_last_reference(src: np.ndarray, out: np.ndarray, dbias: np.ndarray | None) -> None:
    out[...] = src.transpose(0, 2, 1, 3)
    if dbias is not None:
        dbias[...] = src.sum(axis=(0, 2), dtype=np.float64)


def _heads_first(src, bias, out):
    batch, time, heads, width = src.shape
    for b in range(batch):
        for h in range(heads):
            bh = bias[h]
            for t in range(time):
                s, o = src[b, t, h], out[b, h, t]
                for j in range(width):
                    o[j] = s[j] + bh[j]


def _heads_last(src, out, total, sums):
    batch, heads, time, width = src.shape
    for b in range(batch):
        for t in range(time):
            for h in range(heads):
                s, o = src[b, h, t], out[b, t, h]
                for j in range(width):
                    o[j] = s[j]
                if sums:
                    th = total[h]
                    for j in range(width):
                        th[j] += s[j]


_heads_first_fast = njit(error_model="numpy")(_heads_first)
_heads_last_fast = njit(error_model="numpy")(_heads_last)


def heads_first(src: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """See the module docstring; on barenet's threads by slices of the batch."""
    if _heads_first_fast is None or src.strides[-1] != src.itemsize:
        heads_first_reference(src, bias, out)
        return
    threads.run(lambda rows: _heads_first_fast(src[rows], bias, out[rows]), threads.parts(len(src), src[0].size))


def heads_last(src: np.ndarray, out: np.ndarray, dbias: np.ndarray | None = None) -> None:
    """See the module docstring; on barenet's threads by slices of the batch."""
    if _heads_last_fast is None or out.strides[-1] != out.itemsize:
        heads_last_reference(src, out, dbias)
        return
    sums = dbias is not None

    def part(rows: slice) -> np.ndarray:
        total = np.zeros(src.shape[1::2] if sums else (1, 1))
        _heads_last_fast(src[rows], out[rows], total, sums)
        return total

    totals = threads.run(part, threads.parts(len(src), src[0].size))
    if sums:
        dbias[...] = np.sum(totals, axis=0)
