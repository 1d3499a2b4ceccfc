r"""An embedding table's gradient: rows of the incoming gradient added into the rows their tokens picked.

``scatter_add_rows(out, idx, values)``
    :math:`\text{out}[\text{idx}_i] \mathrel{+}= \text{values}_i` for every ``i`` in order, so a token seen
    several times gets the sum of its rows. ``out : (vocabulary, dim)``, ``idx : (n,)`` integers in
    ``[0, vocabulary)`` (checked by the layer's forward pass), ``values : (n, dim)``, ``out`` and ``values``
    of one float dtype.

NumPy's form is ``np.add.at``, which handles one element at a time through its generic machinery (a
Transformer's 4,096 tokens of width 128 took 4.6 ms); the compiled loop adds whole rows in the same order,
so both give the same bits.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit


def scatter_add_rows_reference(out: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """``out[idx[i]] += values[i]`` for every ``i``, in order (see the module docstring)."""
    np.add.at(out, idx, values)


def _scatter_add_rows(out, idx, values):
    n, dim = values.shape
    for i in range(n):
        row, src = out[idx[i]], values[i]
        for j in range(dim):
            row[j] += src[j]


_scatter_add_rows_fast = njit(error_model="numpy")(_scatter_add_rows)


def scatter_add_rows(out: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """The compiled form of :func:`scatter_add_rows_reference` where numba is available and the arrays are
    plain C-contiguous ones of one float dtype; the reference otherwise."""
    if (_scatter_add_rows_fast is not None and out.dtype == values.dtype and out.dtype.kind == "f"
            and out.flags.c_contiguous and values.flags.c_contiguous and idx.dtype.kind == "i"):
        _scatter_add_rows_fast(out, idx, values)
    else:
        scatter_add_rows_reference(out, idx, values)
