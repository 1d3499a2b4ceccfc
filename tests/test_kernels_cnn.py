"""The compiled CNN kernels (batch normalization, pooling) against their NumPy reference forms.

Every shape the layers hand to them: ``(outer, channels, 1)`` views of channels-last data and of
``(batch, features)``, ``(batch, channels, height * width)`` views of channels-first data; pooling on
channels-last arrays and on the transposed (non-contiguous) views channels-first layers pass; odd sizes,
"same" padding, overlapping windows. float32 results agree to float32 rounding, float64 to float64's.
"""

from __future__ import annotations

import numpy as np
import pytest

from barenet.kernels import NUMBA_ENABLED, pooling
from barenet.kernels import normalization as norm

pytestmark = pytest.mark.skipif(not NUMBA_ENABLED, reason="compiled kernels need numba (and BARENET_NUMBA != 0)")

TOL = {np.float32: {"rtol": 2e-5, "atol": 2e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}
DTYPES = [np.float32, np.float64]

NORM_SHAPES = [(8 * 28 * 28, 32, 1), (8 * 12 * 12, 64, 1), (7, 3, 1), (2, 5, 1), (5, 3, 35), (3, 4, 1),
               (4, 6, 9)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", NORM_SHAPES, ids=str)
def test_batchnorm_kernels_match_the_reference(shape, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 2 + 5).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    gamma = rng.uniform(0.5, 1.5, shape[1]).astype(dtype)
    beta = rng.standard_normal(shape[1]).astype(dtype)
    tol = TOL[dtype]

    mean, var = norm.moments_fast(x)
    ref_mean, ref_var = norm.moments_reference(x)
    assert mean.dtype == var.dtype == dtype
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2)), **tol)
    np.testing.assert_allclose(var, x.astype(np.float64).var(axis=(0, 2)), **tol)
    np.testing.assert_allclose(ref_mean, mean, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)
    np.testing.assert_allclose(ref_var, var, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)

    inv_std = (1 / np.sqrt(ref_var + 1e-5)).astype(dtype)
    y = norm.normalize_fast(x, ref_mean, inv_std, gamma, beta)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, norm.normalize_reference(x, ref_mean, inv_std, gamma, beta), **tol)
    for training in (True, False):
        fast = norm.backward_fast(g, x, ref_mean, inv_std, gamma, training)
        reference = norm.backward_reference(g, x, ref_mean, inv_std, gamma, training)
        # dx is a difference of terms of the size of g * gamma / sigma, and cancels nearly to 0 when there
        # are few values per channel: rounding is relative to the terms, not to the result.
        term = np.abs(g).max() * np.abs(gamma * inv_std).max()
        for a, b, size in zip(fast, reference, (term, None, None), strict=True):
            assert a.dtype == dtype and a.shape == b.shape
            size = size or np.abs(b).max()
            np.testing.assert_allclose(a / size, b / size, **tol)


def test_batchnorm_moments_stay_exact_when_the_mean_dwarfs_the_spread():
    x = (1e4 + np.random.default_rng(0).standard_normal((1000, 3, 1))).astype(np.float64)
    np.testing.assert_allclose(norm.moments_fast(x)[1], x.var(axis=(0, 2)), rtol=1e-9)


# pool, strides, pads, (batch, height, width, channels)
POOL_CASES = [
    ((2, 2), (2, 2), ((0, 0), (0, 0)), (8, 28, 28, 32)),
    ((2, 2), (2, 2), ((0, 0), (0, 0)), (8, 12, 12, 64)),
    ((2, 2), (2, 2), ((0, 0), (0, 0)), (3, 7, 5, 3)),
    ((2, 2), (2, 2), ((0, 1), (0, 1)), (3, 7, 5, 3)),
    ((3, 3), (2, 2), ((1, 1), (1, 1)), (2, 9, 8, 4)),
    ((2, 3), (1, 2), ((0, 1), (1, 1)), (2, 6, 7, 2)),
    ((3, 2), (3, 1), ((0, 0), (0, 0)), (1, 9, 5, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_first", [False, True])
@pytest.mark.parametrize("pool, strides, pads, shape", POOL_CASES, ids=[str(c[3]) + str(c[0]) for c in POOL_CASES])
def test_pooling_kernels_match_the_reference(pool, strides, pads, shape, channels_first, dtype):
    rng = np.random.default_rng(1)
    # Small integers: many ties, so the winner of each window is tested, not only the maximum.
    x = rng.integers(-3, 4, shape).astype(dtype)
    if channels_first:  # what a channels_first layer passes: a transposed view of (batch, c, h, w)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    out, arg = pooling.max_forward_fast(x, pool, strides, pads)
    ref_out, ref_arg = pooling.max_forward_reference(x, pool, strides, pads)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(arg, ref_arg)
    g = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_allclose(pooling.max_backward_fast(g, arg, shape, pool, strides, pads),
                               pooling.max_backward_reference(g, arg, shape, pool, strides, pads), **TOL[dtype])

    x = rng.standard_normal(shape).astype(dtype)
    scale = rng.uniform(0.1, 1, out.shape[1:3]).astype(dtype)
    np.testing.assert_allclose(pooling.average_forward_fast(x, pool, strides, pads, scale),
                               pooling.average_forward_reference(x, pool, strides, pads, scale), **TOL[dtype])
    np.testing.assert_allclose(pooling.average_backward_fast(g, shape, pool, strides, pads, scale),
                               pooling.average_backward_reference(g, shape, pool, strides, pads, scale),
                               **TOL[dtype])


def test_max_pooling_propagates_nan_in_both_forms():
    x = np.zeros((1, 4, 4, 2))
    x[0, 1, 0, 0] = np.nan
    x[0, 3, 3, 1] = np.nan
    for forward in (pooling.max_forward_fast, pooling.max_forward_reference):
        out, _ = forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
        assert np.isnan(out[0, 0, 0, 0]) and np.isnan(out[0, 1, 1, 1])
        assert np.isfinite(out).sum() == out.size - 2


def test_max_pooling_gives_the_first_nan_of_a_window_its_gradient_in_both_forms():
    x = np.zeros((1, 2, 2, 1))
    x[0, 0, 1, 0] = x[0, 1, 1, 0] = np.nan
    for forward in (pooling.max_forward_fast, pooling.max_forward_reference):
        assert forward(x, (2, 2), (2, 2), ((0, 0), (0, 0)))[1].item() == 1
