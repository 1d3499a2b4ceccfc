r"""Softmax cross-entropy against integer labels, loss and gradient in one pass over the logits.

The training step's loss for a softmax classifier takes logits ``z : (rows, classes)`` and integer
labels ``y : (rows,)`` and gives the mean loss, the gradient :math:`\partial L/\partial z` and the
probabilities. Per row, with :math:`m = \max_j z_j` and :math:`S = \sum_j e^{z_j - m}`:

.. math:: p_j = e^{z_j - m} / S, \qquad \ell = \log S - (z_y - m), \qquad
          \partial L/\partial z_j = (p_j - [j = y]) / \mathrm{rows}.

NumPy computes these in about ten passes (maximum, shift, ``exp``, sum, division, ``log``, the one-hot
rows built from the labels, product, subtraction, division); the compiled form makes one pass per row
with the row in cache and builds no one-hot rows. Shapes: ``z, probs, grad : (rows, classes)``
C-contiguous, one float dtype; ``y : (rows,)`` integers in ``[0, classes)``. The loss is accumulated
in float64.
"""

from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ._jit import njit


def softmax_cross_entropy_reference(z: np.ndarray, y: np.ndarray, probs: np.ndarray, grad: np.ndarray) -> float:
    """Mean loss over the rows; ``probs`` and ``grad`` are written (see the module docstring)."""
    rows = z.shape[0]
    logp, p = F.log_softmax_and_softmax(z)
    probs[...] = p
    np.divide(p, rows, out=grad)
    grad[np.arange(rows), y] -= grad.dtype.type(1 / rows)
    return -float(logp[np.arange(rows), y].sum(dtype=np.float64)) / rows


def _softmax_cross_entropy(z, y, probs, grad):
    rows, classes = z.shape
    inv_rows = 1.0 / rows
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
softmax_cross_entropy = _softmax_cross_entropy_fast or softmax_cross_entropy_reference
