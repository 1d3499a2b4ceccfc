"""BatchNormalization(axis=1) after a channels-first Conv2D against PyTorch's Conv2d + BatchNorm2d.

Float64, weights copied, skipped without PyTorch. Both take the batch statistics over (batch, height,
width) per channel. PyTorch's running variance uses the unbiased batch variance (divided by m - 1), and
barenet's the biased one (divided by m, as Keras); the test converts one into the other.
"""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.layers import BatchNormalization, Cache, Conv2D

torch = pytest.importorskip("torch")


def test_channels_first_cnn_with_batchnorm_axis_1_matches_torch_batchnorm2d():
    rng = np.random.default_rng(3)
    model = bn.Sequential([
        Conv2D(4, 3, padding="same", use_bias=False, data_format="channels_first", input_shape=(2, 7, 6)),
        BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5),
    ], seed=0, dtype="float64")
    model.build()
    conv, norm = model.layers
    norm.params["gamma"][...] = rng.uniform(0.5, 1.5, 4)
    norm.params["beta"][...] = rng.standard_normal(4)
    x = rng.standard_normal((5, 2, 7, 6)) * 3 + 1
    upstream = rng.standard_normal((5, 4, 7, 6))

    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1, bias=False),
                              torch.nn.BatchNorm2d(4, eps=1e-5, momentum=0.1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(conv.params["kernel"].transpose(3, 2, 0, 1).copy()))
        net[1].weight.copy_(torch.from_numpy(norm.params["gamma"]))
        net[1].bias.copy_(torch.from_numpy(norm.params["beta"]))

    cache = Cache(input_grad=True)  # a first layer skips its input gradient in training; ask for it here
    y = model.forward(x, training=True, cache=cache)
    dx = model.backward(upstream, cache)
    xt = torch.from_numpy(x).requires_grad_(True)
    yt = net(xt)
    yt.backward(torch.from_numpy(upstream))

    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(norm.grads["gamma"], net[1].weight.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(norm.grads["beta"], net[1].bias.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(conv.grads["kernel"], net[0].weight.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-12)

    m = 5 * 7 * 6
    np.testing.assert_allclose(norm.buffers["moving_mean"], net[1].running_mean.numpy(), rtol=1e-12)
    torch_biased = 0.9 + (net[1].running_var.numpy() - 0.9) * (m - 1) / m
    np.testing.assert_allclose(norm.buffers["moving_variance"], torch_biased, rtol=1e-12)

    net.eval()
    x2 = rng.standard_normal((3, 2, 7, 6))
    np.testing.assert_allclose(model.predict(x2), _torch_eval_with_biased_var(net, x2, m), rtol=1e-10, atol=1e-12)


def _torch_eval_with_biased_var(net, x: np.ndarray, m: int) -> np.ndarray:
    """PyTorch's inference output with its running variance converted to barenet's biased convention."""
    with torch.no_grad():
        net[1].running_var.copy_(0.9 + (net[1].running_var - 0.9) * (m - 1) / m)
        return net(torch.from_numpy(x)).numpy()
