"""The compiled masked softmax of attention and its backward pass against their NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

from barenet.kernels import NUMBA_ENABLED
from barenet.kernels import attention as kernels

needs_numba = pytest.mark.skipif(not NUMBA_ENABLED, reason="numba not installed or BARENET_NUMBA=0")
TOL = {np.float32: 2e-7, np.float64: 1e-15}  # absolute, on weights in [0, 1]


def _scores(shape, dtype, seed=0, spread=6.0):
    return (np.random.default_rng(seed).standard_normal(shape) * spread).astype(dtype)


def _both(scores, mask, causal, scale=0.3):
    ref, fast = np.empty_like(scores), np.empty_like(scores)
    kernels.softmax_forward_reference(scores, mask, causal, scale, ref)
    kernels.softmax_forward_fast(scores, mask, causal, scale, fast)
    return ref, fast


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("mask_shape", [None, (2, 1, 1, "S"), (1, 3, "T", "S")], ids=["no-mask", "keys", "per-head"])
@pytest.mark.parametrize("t,s", [(5, 7), (7, 5), (1, 1), (33, 129), (130, 3)])
def test_compiled_masked_softmax_matches_the_reference(t, s, mask_shape, causal, dtype):
    scores = _scores((2, 3, t, s), dtype)
    mask = None
    if mask_shape is not None:
        shape = tuple(t if n == "T" else s if n == "S" else n for n in mask_shape)
        mask = np.broadcast_to(np.random.default_rng(1).random(shape) < 0.6, scores.shape)
    ref, fast = _both(scores, mask, causal)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=TOL[dtype])
    np.testing.assert_array_equal(fast == 0, ref == 0)  # masked weights are exactly zero in both
    rows = fast.sum(axis=-1)
    np.testing.assert_allclose(rows[rows != 0], 1, rtol=4 * TOL[dtype] * s)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_fully_masked_row_is_zero_and_a_nan_score_makes_its_row_nan(dtype):
    scores = _scores((1, 2, 3, 4), dtype)
    mask = np.ones(scores.shape, dtype=bool)
    mask[0, 0, 1] = False  # nothing to attend to
    scores[0, 1, 2, 3] = np.nan
    for probs in _both(scores, mask, False):
        np.testing.assert_array_equal(probs[0, 0, 1], 0)
        assert np.isnan(probs[0, 1, 2]).all()
        assert np.isfinite(np.delete(probs.reshape(6, 4), 5, axis=0)).all()


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_softmax_is_exact_over_the_whole_exponent_range(dtype):
    """The compiled form's own ``exp``: the shift of every row spans its largest score down to where the weight
    leaves the normal numbers."""
    low = {np.float32: -87.0, np.float64: -708.0}[dtype]
    z = np.linspace(low, 0, 4097)
    scores = np.concatenate([z, [0.0]]).astype(dtype).reshape(1, 1, 1, -1)
    ref, fast = _both(scores, None, False, scale=1.0)
    total = np.exp(z).sum() + 1
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny  # weights under tiny (after the division) are subnormal
    np.testing.assert_allclose(fast, ref, rtol=4 * eps, atol=tiny)
    np.testing.assert_allclose(fast[0, 0, 0, :-1], np.exp(z) / total, rtol=4 * eps, atol=tiny)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dropout", [False, True])
def test_compiled_softmax_backward_matches_the_reference(dropout, dtype):
    rng = np.random.default_rng(2)
    probs = np.empty((2, 3, 6, 9), dtype)
    mask = np.broadcast_to(rng.random((2, 1, 6, 9)) < 0.7, probs.shape)
    kernels.softmax_forward_reference(_scores(probs.shape, dtype), mask, False, 0.5, probs)
    dropped = probs * (rng.random(probs.shape) < 0.8) / dtype(0.8) if dropout else probs
    grad = rng.standard_normal(probs.shape).astype(dtype)
    ref, fast = grad.reshape(-1, 9).copy(), grad.reshape(-1, 9).copy()
    kernels.softmax_backward_reference(ref, probs.reshape(-1, 9), dropped.reshape(-1, 9), 0.5)
    kernels.softmax_backward_fast(fast, probs.reshape(-1, 9), dropped.reshape(-1, 9), 0.5)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=4 * TOL[dtype])
    np.testing.assert_array_equal(fast[~mask.reshape(-1, 9)], 0)  # no gradient through a masked weight


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_causal_backward_sets_the_masked_columns_without_reading_them(dtype):
    """With ``period=T`` the columns past each row's query are 0 whatever they held (NaN included), and the
    rest equals the backward pass over fully computed rows."""
    rng = np.random.default_rng(4)
    probs = np.empty((2, 3, 6, 9), dtype)  # T = 6 queries, S = 9 keys: rows past the diagonal are masked
    kernels.softmax_forward_reference(_scores(probs.shape, dtype), None, True, 0.5, probs)
    grad = rng.standard_normal(probs.shape).astype(dtype).reshape(-1, 9)
    masked = np.arange(9) > np.arange(len(grad))[:, None] % 6
    expected = grad.copy()
    kernels.softmax_backward_reference(expected, probs.reshape(-1, 9), probs.reshape(-1, 9), 0.5)
    garbage = grad.copy()
    garbage[masked] = np.nan
    for backward in (kernels.softmax_backward_reference, kernels.softmax_backward_fast):
        got = garbage.copy()
        backward(got, probs.reshape(-1, 9), probs.reshape(-1, 9), 0.5, 6)
        np.testing.assert_array_equal(got[masked], 0)
        np.testing.assert_allclose(got, expected, rtol=0, atol=4 * TOL[dtype])


def test_reference_backward_is_the_softmax_jacobian():
    """``scale (g * p - p * sum(g * p))`` is :math:`J^T g` for the softmax Jacobian
    :math:`J = \\mathrm{diag}(p) - p p^T` of one row, times the scale."""
    rng = np.random.default_rng(3)
    p = np.empty((1, 1, 1, 5))
    kernels.softmax_forward_reference(rng.standard_normal((1, 1, 1, 5)), None, False, 1.0, p)
    g = rng.standard_normal((1, 5))
    out = g.copy()
    kernels.softmax_backward_reference(out, p.reshape(1, 5), p.reshape(1, 5), 2.0)
    row = p.reshape(5)
    np.testing.assert_allclose(out[0], 2.0 * (np.diag(row) - np.outer(row, row)) @ g[0], rtol=1e-14)
