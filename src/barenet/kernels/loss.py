r"""Softmax cross-entropy against integer labels, loss and gradient in one pass over the logits.

The training step's loss for a softmax classifier takes logits ``z : (rows, classes)`` and integer
labels ``y : (rows,)`` and gives the mean loss, the gradient :math:`\partial L/\partial z` and the
probabilities. Per row, with :math:`m = \max_j z_j` and :math:`S = \sum_j e^{z_j - m}`:

.. math:: p_j = e^{z_j - m} / S, \qquad \ell = \log S - (z_y - m), \qquad
          \partial L/\partial z_j = (p_j - [j = y]) / \mathrm{rows}.

NumPy computes these in about ten passes (maximum, shift, ``exp``, sum, division, ``log``, the one-hot
rows built from the labels, product, subtraction, division); the compiled form makes one pass per row
with the row in cache and builds no one-hot rows; inside :func:`barenet.threads.engine` blocks of rows go to
barenet's threads (the sum of their losses differs from one thread's by rounding only). Shapes: ``z, probs,
grad : (rows, classes)`` C-contiguous, one float dtype; ``y : (rows,)`` integers in ``[0, classes)``. The loss
is accumulated in float64.

A label is an index into its row, so :func:`softmax_cross_entropy` checks every label (and every shape)
before either form runs: the compiled loop does not check bounds, and would write the ``-1/rows`` of a
label past the last class into the next row or past the array; NumPy would raise an ``IndexError`` on
one and read a negative one from the end of the row.
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import threads
from ..errors import DataError, ShapeError
from ._jit import njit


def _outside_reference(y: np.ndarray, classes: int) -> bool:
    """Whether an entry of ``y`` lies outside ``[0, classes)``."""
    return bool(y.size) and bool(y.min() < 0 or y.max() >= classes)


def _outside(y, classes):
    for v in y.flat:
        if v < 0 or v >= classes:
            return True
    return False


# Compiled, the test costs a fraction of a microsecond on a batch's labels, where NumPy's two reductions
# cost a few: it runs at every training step.
_outside_fast = njit()(_outside)
_any_outside = _outside_fast or _outside_reference


def check_labels(y: np.ndarray, classes: int, owner: str) -> None:
    """Raise a :class:`~barenet.errors.DataError` naming the worst label unless every entry of the integer
    array ``y`` is in ``[0, classes)``; ``owner`` (a loss's name) starts the message."""
    if _any_outside(y, classes):
        worst = y.min() if y.min() < 0 else y.max()
        raise DataError(f"{owner} got label {int(worst)}; labels must be integers in [0, {classes - 1}] for "
                        f"{classes} classes")


def softmax_cross_entropy_reference(z: np.ndarray, y: np.ndarray, probs: np.ndarray, grad: np.ndarray,
                                    inv_rows: float | None = None) -> float:
    """The rows' losses times ``inv_rows`` (default ``1 / rows``: their mean); ``probs`` and ``grad`` are
    written, the gradient scaled by ``inv_rows`` (see the module docstring). A block of a batch's rows passes
    ``1 / rows of the batch``. Labels are not checked here (see :func:`softmax_cross_entropy`)."""
    rows = z.shape[0]
    inv_rows = 1.0 / rows if inv_rows is None else inv_rows
    logp, p = F.log_softmax_and_softmax(z)
    probs[...] = p
    np.multiply(p, inv_rows, out=grad)
    grad[np.arange(rows), y] -= grad.dtype.type(inv_rows)
    return -float(logp[np.arange(rows), y].sum(dtype=np.float64)) * inv_rows


def _softmax_cross_entropy(z, y, probs, grad, inv_rows):
    rows, classes = z.shape
    total = 0.0
    for r in range(rows):
        zr, pr, gr = z[r], probs[r], grad[r]
        m = zr[0]
        for j in range(1, classes):
            m = max(m, zr[j])
        s = 0.0
        for j in range(classes):
            e = np.exp(zr[j] - m)
            pr[j] = e
            s += e
        inv = 1.0 / s
        for j in range(classes):
            pr[j] *= inv
            gr[j] = pr[j] * inv_rows
        label = y[r]
        gr[label] -= inv_rows
        total += math.log(s) - (zr[label] - m)
    return total * inv_rows


_softmax_cross_entropy_fast = njit(error_model="numpy")(_softmax_cross_entropy)
_softmax_cross_entropy_kernel = _softmax_cross_entropy_fast or softmax_cross_entropy_reference


def softmax_cross_entropy(z: np.ndarray, y: np.ndarray, probs: np.ndarray, grad: np.ndarray, *,
                          owner: str = "softmax_cross_entropy") -> float:
    """Mean loss over the rows, ``probs`` and ``grad`` written, by the compiled form when there is one;
    raises a :class:`~barenet.errors.ShapeError` or :class:`~barenet.errors.DataError` (starting with
    ``owner``) on arrays of other shapes or a label outside ``[0, classes)``, before anything is written."""
    if z.ndim != 2 or y.shape != z.shape[:1] or probs.shape != z.shape or grad.shape != z.shape:
        raise ShapeError(f"{owner} expects logits, probabilities and gradient of one shape (rows, classes) and "
                         f"labels (rows,), got {z.shape}, {probs.shape}, {grad.shape} and {y.shape}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{owner} expects integer labels, got an array of dtype {y.dtype}")
    check_labels(y, z.shape[1], owner)
    inv_rows = 1.0 / len(z) if len(z) else math.nan
    # on barenet's threads by blocks of rows (an exponential costs about as much as 16 plain values)
    parts = threads.run(lambda rows: _softmax_cross_entropy_kernel(z[rows], y[rows], probs[rows], grad[rows], inv_rows),
                        threads.parts(len(z), 16 * z.shape[1]))
    return float(sum(parts))
