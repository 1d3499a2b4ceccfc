r"""Layer normalization over the last axis of a ``(rows, features)`` block, forward and backward, each in
one compiled pass per row.

For a row :math:`x` of :math:`F` features, :math:`\hat x = (x - \mu)\,s` with :math:`\mu` the row's mean and
:math:`s = 1/\sqrt{\sigma^2 + \epsilon}` (biased variance), and :math:`y = \hat x \gamma + \beta`. Backward, with
:math:`g = \partial L/\partial y \odot \gamma`:

.. math::
    \frac{\partial L}{\partial x} = s\,\bigl(g - \overline{g} - \hat x\,\overline{g \hat x}\bigr),\qquad
    \frac{\partial L}{\partial \gamma} = \sum_{rows} \frac{\partial L}{\partial y} \odot \hat x,\qquad
    \frac{\partial L}{\partial \beta} = \sum_{rows} \frac{\partial L}{\partial y},

the bars meaning the mean over the row's features. NumPy needs about ten passes over the block for the
forward and as many for the backward (each a temporary array); these loops read a row while it is in the
cache and accumulate the statistics in float64. :class:`barenet.layers.LayerNormalization` uses them for
its usual form (the last axis only) and runs them on slices of the rows at once with :mod:`barenet.threads`;
without numba it keeps its NumPy form.

Shapes: ``x, y, x_hat, grad, dx : (rows, features)``; ``gamma, beta, dgamma, dbeta : (features,)``;
``inv_std : (rows,)``; one float dtype (float32 or float64), C-contiguous.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import njit


def _forward(x, gamma, beta, epsilon, y, x_hat, inv_std):
    rows, features = x.shape
    for r in range(rows):
        xr = x[r]
        total = 0.0
        for j in range(features):
            total += xr[j]
        mean = total / features
        squares = 0.0
        for j in range(features):
            d = xr[j] - mean
            squares += d * d
        s = 1.0 / math.sqrt(squares / features + epsilon)
        inv_std[r] = s
        hr, yr = x_hat[r], y[r]
        for j in range(features):
            h = (xr[j] - mean) * s
            hr[j] = h
            yr[j] = h * gamma[j] + beta[j]


def _backward(grad, x_hat, inv_std, gamma, dx, dgamma, dbeta):
    rows, features = grad.shape
    sum_gh = np.zeros(features)
    sum_g = np.zeros(features)
    for r in range(rows):
        gr, hr = grad[r], x_hat[r]
        mean_g = 0.0
        mean_gh = 0.0
        for j in range(features):
            g = gr[j] * gamma[j]
            mean_g += g
            mean_gh += g * hr[j]
            sum_g[j] += gr[j]
            sum_gh[j] += gr[j] * hr[j]
        mean_g /= features
        mean_gh /= features
        s = inv_std[r]
        dr = dx[r]
        for j in range(features):
            dr[j] = s * (gr[j] * gamma[j] - mean_g - hr[j] * mean_gh)
    for j in range(features):
        dgamma[j] = sum_gh[j]
        dbeta[j] = sum_g[j]


#: ``forward(x, gamma, beta, epsilon, y, x_hat, inv_std)`` writing ``y``, ``x_hat`` and ``inv_std``, or ``None``
#: without numba.
forward = njit(error_model="numpy", fastmath={"reassoc", "contract"})(_forward)
#: ``backward(grad, x_hat, inv_std, gamma, dx, dgamma, dbeta)`` writing ``dx`` and this block's ``dgamma`` and
#: ``dbeta`` (sums over its rows), or ``None`` without numba.
backward = njit(error_model="numpy", fastmath={"reassoc"})(_backward)
