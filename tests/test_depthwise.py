"""DepthwiseConv2D and SeparableConv2D: as grouped and 1x1 Conv2D layers, weight decay names, fans, a small
model, bad arguments (the contract is in tests/test_layers.py, PyTorch in tests/test_conv_torch_b.py)."""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, ShapeError
from barenet.layers import Cache, Conv2D, DepthwiseConv2D, Layer, SeparableConv2D


def test_depthwise_is_conv2d_with_one_group_per_channel():
    """Output channel ``c * multiplier + m`` of the depthwise layer is filter ``c * multiplier + m`` of a
    Conv2D with ``groups=channels``, whose kernel ``(kh, kw, 1, channels * multiplier)`` is the depthwise
    kernel reshaped."""
    depthwise = DepthwiseConv2D(3, strides=(2, 1), padding=((1, 0), (2, 1)), depth_multiplier=2, activation="relu")
    depthwise.build((7, 6, 3), np.random.default_rng(0), "float64")
    depthwise.params["bias"][...] = np.random.default_rng(1).standard_normal(6)
    grouped = Conv2D(6, 3, strides=(2, 1), padding=((1, 0), (2, 1)), groups=3, activation="relu")
    grouped.build((7, 6, 3), np.random.default_rng(0), "float64")
    grouped.params["kernel"][...] = depthwise.params["depthwise_kernel"].reshape(3, 3, 1, 6)
    grouped.params["bias"][...] = depthwise.params["bias"]
    x = np.random.default_rng(2).standard_normal((2, 7, 6, 3))
    g = np.random.default_rng(3).standard_normal((2, 3, 7, 6))
    results = []
    for layer in (depthwise, grouped):
        cache = Cache()
        results.append((layer.forward(x, training=True, cache=cache), layer.backward(g, cache),
                        layer.grads["depthwise_kernel" if layer is depthwise else "kernel"].reshape(3, 3, 1, 6)))
    for a, b in zip(*results, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_separable_is_depthwise_then_a_1x1_convolution():
    separable = SeparableConv2D(4, 3, padding="same", depth_multiplier=2, activation="tanh")
    separable.build((5, 6, 3), np.random.default_rng(0), "float64")
    separable.params["bias"][...] = np.random.default_rng(1).standard_normal(4)
    depthwise = DepthwiseConv2D(3, padding="same", depth_multiplier=2, use_bias=False)
    depthwise.build((5, 6, 3), np.random.default_rng(0), "float64")
    depthwise.params["depthwise_kernel"][...] = separable.params["depthwise_kernel"]
    pointwise = Conv2D(4, 1, activation="tanh")
    pointwise.build((5, 6, 6), np.random.default_rng(0), "float64")
    pointwise.params["kernel"][...] = separable.params["pointwise_kernel"]
    pointwise.params["bias"][...] = separable.params["bias"]
    x = np.random.default_rng(2).standard_normal((3, 5, 6, 3))
    np.testing.assert_allclose(separable.forward(x), pointwise.forward(depthwise.forward(x)), rtol=1e-12)


def test_both_kernels_are_weights_that_decay_and_the_bias_is_not():
    assert Layer.decays("depthwise_kernel") and Layer.decays("layers.0.pointwise_kernel")
    assert not Layer.decays("layers.0.bias")
    model = bn.Sequential([SeparableConv2D(2, 3, l2=0.1, input_shape=(5, 5, 2))], dtype="float64")
    model.build()
    layer = model.layers[0]
    expected = 0.1 * sum(float(np.sum(layer.params[k] ** 2)) for k in ("depthwise_kernel", "pointwise_kernel"))
    assert model._penalty(False) == pytest.approx(expected)


def test_depthwise_fans_are_the_window_and_the_window_times_the_multiplier():
    layer = DepthwiseConv2D(3, depth_multiplier=4, depthwise_initializer="he_uniform")
    layer.build((9, 9, 64), np.random.default_rng(0), "float64")
    kernel = layer.params["depthwise_kernel"]
    limit = np.sqrt(6 / 9)  # he_uniform: sqrt(6 / fan_in), fan_in = 3 * 3
    assert kernel.shape == (3, 3, 64, 4) and 0.95 * limit < np.abs(kernel).max() <= limit


def test_a_small_mobilenet_block_trains_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 8, 8, 3)).astype(np.float32)
    y = (x[:, :4].mean(axis=(1, 2, 3)) > x[:, 4:].mean(axis=(1, 2, 3))).astype(np.float32)
    L = bn.layers
    model = bn.Sequential([
        L.Conv2D(8, 1, activation="relu", input_shape=(8, 8, 3)),
        L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu"),
        L.SeparableConv2D(6, 3, padding="same", activation="relu"),
        L.GlobalAveragePooling2D(), L.Dense(1, activation="sigmoid"),
    ], seed=0)
    model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.AdamW(1e-2, weight_decay=1e-3))
    history = model.fit(x, y, epochs=4, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    bn.save(model, tmp_path / "m.barenet")
    np.testing.assert_array_equal(bn.load(tmp_path / "m.barenet").predict(x), model.predict(x))


@pytest.mark.parametrize("make, message", [
    (lambda: DepthwiseConv2D(3, depth_multiplier=0), "DepthwiseConv2D depth_multiplier must be a positive integer, "
                                                     "got 0"),
    (lambda: DepthwiseConv2D((3, 0)), r"DepthwiseConv2D kernel_size must be a positive integer or a pair of them"),
    (lambda: DepthwiseConv2D(3, padding="full"), "DepthwiseConv2D padding must be 'valid', 'same', an int >= 0"),
    (lambda: DepthwiseConv2D(3, l2=-1.0), "DepthwiseConv2D l2 must be >= 0, got -1.0"),
    (lambda: SeparableConv2D(0, 3), "SeparableConv2D filters must be a positive integer, got 0"),
    (lambda: SeparableConv2D(4, 3, strides=(1, 0)), "SeparableConv2D strides must be a positive integer"),
    (lambda: SeparableConv2D(4, 3, data_format="NCHW"), "SeparableConv2D data_format must be one of"),
])
def test_bad_arguments_say_what_was_expected(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_shape_errors_name_the_layer():
    with pytest.raises(ShapeError, match=r"DepthwiseConv2D\(\(3, 3\)\) expects images \(height, width, channels\)"):
        DepthwiseConv2D(3).build((8, 8), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"SeparableConv2D\(4, \(5, 5\)\) cannot slide a \(5, 5\) kernel .* over 4x4 "
                                         r"images"):
        SeparableConv2D(4, 5).build((4, 4, 2), np.random.default_rng(0))
