"""Conv2D and the pooling layers against PyTorch with copied weights (float64, skipped without PyTorch).

PyTorch is channels-first: images go ``NHWC -> NCHW`` with ``transpose(0, 3, 1, 2)`` and kernels
``(kh, kw, in, out) -> (out, in, kh, kw)`` with ``transpose(3, 2, 0, 1)``. PyTorch pads symmetrically,
so barenet's ``"same"`` padding (extra pixel at the end) is reproduced with an explicit ``F.pad``.
"""

from __future__ import annotations

import numpy as np
import pytest

from barenet.layers import AveragePooling2D, Cache, Conv2D, MaxPooling2D

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def to_torch(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).requires_grad_(True)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def run_both(layer, x: np.ndarray, torch_fn, seed: int = 0):
    """Forward and backward (with the same random upstream gradient) in both; returns the pairs to compare."""
    c = Cache()
    y = layer.forward(x, training=True, cache=c)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    dx = layer.backward(g, c)
    xt = to_torch(x)
    yt = torch_fn(xt)
    yt.backward(torch.from_numpy(np.ascontiguousarray(g.transpose(0, 3, 1, 2))))
    return (y, to_numpy(yt)), (dx, to_numpy(xt.grad))


@pytest.mark.parametrize("kernel_size, strides, padding, dilation, shape", [
    ((3, 3), (1, 1), "valid", (1, 1), (2, 9, 9, 3)),
    ((3, 2), (2, 1), "same", (1, 1), (2, 7, 8, 2)),
    ((2, 2), (2, 2), "same", (1, 1), (1, 7, 5, 4)),
    ((3, 3), (2, 3), 1, (1, 1), (2, 8, 10, 3)),
    ((2, 3), (1, 2), (2, 1), (2, 2), (2, 9, 8, 2)),
    ((4, 2), (1, 1), "same", (2, 1), (1, 9, 6, 3)),
    ((1, 1), (1, 1), "valid", (1, 1), (3, 4, 4, 5)),
    ((5, 5), (1, 1), "valid", (1, 1), (2, 28, 28, 1)),
])
def test_conv2d_matches_torch(kernel_size, strides, padding, dilation, shape):
    rng = np.random.default_rng(1)
    layer = Conv2D(4, kernel_size, strides=strides, padding=padding, dilation_rate=dilation)
    layer.build(shape[1:], rng, "float64")
    layer.params["bias"][...] = rng.standard_normal(4)
    weight = torch.from_numpy(layer.params["kernel"].transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    bias = torch.from_numpy(layer.params["bias"].copy()).requires_grad_(True)
    (top, bottom), (left, right) = layer._pads

    def conv(xt):
        return TF.conv2d(TF.pad(xt, (left, right, top, bottom)), weight, bias, stride=strides, dilation=dilation)

    x = rng.standard_normal(shape)
    (y, yt), (dx, dxt) = run_both(layer, x, conv)
    np.testing.assert_allclose(y, yt, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(dx, dxt, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(layer.grads["kernel"], weight.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-5,
                               atol=1e-10)
    np.testing.assert_allclose(layer.grads["bias"], bias.grad.numpy(), rtol=1e-5, atol=1e-10)


POOLS = [  # pool_size, strides, padding, shape; "same" here always pads at the end only, like ceil_mode
    ((2, 2), None, "valid", (2, 8, 6, 3)),
    ((2, 2), None, "valid", (2, 11, 11, 4)),
    ((3, 3), (2, 2), "valid", (2, 9, 8, 2)),
    ((2, 3), (1, 2), "valid", (1, 6, 7, 2)),
    ((2, 2), None, "same", (2, 7, 5, 3)),
    ((3, 2), (3, 2), "same", (1, 8, 7, 2)),
]


@pytest.mark.parametrize("pool_size, strides, padding, shape", POOLS)
def test_max_pooling_matches_torch(pool_size, strides, padding, shape):
    layer = MaxPooling2D(pool_size, strides=strides, padding=padding)
    layer.build(shape[1:], np.random.default_rng(0), "float64")
    assert layer._pads[0][0] == layer._pads[1][0] == 0
    x = np.random.default_rng(2).standard_normal(shape)
    (y, yt), (dx, dxt) = run_both(layer, x, lambda t: TF.max_pool2d(t, pool_size, layer.strides,
                                                                     ceil_mode=padding == "same"))
    np.testing.assert_allclose(y, yt, rtol=1e-5)
    np.testing.assert_allclose(dx, dxt, rtol=1e-5)


def test_max_pooling_breaks_ties_like_torch():
    layer = MaxPooling2D(2)
    layer.build((6, 6, 2), np.random.default_rng(0), "float64")
    x = np.random.default_rng(3).integers(0, 2, (3, 6, 6, 2)).astype(np.float64)  # many ties
    (y, yt), (dx, dxt) = run_both(layer, x, lambda t: TF.max_pool2d(t, 2))
    np.testing.assert_array_equal(y, yt)
    np.testing.assert_allclose(dx, dxt, rtol=1e-12)


@pytest.mark.parametrize("pool_size, strides, padding, shape", POOLS)
def test_average_pooling_matches_torch(pool_size, strides, padding, shape):
    layer = AveragePooling2D(pool_size, strides=strides, padding=padding)
    layer.build(shape[1:], np.random.default_rng(0), "float64")
    x = np.random.default_rng(4).standard_normal(shape)
    (y, yt), (dx, dxt) = run_both(layer, x, lambda t: TF.avg_pool2d(t, pool_size, layer.strides,
                                                                     ceil_mode=padding == "same"))
    np.testing.assert_allclose(y, yt, rtol=1e-5)
    np.testing.assert_allclose(dx, dxt, rtol=1e-5)
