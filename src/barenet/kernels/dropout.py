r"""Inverted dropout, forward and backward, each in one pass.

Forward keeps each input with probability ``keep`` and scales the kept ones by :math:`1/\text{keep}`:
:math:`y = x \cdot [u < \text{keep}] / \text{keep}` for uniform draws ``u`` (drawn by the layer from its
generator, so both forms give the same mask from the same draws). Backward is
:math:`\partial L/\partial x = g \cdot [u < \text{keep}] / \text{keep}`. NumPy makes a float mask (comparison,
conversion, scaling) and multiplies, four passes and two temporaries; the compiled forms make one pass
and keep a one-byte mask. Shapes: ``x, y, g, dx : (n,)`` (flattened), one float dtype; ``u : (n,)``
float32; ``mask : (n,)`` bool. The compiled loops do not check bounds, so ``forward`` and ``backward``
check that the arrays have one length before either form runs.
"""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ._jit import njit


def forward_reference(x: np.ndarray, u: np.ndarray, keep: float, y: np.ndarray, mask: np.ndarray) -> None:
    """``mask = u < keep``; ``y = x * mask / keep``."""
    np.less(u, np.float32(keep), out=mask)
    np.multiply(x, mask * x.dtype.type(1.0 / keep), out=y)


def backward_reference(g: np.ndarray, mask: np.ndarray, keep: float, dx: np.ndarray) -> None:
    """``dx = g * mask / keep``."""
    np.multiply(g, mask * g.dtype.type(1.0 / keep), out=dx)


def _forward(x, u, threshold, scale, y, mask):
    zero = scale - scale
    for i in range(x.shape[0]):
        kept = u[i] < threshold
        mask[i] = kept
        y[i] = x[i] * (scale if kept else zero)  # a dropped NaN stays NaN, as in x * mask


def _backward(g, mask, scale, dx):
    zero = scale - scale
    for i in range(g.shape[0]):
        dx[i] = g[i] * (scale if mask[i] else zero)


_forward_fast = njit(error_model="numpy")(_forward)
_backward_fast = njit(error_model="numpy")(_backward)


def forward_fast(x: np.ndarray, u: np.ndarray, keep: float, y: np.ndarray, mask: np.ndarray) -> None:
    """Compiled :func:`forward_reference` (the same products, so the same bits)."""
    _forward_fast(x, u, np.float32(keep), x.dtype.type(1.0 / keep), y, mask)


def backward_fast(g: np.ndarray, mask: np.ndarray, keep: float, dx: np.ndarray) -> None:
    """Compiled :func:`backward_reference`."""
    _backward_fast(g, mask, g.dtype.type(1.0 / keep), dx)


_forward_form = forward_fast if _forward_fast is not None else forward_reference
_backward_form = backward_fast if _backward_fast is not None else backward_reference


def forward(x: np.ndarray, u: np.ndarray, keep: float, y: np.ndarray, mask: np.ndarray) -> None:
    """:func:`forward_reference` (by the compiled form when there is one), after checking the shapes."""
    if not x.shape == u.shape == y.shape == mask.shape == (x.size,):
        raise ShapeError(f"dropout forward expects input, draws, output and mask of one shape (n,), got "
                         f"{x.shape}, {u.shape}, {y.shape} and {mask.shape}")
    _forward_form(x, u, keep, y, mask)


def backward(g: np.ndarray, mask: np.ndarray, keep: float, dx: np.ndarray) -> None:
    """:func:`backward_reference` (by the compiled form when there is one), after checking the shapes."""
    if g.size != mask.size:
        raise ShapeError(f"dropout backward expects a gradient of {mask.size} values (the forward pass's input), "
                         f"got {g.size}")
    if not g.shape == mask.shape == dx.shape == (mask.size,):
        raise ShapeError(f"dropout backward expects gradient, mask and output of one shape (n,), got {g.shape}, "
                         f"{mask.shape} and {dx.shape}")
    _backward_form(g, mask, keep, dx)
