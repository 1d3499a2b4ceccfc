"""The depthwise convolution kernels: the compiled form and the chunked, threaded NumPy form against the NumPy
reference, on the shapes the layers hand them (channels-last arrays and the transposed views of channels-first
layers; one and several filters per channel; strides, dilation, per-side padding)."""

from __future__ import annotations

import numpy as np
import pytest

from barenet import threads
from barenet.kernels import NUMBA_ENABLED
from barenet.kernels import depthwise as dw

# Differences relative to the largest value of each result: a kernel gradient entry sums batch * oh * ow
# products, in another order in each form.
TOL = {np.float32: 1e-5, np.float64: 1e-13}

SHAPES = [  # (batch, height, width, channels), kernel, multiplier, strides, dilation, pads
    ((3, 8, 7, 5), (3, 3), 1, (1, 1), (1, 1), ((1, 1), (1, 1))),
    ((2, 9, 9, 4), (3, 3), 2, (2, 2), (1, 1), ((0, 1), (0, 1))),
    ((2, 7, 8, 3), (2, 3), 3, (1, 2), (2, 1), ((2, 0), (1, 3))),
    ((40, 6, 6, 16), (5, 5), 1, (1, 1), (1, 1), ((2, 2), (2, 2))),  # several chunks of the NumPy form
    ((1, 1, 4, 2), (1, 2), 1, (1, 1), (1, 1), ((0, 0), (0, 0))),
]


def _forms():
    yield "numpy", dw.forward_numpy, dw.backward_numpy
    if NUMBA_ENABLED:
        yield "compiled", dw.forward_fast, dw.backward_fast


@pytest.mark.parametrize("channels_first", [False, True], ids=["last", "first-view"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, kernel_size, dm, strides, dilation, pads", SHAPES, ids=str)
def test_forms_match_the_reference(shape, kernel_size, dm, strides, dilation, pads, dtype, channels_first):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    if channels_first:  # the non-contiguous channels-last view a channels-first layer passes
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    kernel = rng.standard_normal((*kernel_size, shape[3], dm)).astype(dtype)
    bias = rng.standard_normal(shape[3] * dm).astype(dtype)
    exact = [a.astype(np.float64) for a in (x, kernel, bias)]  # the float64 reference, on the same values
    y = dw.forward_reference(*exact, strides, dilation, pads)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx, dk = dw.backward_reference(g.astype(np.float64), *exact[:2], strides, dilation, pads)
    for name, forward, backward in _forms():
        with threads.engine():
            got = forward(x, kernel, bias, strides, dilation, pads)
            got_dx, got_dk = backward(g, x, kernel, strides, dilation, pads)
            no_dx, got_dk2 = backward(g, x, kernel, strides, dilation, pads, False)
        for a, b in ((got, y), (got_dx, dx), (got_dk, dk), (got_dk2, dk)):
            assert a.dtype == dtype and a.shape == b.shape, name
            scale = np.abs(b).max()
            np.testing.assert_allclose(a / scale, b / scale, rtol=0, atol=TOL[dtype], err_msg=name)
        assert no_dx is None


def test_reference_is_the_definition():
    """One output pixel by hand: the sum over the window of pixel times weight, per channel and filter."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 5, 5, 2))
    kernel = rng.standard_normal((3, 3, 2, 2))
    y = dw.forward_reference(x, kernel, None, (2, 2), (1, 1), ((1, 1), (1, 1)))
    assert y.shape == (1, 3, 3, 4)
    window = x[0, 1:4, 1:4]  # output (1, 1) reads rows and columns 1..3 (padding 1, stride 2)
    for c in range(2):
        for m in range(2):
            assert y[0, 1, 1, c * 2 + m] == pytest.approx(np.sum(window[:, :, c] * kernel[:, :, c, m]))
    assert y[0, 0, 0, 1] == pytest.approx(np.sum(x[0, :2, :2, 0] * kernel[1:, 1:, 0, 1]))
