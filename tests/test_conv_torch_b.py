"""Grouped, padded, 1-d, depthwise and separable convolutions and padded pooling against PyTorch (float64).

Every torch function here takes the input and the parameters in barenet's layout and permutes them itself,
so that autograd hands back the input and parameter gradients in barenet's layout too:

* images: barenet ``(batch, height, width, channels)`` -> torch ``(batch, channels, height, width)`` with
  ``permute(0, 3, 1, 2)``; channels-first layers take torch's layout directly;
* sequences: barenet ``(batch, steps, channels)`` -> torch ``(batch, channels, steps)`` with ``permute(0, 2, 1)``;
* ``Conv2D`` kernels ``(kh, kw, in / groups, filters)`` -> ``(filters, in / groups, kh, kw)`` with
  ``permute(3, 2, 0, 1)``; ``Conv1D`` kernels ``(k, in / groups, filters)`` -> ``(filters, in / groups, k)``
  with ``permute(2, 1, 0)``;
* a depthwise kernel ``(kh, kw, channels, multiplier)`` is torch's ``conv2d(groups=channels)`` weight
  ``(channels * multiplier, 1, kh, kw)``: output channel ``c * multiplier + m`` reads input channel ``c``;
  a separable convolution is that, then ``conv2d`` with the pointwise kernel ``(1, 1, channels * multiplier,
  filters)`` permuted like a ``Conv2D`` kernel;
* torch pads symmetrically: asymmetric amounts, and barenet's ``"same"``, go through an explicit ``F.pad``
  (with ``-inf`` before a max pool).

Each case compares the forward pass, the input gradient and every parameter gradient, for the same random
upstream gradient, to 1e-10. ``python tests/test_conv_torch_b.py`` prints the largest difference per layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from barenet.layers import (
    AveragePooling2D,
    Cache,
    Conv1D,
    Conv2D,
    DepthwiseConv2D,
    Layer,
    MaxPooling2D,
    SeparableConv2D,
)

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TOLERANCE = 1e-10


def to_first(t):
    return t.permute(0, 3, 1, 2)


def to_last(t):
    return t.permute(0, 2, 3, 1)


def torch_pads(layer: Layer) -> tuple[int, int, int, int]:
    """The layer's ``((top, bottom), (left, right))`` in ``F.pad``'s order for the last two axes."""
    (top, bottom), (left, right) = layer._pads
    return left, right, top, bottom


def images(layer: Layer, fn: Callable) -> Callable:
    """Run ``fn`` on NCHW tensors, transposing at the edges for a channels-last layer."""
    if layer.data_format == "channels_first":
        return fn
    return lambda x: to_last(fn(to_first(x)))


def conv2d(layer: Conv2D, x, p):
    def run(t):
        return TF.conv2d(TF.pad(t, torch_pads(layer)), p["kernel"].permute(3, 2, 0, 1), p.get("bias"),
                         stride=layer.strides, dilation=layer.dilation_rate, groups=layer.groups)
    return images(layer, run)(x)


def conv2d_torch_padding(layer: Conv2D, x, p):
    """PyTorch's own symmetric ``padding=(ph, pw)``, for the layers given the same pair."""
    def run(t):
        return TF.conv2d(t, p["kernel"].permute(3, 2, 0, 1), p.get("bias"), stride=layer.strides,
                         padding=layer.padding, dilation=layer.dilation_rate, groups=layer.groups)
    return images(layer, run)(x)


def conv1d(layer: Conv1D, x, p):
    t = x if layer.data_format == "channels_first" else x.permute(0, 2, 1)
    y = TF.conv1d(TF.pad(t, layer._pads), p["kernel"].permute(2, 1, 0), p.get("bias"), stride=layer.strides,
                  dilation=layer.dilation_rate, groups=layer.groups)
    return y if layer.data_format == "channels_first" else y.permute(0, 2, 1)


def conv1d_torch_padding(layer: Conv1D, x, p):
    """PyTorch's own ``padding=p`` on both sides."""
    y = TF.conv1d(x.permute(0, 2, 1), p["kernel"].permute(2, 1, 0), p.get("bias"), stride=layer.strides,
                  padding=layer.padding[0], dilation=layer.dilation_rate, groups=layer.groups)
    return y.permute(0, 2, 1)


