"""LayerNormalization, the newer activations, 1-D and global pooling, UpSampling2D and ZeroPadding2D against
PyTorch in float64: the output, every parameter gradient and the input gradient, each to 1e-10.

Layouts: barenet's tensors are channels-last, ``(batch, steps, features)`` and ``(batch, height, width,
channels)``; the PyTorch side permutes them to ``(N, C, L)`` and ``(N, C, H, W)`` and back. LayerNormalization's
``gamma``/``beta`` are ``torch.nn.LayerNorm``'s ``weight``/``bias`` over the normalized axes, moved last.
Inputs are random normals scaled by 4, so that ReLU6 and the hard activations see both sides of their kinks
(and Softplus stays below PyTorch's linear threshold of 20). ``python tests/test_layers_torch_a.py`` prints the
largest difference per case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from barenet import layers as L

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOLERANCE = 1e-10


def _nchw(x):
    return x.permute(0, 3, 1, 2)


def _nhwc(x):
    return x.permute(0, 2, 3, 1)


def _ncl(x):
    return x.transpose(1, 2)


def _layer_norm(axes: tuple[int, ...], epsilon: float, center: bool = True, scale: bool = True):
    """``torch.nn.LayerNorm`` over ``axes`` of a barenet tensor (moved last, in order), with barenet's weights."""
    def run(x, layer):
        rest = [a for a in range(x.ndim) if a not in axes]
        perm = rest + list(axes)
        norm = torch.nn.LayerNorm([x.shape[a] for a in axes], eps=epsilon, elementwise_affine=scale,
                                  bias=center, dtype=torch.float64)
        params = {}
        with torch.no_grad():
            if scale:
                norm.weight.copy_(torch.from_numpy(layer.params["gamma"]))
                params["gamma"] = norm.weight
            if center:
                norm.bias.copy_(torch.from_numpy(layer.params["beta"]))
                params["beta"] = norm.bias
        return norm(x.permute(*perm)).permute(*np.argsort(perm).tolist()), params
    return run


def _plain(fn: Callable[[Any], Any]):
    return lambda x, layer: (fn(x), {})


def _padded_max_pool1d(pads, kernel, stride):
    return _plain(lambda x: _ncl(F.max_pool1d(F.pad(_ncl(x), pads, value=-np.inf), kernel, stride)))


def _padded_avg_pool1d(pads, kernel, stride):
    """Window sums of the zero-padded sequence divided by the steps inside each window (padding not counted)."""
    def run(x):
        total = F.avg_pool1d(F.pad(_ncl(x), pads), kernel, stride) * kernel
        count = F.avg_pool1d(F.pad(torch.ones_like(_ncl(x)[:1, :1]), pads), kernel, stride) * kernel
        return _ncl(total / count)
    return _plain(run)


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], L.Layer]
    input_shape: tuple[int, ...]
    torch: Callable[[Any, L.Layer], tuple[Any, dict[str, Any]]]