def depthwise_weight(kernel):
    """``(kh, kw, channels, multiplier)`` -> torch's ``(channels * multiplier, 1, kh, kw)``."""
    kh, kw, c, dm = kernel.shape
    return kernel.permute(2, 3, 0, 1).reshape(c * dm, 1, kh, kw)


def depthwise(layer: DepthwiseConv2D, x, p):
    def run(t):
        return TF.conv2d(TF.pad(t, torch_pads(layer)), depthwise_weight(p["depthwise_kernel"]), p.get("bias"),
                         stride=layer.strides, dilation=layer.dilation_rate, groups=t.shape[1])
    return images(layer, run)(x)


def separable(layer: SeparableConv2D, x, p):
    def run(t):
        d = TF.conv2d(TF.pad(t, torch_pads(layer)), depthwise_weight(p["depthwise_kernel"]), stride=layer.strides,
                      dilation=layer.dilation_rate, groups=t.shape[1])
        return TF.conv2d(d, p["pointwise_kernel"].permute(3, 2, 0, 1), p.get("bias"))
    return images(layer, run)(x)


def max_pool(layer: MaxPooling2D, x, p):
    def run(t):
        return TF.max_pool2d(TF.pad(t, torch_pads(layer), value=-np.inf), layer.pool_size, layer.strides)
    return images(layer, run)(x)


def max_pool_torch_padding(layer: MaxPooling2D, x, p):
    return images(layer, lambda t: TF.max_pool2d(t, layer.pool_size, layer.strides, padding=layer.padding))(x)


def avg_pool_torch_padding(layer: AveragePooling2D, x, p):
    return images(layer, lambda t: TF.avg_pool2d(t, layer.pool_size, layer.strides, padding=layer.padding,
                                                 count_include_pad=layer.count_include_pad))(x)


def avg_pool_counted(layer: AveragePooling2D, x, p):
    """Padding counted in the averages: zeros added first, then windows that all have the full size."""
    return images(layer, lambda t: TF.avg_pool2d(TF.pad(t, torch_pads(layer)), layer.pool_size, layer.strides))(x)


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], Layer]
    input_shape: tuple[int, ...]  # without the batch axis, in the layer's layout
    torch_fn: Callable  # (layer, x, params) -> y, all in barenet's layout
    batch: int = 2


CASES = [
    Case("conv2d-groups", lambda: Conv2D(6, 3, groups=2), (7, 6, 4), conv2d),
    Case("conv2d-groups-strided-dilated-same", lambda: Conv2D(6, (3, 2), strides=(2, 1), dilation_rate=(1, 2),
                                                              padding="same", groups=3), (9, 8, 3), conv2d),
    Case("conv2d-groups-asymmetric", lambda: Conv2D(8, 3, strides=2, padding=((0, 2), (1, 0)), groups=4),
         (7, 8, 4), conv2d),
    Case("conv2d-groups-channels-first", lambda: Conv2D(4, (2, 3), groups=2, padding=((2, 1), (0, 1)),
                                                        data_format="channels_first"), (6, 5, 7), conv2d),
    Case("conv2d-groups-pointwise-no-bias", lambda: Conv2D(4, 1, groups=4, use_bias=False), (3, 3, 8), conv2d),
    Case("conv2d-asymmetric", lambda: Conv2D(3, (2, 3), padding=((1, 0), (3, 1)), dilation_rate=2), (8, 7, 2),
         conv2d),
    Case("conv2d-torch-padding-pair", lambda: Conv2D(3, 3, padding=(1, 2), strides=(1, 2)), (6, 7, 2),
         conv2d_torch_padding),
    Case("conv1d", lambda: Conv1D(4, 3), (9, 3), conv1d),
    Case("conv1d-causal-dilated", lambda: Conv1D(3, 3, padding="causal", dilation_rate=2), (10, 2), conv1d),
    Case("conv1d-causal-strided", lambda: Conv1D(3, 2, strides=2, padding="causal"), (9, 2), conv1d),
    Case("conv1d-same-strided-groups", lambda: Conv1D(6, 4, strides=3, padding="same", groups=3), (11, 6), conv1d),
    Case("conv1d-asymmetric-channels-first", lambda: Conv1D(4, 3, padding=(0, 3), groups=2, use_bias=False,
                                                            data_format="channels_first"), (4, 8), conv1d),
    Case("conv1d-torch-padding", lambda: Conv1D(5, 5, padding=2, dilation_rate=2, strides=2), (12, 3),
         conv1d_torch_padding),
    Case("depthwise", lambda: DepthwiseConv2D(3), (7, 6, 4), depthwise),
    Case("depthwise-multiplier-strided-same", lambda: DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=3),
         (9, 8, 2), depthwise),
    Case("depthwise-dilated-asymmetric", lambda: DepthwiseConv2D((2, 3), dilation_rate=(2, 1), padding=((1, 0), (2, 1)),
                                                                 depth_multiplier=2), (6, 7, 3), depthwise),
    Case("depthwise-channels-first-no-bias", lambda: DepthwiseConv2D(3, strides=(1, 2), padding=1, use_bias=False,
                                                                     data_format="channels_first"), (5, 6, 7),
         depthwise),
    Case("separable", lambda: SeparableConv2D(5, 3), (7, 6, 4), separable),
    Case("separable-multiplier-strided-same", lambda: SeparableConv2D(4, (3, 2), strides=2, padding="same",
                                                                      depth_multiplier=2), (9, 8, 3), separable),
    Case("separable-dilated-asymmetric-first", lambda: SeparableConv2D(3, 2, dilation_rate=2, padding=((0, 1), 1),
                                                                       data_format="channels_first"), (4, 6, 5),
         separable),
    Case("maxpool-padding", lambda: MaxPooling2D(3, strides=2, padding=1), (7, 8, 3), max_pool_torch_padding),
    Case("maxpool-padding-pair", lambda: MaxPooling2D((3, 2), strides=(1, 2), padding=(1, 1)), (6, 7, 2),
         max_pool_torch_padding),
    Case("maxpool-asymmetric-first", lambda: MaxPooling2D(3, strides=2, padding=((2, 0), (1, 2)),
                                                          data_format="channels_first"), (2, 7, 6), max_pool),
    Case("avgpool-padding", lambda: AveragePooling2D(3, strides=2, padding=1), (7, 8, 3), avg_pool_torch_padding),
    Case("avgpool-padding-counted", lambda: AveragePooling2D((3, 2), strides=(2, 1), padding=(1, 1),
                                                             count_include_pad=True), (7, 6, 3),
         avg_pool_torch_padding),
    Case("avgpool-asymmetric-counted", lambda: AveragePooling2D(3, strides=1, padding=((2, 0), (0, 1)),
                                                                count_include_pad=True), (5, 6, 2), avg_pool_counted),
]


def differences(case: Case) -> dict[str, float]:
    """Largest absolute difference from torch of the output, the input gradient and each parameter gradient."""
    rng = np.random.default_rng(0)
    layer = case.make()
    layer.build(case.input_shape, rng, "float64")
    for value in layer.params.values():
        value[...] = rng.standard_normal(value.shape)
    x = rng.standard_normal((case.batch, *case.input_shape))
    cache = Cache()
    y = layer.forward(x, training=True, cache=cache)
    g = rng.standard_normal(y.shape)
    dx = layer.backward(g, cache)

    xt = torch.tensor(x, requires_grad=True)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    yt = case.torch_fn(layer, xt, params)
    yt.backward(torch.from_numpy(g))
    assert yt.shape == y.shape
    found = {"output": np.max(np.abs(y - yt.detach().numpy())), "input": np.max(np.abs(dx - xt.grad.numpy()))}
    for name, value in params.items():
        found[name] = np.max(np.abs(layer.grads[name] - value.grad.numpy()))
    return {k: float(v) for k, v in found.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_forward_and_every_gradient_match_torch(case):
    found = differences(case)
    assert max(found.values()) <= TOLERANCE, found


def largest_differences() -> dict[str, float]:
    """Largest difference from torch per layer class over CASES."""
    table: dict[str, float] = {}
    for case in CASES:
        kind = type(case.make()).__name__
        table[kind] = max(table.get(kind, 0.0), *differences(case).values())
    return table


if __name__ == "__main__":
    for kind, value in largest_differences().items():
        print(f"{kind:20s} {value:.1e}")