CASES = [
    Case("gelu", L.GELU, (6, 5), _plain(lambda x: F.gelu(x))),
    Case("gelu-tanh", lambda: L.GELU(approximate=True), (6, 5), _plain(lambda x: F.gelu(x, approximate="tanh"))),
    Case("silu", L.SiLU, (6, 5), _plain(F.silu)),
    Case("softplus", L.Softplus, (6, 5), _plain(F.softplus)),
    Case("relu6", L.ReLU6, (6, 5), _plain(F.relu6)),
    Case("hard_sigmoid", L.HardSigmoid, (6, 5), _plain(lambda x: F.relu6(x + 3) / 6)),  # see the test below
    Case("hard_swish", L.HardSwish, (6, 5), _plain(F.hardswish)),
    Case("mish", L.Mish, (6, 5), _plain(F.mish)),
    Case("layernorm", lambda: L.LayerNormalization(), (4, 6), _layer_norm((2,), 1e-3)),
    Case("layernorm-image", lambda: L.LayerNormalization(axis=[1, 2, 3], epsilon=1e-5), (3, 4, 2),
         _layer_norm((1, 2, 3), 1e-5)),
    Case("layernorm-axes-1-3-no-center", lambda: L.LayerNormalization(axis=[1, 3], center=False), (3, 4, 5),
         _layer_norm((1, 3), 1e-3, center=False)),
    Case("global-maxpool2d", L.GlobalMaxPooling2D, (5, 4, 3),
         _plain(lambda x: F.adaptive_max_pool2d(_nchw(x), 1).flatten(1))),
    Case("global-maxpool2d-channels-first", lambda: L.GlobalMaxPooling2D(data_format="channels_first"), (3, 5, 4),
         _plain(lambda x: F.adaptive_max_pool2d(x, 1).flatten(1))),
    Case("global-avgpool1d", L.GlobalAveragePooling1D, (7, 3),
         _plain(lambda x: F.adaptive_avg_pool1d(_ncl(x), 1).flatten(1))),
    Case("global-maxpool1d", L.GlobalMaxPooling1D, (7, 3),
         _plain(lambda x: F.adaptive_max_pool1d(_ncl(x), 1).flatten(1))),
    Case("maxpool1d", L.MaxPooling1D, (7, 3), _plain(lambda x: _ncl(F.max_pool1d(_ncl(x), 2)))),
    Case("maxpool1d-same-asymmetric", lambda: L.MaxPooling1D(3, strides=2, padding="same"), (8, 3),
         _padded_max_pool1d((0, 1), 3, 2)),
    Case("maxpool1d-channels-first", lambda: L.MaxPooling1D(3, strides=1, data_format="channels_first"), (3, 7),
         _plain(lambda x: F.max_pool1d(x, 3, 1))),
    Case("avgpool1d", lambda: L.AveragePooling1D(3), (7, 3), _plain(lambda x: _ncl(F.avg_pool1d(_ncl(x), 3)))),
    Case("avgpool1d-same", lambda: L.AveragePooling1D(3, strides=2, padding="same"), (7, 3),
         _plain(lambda x: _ncl(F.avg_pool1d(_ncl(x), 3, 2, padding=1, count_include_pad=False)))),
    Case("avgpool1d-same-asymmetric", lambda: L.AveragePooling1D(4, strides=3, padding="same"), (8, 2),
         _padded_avg_pool1d((1, 2), 4, 3)),
    Case("upsampling-nearest", lambda: L.UpSampling2D((2, 3)), (3, 4, 2),
         _plain(lambda x: _nhwc(F.interpolate(_nchw(x), scale_factor=(2, 3), mode="nearest")))),
    Case("upsampling-bilinear", lambda: L.UpSampling2D((2, 3), interpolation="bilinear"), (3, 4, 2),
         _plain(lambda x: _nhwc(F.interpolate(_nchw(x), scale_factor=(2, 3), mode="bilinear", align_corners=False)))),
    Case("upsampling-bilinear-channels-first",
         lambda: L.UpSampling2D(4, interpolation="bilinear", data_format="channels_first"), (2, 3, 5),
         _plain(lambda x: F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False))),
    Case("zeropadding", lambda: L.ZeroPadding2D(2), (3, 4, 2), _plain(lambda x: _nhwc(F.pad(_nchw(x), (2, 2, 2, 2))))),
    Case("zeropadding-asymmetric", lambda: L.ZeroPadding2D(((0, 2), (3, 1))), (3, 4, 2),
         _plain(lambda x: _nhwc(F.pad(_nchw(x), (3, 1, 0, 2))))),
    Case("zeropadding-channels-first", lambda: L.ZeroPadding2D((1, 2), data_format="channels_first"), (2, 3, 4),
         _plain(lambda x: F.pad(x, (2, 2, 1, 1)))),
]


def largest_difference(case: Case, batch: int = 3) -> dict[str, float]:
    """Largest |barenet - PyTorch| of the output, the input gradient and each parameter gradient."""
    rng = np.random.default_rng(0)
    layer = case.make()
    layer.build(case.input_shape, np.random.default_rng(1), "float64")
    for name, value in layer.params.items():  # away from the initial ones and zeros
        value[...] = rng.uniform(0.5, 1.5, value.shape) if name != "beta" else rng.standard_normal(value.shape)
    x = rng.standard_normal((batch, *case.input_shape)) * 4
    cache = L.Cache()
    y = layer.forward(x, training=True, cache=cache)
    upstream = rng.standard_normal(y.shape)
    dx = layer.backward(upstream, cache)

    xt = torch.from_numpy(x).requires_grad_(True)
    yt, params = case.torch(xt, layer)
    yt.backward(torch.from_numpy(upstream))
    assert tuple(yt.shape) == y.shape
    differences = {"output": np.max(np.abs(y - yt.detach().numpy())),
                   "input gradient": np.max(np.abs(dx - xt.grad.numpy()))}
    assert set(params) == set(layer.params)
    for name, tensor in params.items():
        differences[f"{name} gradient"] = np.max(np.abs(layer.grads[name] - tensor.grad.numpy()))
    return {k: float(v) for k, v in differences.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_outputs_and_gradients_match_torch(case):
    differences = largest_difference(case)
    print(f"\n{case.id}: " + ", ".join(f"{k} {v:.1e}" for k, v in differences.items()))
    assert max(differences.values()) <= TOLERANCE, differences


def test_hard_sigmoid_is_torch_hardsigmoid():
    """PyTorch's ``hardsigmoid`` is relu6(x + 3) / 6 in its forward pass, but its float64 backward multiplies by
    1/6 rounded to float32 (a relative error of 3e-8), so the case above differentiates relu6(x + 3) / 6."""
    x = np.random.default_rng(0).standard_normal(200) * 4
    layer = L.HardSigmoid()
    layer.build((200,), np.random.default_rng(0), "float64")
    cache = L.Cache()
    y = layer.forward(x[None], cache=cache)[0]
    np.testing.assert_allclose(y, F.hardsigmoid(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-15)
    xt = torch.from_numpy(x).requires_grad_(True)
    F.hardsigmoid(xt).sum().backward()
    np.testing.assert_allclose(layer.backward(np.ones((1, 200)), cache)[0], xt.grad.numpy(), rtol=5e-8)


if __name__ == "__main__":
    for case in CASES:
        differences = largest_difference(case)
        print(f"{case.id:36s} {max(differences.values()):.1e}  ({', '.join(differences)})")
