"""Convolution and pooling: helpers against direct loops, hand-worked values, errors, models, the example.

Gradient checks of every layer configuration live in the contract table of ``tests/test_layers.py``;
the checks here cover what the table does not: the im2col helpers, values worked out by hand or by
plain loops, tie-breaking, messages for bad arguments, whole CNN models (summary, config, save/load,
L2, fused losses) and the example script run as a subprocess.
"""

from __future__ import annotations

import gzip
import importlib
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import barenet as bn
import barenet.functional as F
from barenet.errors import ConfigError, ShapeError
from barenet.layers import AveragePooling2D, Cache, Conv2D, Dense, Flatten, GlobalAveragePooling2D, MaxPooling2D

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [  # kernel_size, strides, dilation
    ((3, 3), (1, 1), (1, 1)),
    ((3, 2), (2, 1), (1, 2)),
    ((2, 3), (3, 2), (2, 1)),
    ((1, 1), (2, 2), (1, 1)),
]


def direct_conv(x, kernel, bias, strides, dilation, pads):
    """Convolution by the definition, one output pixel at a time (the reference for Conv2D)."""
    (top, bottom), (left, right) = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, _, f = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation
    oh = (xp.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[2] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros((x.shape[0], oh, ow, f))
    for p in range(oh):
        for q in range(ow):
            for i in range(kh):
                for j in range(kw):
                    out[:, p, q, :] += xp[:, p * sh + i * dh, q * sw + j * dw, :] @ kernel[i, j]
    return out + bias


# ----------------------------------------------------------------- helpers
@pytest.mark.parametrize("channels", [1, 3, 9])
@pytest.mark.parametrize("kernel_size, strides, dilation", CONFIGS)
def test_im2col_rows_are_the_windows_and_col2im_is_its_adjoint(kernel_size, strides, dilation, channels):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 7, channels))
    cols = F.im2col(x, kernel_size, strides, dilation)
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
    oh, ow = F.conv_output_length(8, kh, sh, dh), F.conv_output_length(7, kw, sw, dw)
    assert cols.shape == (2 * oh * ow, kh * kw * channels)
    row = 0
    for n in range(2):
        for p in range(oh):
            for q in range(ow):
                window = x[n, p * sh:p * sh + (kh - 1) * dh + 1:dh, q * sw:q * sw + (kw - 1) * dw + 1:dw, :]
                np.testing.assert_array_equal(cols[row], window.reshape(-1))
                row += 1
    # <im2col(x), g> == <x, col2im(g)> for every g: col2im is the transpose of the linear map im2col.
    g = rng.standard_normal(cols.shape)
    taps = g.reshape(len(g), kh * kw, channels).transpose(1, 0, 2)
    back = F.col2im(taps, x.shape, kernel_size, strides, dilation)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(cols, g), np.vdot(x, back), rtol=1e-12)


def test_output_length_and_same_padding_by_hand():
    assert F.conv_output_length(28, 3) == 26
    assert F.conv_output_length(13, 3) == 11
    assert F.conv_output_length(11, 2, stride=2) == 5  # the last column is dropped
    assert F.conv_output_length(7, 3, stride=1, dilation=2) == 3
    assert F.conv_output_length(5, 3, padding=2) == 5
    assert F.same_padding(28, 3) == (1, 1)
    assert F.same_padding(5, 2, stride=2) == (0, 1)  # odd total: the extra pixel goes after
    assert F.same_padding(6, 4) == (1, 2)
    assert F.same_padding(7, 3, stride=3) == (1, 1)
    assert F.same_padding(4, 1, stride=2) == (0, 0)


def test_pad_spatial_returns_the_input_itself_when_nothing_is_added():
    x = np.ones((1, 2, 2, 1))
    assert F.pad_spatial(x, ((0, 0), (0, 0))) is x
    padded = F.pad_spatial(x, ((1, 0), (0, 2)), value=-1.0)
    assert padded.shape == (1, 3, 4, 1)
    assert padded[0, :, :, 0].tolist() == [[-1, -1, -1, -1], [1, 1, -1, -1], [1, 1, -1, -1]]


# ----------------------------------------------------------------- Conv2D values
@pytest.mark.parametrize("padding", ["valid", "same", 1, (2, 0)])
@pytest.mark.parametrize("kernel_size, strides, dilation", CONFIGS)
def test_conv2d_matches_the_definition(kernel_size, strides, dilation, padding):
    rng = np.random.default_rng(1)
    layer = Conv2D(4, kernel_size, strides=strides, padding=padding, dilation_rate=dilation)
    layer.build((9, 8, 3), rng, "float64")
    layer.params["bias"][...] = rng.standard_normal(4)
    x = rng.standard_normal((2, 9, 8, 3))
    expected = direct_conv(x, layer.params["kernel"], layer.params["bias"], layer.strides, layer.dilation_rate,
                           layer._pads)
    y = layer.forward(x)
    assert y.shape == (2, *layer.output_shape)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_conv2d_by_hand():
    # A 2x2 kernel of [[1, 2], [3, 4]] over the 3x3 image 1..9, bias 10.
    layer = Conv2D(1, 2, kernel_initializer="ones", bias_initializer="ones")
    layer.build((3, 3, 1), np.random.default_rng(0), "float64")
    layer.params["kernel"][:, :, 0, 0] = [[1, 2], [3, 4]]
    layer.params["bias"][:] = 10
    x = np.arange(1, 10, dtype=float).reshape(1, 3, 3, 1)
    # top-left window [[1, 2], [4, 5]] -> 1 + 4 + 12 + 20 = 37
    c = Cache()
    assert layer.forward(x, cache=c)[0, :, :, 0].tolist() == [[47, 57], [77, 87]]
    # Each input pixel collects the kernel entries it met: the corner 1 met only the weight 1.
    dx = layer.backward(np.ones((1, 2, 2, 1)), c)
    assert dx[0, :, :, 0].tolist() == [[1, 3, 2], [4, 10, 6], [3, 7, 4]]
    assert layer.grads["kernel"][:, :, 0, 0].tolist() == [[12, 16], [24, 28]]
    assert layer.grads["bias"].tolist() == [4]


def test_channels_first_gives_the_transposed_result_of_channels_last():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 7, 6, 3))
    last = Conv2D(5, (3, 2), strides=2, padding="same", activation="tanh")
    first = Conv2D(5, (3, 2), strides=2, padding="same", activation="tanh", data_format="channels_first")
    last.build((7, 6, 3), np.random.default_rng(0), "float64")
    first.build((3, 7, 6), np.random.default_rng(0), "float64")
    assert first.output_shape == (5, 4, 3) and last.output_shape == (4, 3, 5)
    c_last, c_first = Cache(), Cache()
    y_last, y_first = last.forward(x, cache=c_last), first.forward(x.transpose(0, 3, 1, 2), cache=c_first)
    np.testing.assert_allclose(y_first, y_last.transpose(0, 3, 1, 2))
    g = rng.standard_normal(y_last.shape)
    np.testing.assert_allclose(first.backward(g.transpose(0, 3, 1, 2), c_first),
                               last.backward(g, c_last).transpose(0, 3, 1, 2))
    np.testing.assert_allclose(first.grads["kernel"], last.grads["kernel"])


def test_conv2d_keeps_float32():
    layer = Conv2D(3, 3, padding="same", activation="relu")
    layer.build((5, 5, 2), np.random.default_rng(0), "float32")
    x = np.random.default_rng(1).random((2, 5, 5, 2), dtype=np.float32)
    c = Cache()
    y = layer.forward(x, training=True, cache=c)
    assert y.dtype == np.float32 and layer.backward(np.ones_like(y), c).dtype == np.float32


def test_conv2d_kernel_initializer_uses_receptive_field_fans():
    layer = Conv2D(64, 3, kernel_initializer="he_uniform")
    layer.build((13, 13, 32), np.random.default_rng(0), "float64")
    limit = np.sqrt(6 / (3 * 3 * 32))
    kernel = layer.params["kernel"]
    assert kernel.shape == (3, 3, 32, 64) and np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.95 * limit


@pytest.mark.parametrize("groups", [2, 3, 6])
def test_grouped_conv2d_is_one_convolution_per_block_of_channels(groups):
    layer = Conv2D(6, 3, strides=(1, 2), padding=((1, 0), (2, 1)), groups=groups)
    layer.build((5, 6, 6), np.random.default_rng(0), "float64")
    kernel, bias = layer.params["kernel"], np.random.default_rng(1).standard_normal(6)
    layer.params["bias"][...] = bias
    x = np.random.default_rng(2).standard_normal((2, 5, 6, 6))
    cg = fg = 6 // groups
    expected = np.concatenate([direct_conv(x[..., k * cg:(k + 1) * cg], kernel[..., k * fg:(k + 1) * fg],
                                           bias[k * fg:(k + 1) * fg], layer.strides, (1, 1), layer._pads)
                               for k in range(groups)], axis=-1)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)
    assert kernel.shape == (3, 3, 6 // groups, 6)


def test_conv2d_config_without_groups_is_one_group():
    """Files written before groups existed have no ``groups`` key; one-group layers still write none."""
    config = Conv2D(4, 3, padding=1).get_config()
    assert "groups" not in config
    assert Conv2D.from_config(config).groups == 1
    assert Conv2D.from_config({**config, "groups": 2}).get_config()["groups"] == 2


def test_grouped_conv2d_needs_input_channels_divisible_by_groups():
    with pytest.raises(ShapeError, match=r"Conv2D\(4, \(3, 3\), groups=2\) cuts its input channels into 2 groups, "
                                         r"but the input has 3 channels, not a multiple of 2"):
        Conv2D(4, 3, groups=2).build((6, 6, 3), np.random.default_rng(0))


# ----------------------------------------------------------------- pooling values
def test_max_pooling_by_hand_and_ties_go_to_the_first_maximum():
    layer = MaxPooling2D(2)
    layer.build((2, 4, 1), np.random.default_rng(0), "float64")
    x = np.array([[1, 5, 2, 2], [3, 5, 0, 1]], dtype=float).reshape(1, 2, 4, 1)
    c = Cache()
    assert layer.forward(x, cache=c)[0, :, :, 0].tolist() == [[5, 2]]
    dx = layer.backward(np.array([10.0, 20.0]).reshape(1, 1, 2, 1), c)
    # Both windows hold a tie (5, 5 and 2, 2); the first in row-major order takes the whole gradient.
    assert dx[0, :, :, 0].tolist() == [[0, 10, 20, 0], [0, 0, 0, 0]]


def test_max_pooling_same_padding_never_picks_the_padding():
    layer = MaxPooling2D(2, padding="same")
    layer.build((3, 3, 1), np.random.default_rng(0), "float64")
    x = -np.arange(1, 10, dtype=float).reshape(1, 3, 3, 1)  # all negative: zero padding would win
    assert layer.forward(x)[0, :, :, 0].tolist() == [[-1, -3], [-7, -9]]


def test_overlapping_max_pooling_adds_the_gradient_of_every_window_a_pixel_wins():
    layer = MaxPooling2D(2, strides=1)
    layer.build((3, 3, 1), np.random.default_rng(0), "float64")
    x = np.array([[0, 1, 0], [2, 9, 3], [0, 4, 0]], dtype=float).reshape(1, 3, 3, 1)
    c = Cache()
    assert layer.forward(x, cache=c)[0, :, :, 0].tolist() == [[9, 9], [9, 9]]
    dx = layer.backward(np.ones((1, 2, 2, 1)), c)
    assert dx[0, :, :, 0].tolist() == [[0, 0, 0], [0, 4, 0], [0, 0, 0]]


def test_average_pooling_same_padding_averages_only_pixels_inside():
    layer = AveragePooling2D(2, padding="same")
    layer.build((3, 3, 1), np.random.default_rng(0), "float64")
    x = np.arange(1, 10, dtype=float).reshape(1, 3, 3, 1)
    # windows {1,2,4,5}, {3,6}, {7,8}, {9}
    c = Cache()
    assert layer.forward(x, cache=c)[0, :, :, 0].tolist() == [[3, 4.5], [7.5, 9]]
    dx = layer.backward(np.ones((1, 2, 2, 1)), c)
    assert dx[0, :, :, 0].tolist() == [[0.25, 0.25, 0.5], [0.25, 0.25, 0.5], [0.5, 0.5, 1]]


def brute_force_window_counts(h, w, pool_size, strides, pads, out_hw):
    """Pixels of the image inside each pooling window, counted one window and one pixel at a time."""
    (top, _), (left, _) = pads
    counts = np.zeros(out_hw, dtype=np.int64)
    for p in range(out_hw[0]):
        for q in range(out_hw[1]):
            for i in range(pool_size[0]):
                for j in range(pool_size[1]):
                    r, c = p * strides[0] + i - top, q * strides[1] + j - left
                    counts[p, q] += 0 <= r < h and 0 <= c < w
    return counts


POOL_COUNT_CASES = [  # image (h, w), pool_size, strides, padding
    ((3, 3), 2, None, "same"),
    ((5, 5), 2, None, "valid"),
    ((7, 4), (3, 2), (2, 1), "same"),
    ((6, 9), (2, 4), (3, 3), "same"),
    ((6, 9), (2, 4), (3, 3), "valid"),
    ((5, 8), 4, 1, "same"),
    ((1, 6), (1, 5), (1, 2), "same"),
    ((9, 2), (9, 1), 1, "same"),
    ((4, 4), 5, 2, "same"),
    ((10, 7), (3, 7), (4, 5), "same"),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("image, pool_size, strides, padding", POOL_COUNT_CASES)
def test_average_pooling_divides_by_the_pixels_inside_each_window(image, pool_size, strides, padding, dtype):
    layer = AveragePooling2D(pool_size, strides=strides, padding=padding)
    layer.build((*image, 2), np.random.default_rng(0), dtype)
    counts = brute_force_window_counts(*image, layer.pool_size, layer.strides, layer._pads, layer.output_shape[:2])
    assert counts.min() >= 1
    assert layer._scale.dtype == np.dtype(dtype) and layer._scale.shape == counts.shape
    np.testing.assert_array_equal(layer._scale, 1 / counts.astype(dtype))
    x = np.random.default_rng(1).standard_normal((2, *image, 2)).astype(dtype)
    xp = F.pad_spatial(x, layer._pads)
    (sh, sw), (ph, pw) = layer.strides, layer.pool_size
    sums = np.array([[xp[:, p * sh:p * sh + ph, q * sw:q * sw + pw].sum(axis=(1, 2)) for q in range(counts.shape[1])]
                     for p in range(counts.shape[0])]).transpose(2, 0, 1, 3)
    np.testing.assert_allclose(layer.forward(x), sums / counts[None, :, :, None], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("image, pool_size, strides, padding", POOL_COUNT_CASES[2:6])
def test_average_pooling_gradients_match_finite_differences(image, pool_size, strides, padding):
    layer = AveragePooling2D(pool_size, strides=strides, padding=padding)
    layer.build((*image, 2), np.random.default_rng(0), "float64")
    result = bn.gradcheck(layer, np.random.default_rng(2).standard_normal((2, *image, 2)))
    assert result.max_error < 1e-6, result


def test_loading_a_file_with_a_huge_average_pool_builds_in_linear_time(tmp_path):
    # Counting the pixels of every window tap by tap took about 7 s to load this 200x200, stride-1 pool.
    model = bn.Sequential([AveragePooling2D(200, strides=1, input_shape=(400, 400, 1))])
    model.build()
    bn.save(model, tmp_path / "pool.barenet")
    start = time.process_time()  # CPU time: a busy machine does not stretch it
    loaded = bn.load(tmp_path / "pool.barenet")
    assert time.process_time() - start < 2.0
    assert loaded.layers[0]._scale.shape == (201, 201)
    assert loaded.layers[0]._scale[0, 0] == np.float32(1 / 40000)


def test_pooling_drops_rows_that_do_not_fill_a_window_and_passes_them_no_gradient():
    layer = AveragePooling2D(2)
    layer.build((5, 5, 2), np.random.default_rng(0), "float32")
    x = np.random.default_rng(0).random((3, 5, 5, 2), dtype=np.float32)
    c = Cache()
    y = layer.forward(x, cache=c)
    assert y.shape == (3, 2, 2, 2) and y.dtype == np.float32
    np.testing.assert_allclose(y, x[:, :4, :4].reshape(3, 2, 2, 2, 2, 2).mean(axis=(2, 4)), rtol=1e-6)
    dx = layer.backward(np.ones_like(y), c)
    assert dx.dtype == np.float32
    assert not dx[:, 4, :].any() and not dx[:, :, 4].any() and np.all(dx[:, :4, :4] == 0.25)


def test_global_average_pooling_by_hand():
    layer = GlobalAveragePooling2D(data_format="channels_first")
    layer.build((2, 2, 3), np.random.default_rng(0), "float64")
    x = np.arange(12, dtype=float).reshape(1, 2, 2, 3)  # channel 0 holds 0..5, channel 1 holds 6..11
    assert layer.output_shape == (2,)
    assert layer.forward(x).tolist() == [[2.5, 8.5]]
    assert np.all(layer.backward(np.array([[6.0, 12.0]]), Cache()) == np.array([1.0, 2.0])[:, None, None])


# ----------------------------------------------------------------- bad arguments and inputs
@pytest.mark.parametrize("make, message", [
    (lambda: Conv2D(0, 3), "Conv2D filters must be a positive integer, got 0"),
    (lambda: Conv2D(4, (3, 3, 3)), r"Conv2D kernel_size must be a positive integer or a pair of them, got \(3, 3, 3\)"),
    (lambda: Conv2D(4, 3, strides=0), "Conv2D strides must be a positive integer or a pair of them, got 0"),
    (lambda: Conv2D(4, 3, padding="full"), r"Conv2D padding must be 'valid', 'same', an int >= 0, a pair \(height, "
                                           r"width\) of them, or \(\(top, bottom\), \(left, right\)\), got 'full'"),
    (lambda: Conv2D(4, 3, padding=(1, -1)), r"Conv2D padding must be .* got \(1, -1\)"),
    (lambda: Conv2D(4, 3, l2=-0.1), "Conv2D l2 must be >= 0, got -0.1"),
    (lambda: Conv2D(4, 3, data_format="NHWC"),
     r"Conv2D data_format must be one of \('channels_last', 'channels_first'\), got 'NHWC'"),
    (lambda: MaxPooling2D(2, padding="full"), "MaxPooling2D padding must be 'valid', 'same', an int >= 0"),
    (lambda: MaxPooling2D(2, padding=((0, 2), 1)), r"MaxPooling2D pads \(\(0, 2\), 1\), as much as its \(2, 2\) window "
                                                   r"or more; padding must be smaller than the window on every side"),
    (lambda: Conv2D(4, 3, padding=((1, 2), (3,))), r"Conv2D padding must be .* got \(\(1, 2\), \(3,\)\)"),
    (lambda: Conv2D(6, 3, groups=4), "Conv2D cuts its 6 filters into 4 groups; filters must be a multiple of groups"),
    (lambda: Conv2D(6, 3, groups=0), "Conv2D groups must be a positive integer, got 0"),
    (lambda: AveragePooling2D(2, count_include_pad=1), "AveragePooling2D count_include_pad must be True or False"),
    (lambda: AveragePooling2D(pool_size=(2, 0)), r"AveragePooling2D pool_size must be .*got \(2, 0\)"),
    (lambda: GlobalAveragePooling2D(data_format="channels_middle"), "GlobalAveragePooling2D data_format"),
])
def test_bad_arguments_raise_config_errors_that_say_what_was_expected(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_shape_errors_name_the_layer_and_the_problem():
    with pytest.raises(ShapeError, match=r"Conv2D\(4, \(3, 3\)\) expects images \(height, width, channels\) per "
                                         r"sample, got sample shape \(784,\); add a Reshape layer first"):
        Conv2D(4, 3).build((784,), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"cannot slide a \(5, 5\) kernel .* over 4x4 images .* would be 0x0"):
        Conv2D(4, 5).build((4, 4, 1), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"cannot pool 1x5 images with \(2, 2\) windows"):
        MaxPooling2D(2).build((1, 5, 3), np.random.default_rng(0))
    layer = Conv2D(2, 3)
    layer.build((6, 6, 1), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"expected input of shape \(batch, 6, 6, 1\), got \(2, 6, 6, 3\)"):
        layer.forward(np.zeros((2, 6, 6, 3), dtype=np.float32))


# ----------------------------------------------------------------- models
def small_cnn(dtype="float64", l2=0.0, seed=0) -> bn.Sequential:
    return bn.Sequential([
        Conv2D(3, 3, padding="same", activation="relu", l2=l2, input_shape=(6, 6, 1)),
        MaxPooling2D(2),
        Conv2D(4, (2, 3), strides=(1, 2), activation="tanh", l2=l2),
        Flatten(),
        Dense(3, activation="softmax"),
    ], seed=seed, dtype=dtype)


def test_summary_shows_output_shapes_and_parameter_counts():
    model = bn.Sequential([
        Conv2D(32, 3, activation="relu", input_shape=(28, 28, 1)), MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"), MaxPooling2D(2), Flatten(),
        Dense(128, activation="relu"), Dense(10, activation="softmax"),
    ])
    model.build()
    text = model.summary(print_fn=None)
    for shape, params in [("(None, 26, 26, 32)", "320"), ("(None, 13, 13, 32)", "0"), ("(None, 11, 11, 64)", "18,496"),
                          ("(None, 5, 5, 64)", "0"), ("(None, 1600)", "0"), ("(None, 128)", "204,928"),
                          ("(None, 10)", "1,290")]:
        assert re.search(re.escape(shape) + r"\s+" + params + r"\n", text + "\n"), (shape, text)
    assert "Conv2D(32, (3, 3), activation='relu')" in text
    assert "Trainable params: 225,034" in text


def test_model_gradients_with_l2_and_fused_softmax_match_finite_differences():
    model = small_cnn(l2=0.01)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    x = np.random.default_rng(3).standard_normal((4, 6, 6, 1))
    y = np.array([0, 2, 1, 2])
    result = bn.gradcheck(model, x, y)
    assert result.max_error < 1e-6, result
    assert {"layers.0.kernel", "layers.2.kernel", "layers.4.kernel"} <= set(result.errors)


def test_conv2d_as_last_layer_uses_the_fused_sigmoid_path():
    last = bn.Sequential([Flatten(input_shape=(4, 4, 2)), Dense(32), bn.layers.Reshape((4, 4, 2)),
                          Conv2D(1, 4, activation="sigmoid")], dtype="float64", seed=1)
    last.compile(loss="binary_crossentropy", optimizer="sgd")
    last.build()
    assert last._fusable()
    x = np.random.default_rng(4).standard_normal((5, 4, 4, 2))
    y = np.array([0, 1, 1, 0, 1]).reshape(5, 1, 1, 1)
    assert bn.gradcheck(last, x, y).max_error < 1e-6


def test_config_round_trip_rebuilds_the_same_cnn():
    model = small_cnn(l2=0.001, seed=5)
    model.build()
    again = bn.Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    assert [repr(layer) for layer in again.layers] == [repr(layer) for layer in model.layers]
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same weights
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 1))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


def test_save_and_load_a_trained_cnn(tmp_path):
    model = small_cnn(dtype="float32", seed=2)
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((16, 6, 6, 1), dtype=np.float32)
    model.fit(x, rng.integers(0, 3, 16), epochs=2, batch_size=8, verbose=0)
    bn.save(model, tmp_path / "cnn.barenet")
    loaded = bn.load(tmp_path / "cnn.barenet")
    assert [type(layer).__name__ for layer in loaded.layers] == ["Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense"]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_cnn_learns_to_tell_vertical_from_horizontal_bars():
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 2, n)
    X = rng.normal(0, 0.1, (n, 8, 8, 1)).astype(np.float32)
    where = rng.integers(1, 7, n)
    for k in range(n):
        if y[k]:
            X[k, :, where[k], 0] += 1
        else:
            X[k, where[k], :, 0] += 1
    model = bn.Sequential([Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), GlobalAveragePooling2D(),
                           Dense(2, activation="softmax")], seed=0)
    model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(0.02), metrics=["accuracy"])
    history = model.fit(X[:150], y[:150], epochs=30, batch_size=32, verbose=0)
    assert history.history["accuracy"][0] < 0.9
    assert model.evaluate(X[150:], y[150:])["accuracy"] >= 0.95


# ----------------------------------------------------------------- the example and the benchmark
def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (magic 0x08 = unsigned byte, then the dimensions)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_fashion(tmp_path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    for split, n in (("train", 96), ("t10k", 40)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return {**os.environ, "BARENET_DATA": str(tmp_path), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def run_script(path: Path, *args: str, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_fashion_cnn_example_trains_and_prints_the_test_accuracy(tiny_fashion):
    out = run_script(ROOT / "examples" / "fashion_cnn.py", "--epochs", "1", "--limit", "64", "--seed", "1",
                     env=tiny_fashion)
    assert "Fashion-MNIST: 64 training and 40 test images" in out
    assert "(None, 6, 6, 64)" in out and "Epoch 1/1" in out
    accuracy = float(re.search(r"test accuracy: (\d\.\d{4})", out).group(1))
    assert 0.0 <= accuracy <= 1.0


def test_fashion_resnet_example_trains_a_graph_and_prints_the_test_accuracy(tiny_fashion):
    out = run_script(ROOT / "examples" / "fashion_resnet.py", "--epochs", "1", "--limit", "64", "--seed", "1",
                     env=tiny_fashion)
    assert "Fashion-MNIST: 64 training and 40 test images" in out
    assert "Connected to" in out and "add_3 (Add)" in out and "Epoch 1/1" in out
    accuracy = float(re.search(r"test accuracy: (\d\.\d{4})", out).group(1))
    assert 0.0 <= accuracy <= 1.0


def test_fashion_resnet_example_takes_shifts_label_smoothing_and_a_width(tiny_fashion):
    out = run_script(ROOT / "examples" / "fashion_resnet.py", "--epochs", "1", "--limit", "64", "--shift", "0.05",
                     "--label-smoothing", "0.1", "--width", "8", env=tiny_fashion)
    assert "(RandomTranslation)" in out and "test accuracy: " in out
    assert "(None, 7, 7, 16)" in out  # the second stage has twice --width channels


def test_cnn_benchmark_reports_time_memory_and_accuracy(tiny_fashion):
    out = run_script(ROOT / "bench" / "cnn_fashion.py", "--epochs", "1", "--limit", "32", "--frameworks", "barenet",
                     env=tiny_fashion)
    row = re.search(r"^barenet\s+([\d.]+)\s+([\d.]+)\s+([\d,]+)\s+(\d+)\s+(\d\.\d{4})$", out, re.MULTILINE)
    assert row, out
    seconds, _, _, rss_mb, accuracy = row.groups()
    assert float(seconds) > 0 and 10 < int(rss_mb) < 2000 and 0 <= float(accuracy) <= 1


def test_cnn_benchmark_trains_the_same_network_in_pytorch():
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        bench = importlib.import_module("cnn_fashion")
    finally:
        sys.path.remove(str(ROOT / "bench"))
    model = bench.load_example().build_model()
    model.build()
    net = bench.torch_network()
    ours = {key: p.shape for key, p in model.parameters().items()}
    theirs = [tuple(p.shape) for p in net.parameters()]
    assert sum(int(np.prod(s)) for s in ours.values()) == sum(int(np.prod(s)) for s in theirs)
    assert len(ours) == len(theirs)
    # PyTorch's default initialization is U(+-1/sqrt(fan_in)); barenet's uniform_fan_in draws from the same range.
    for (key, p), q in zip(model.parameters().items(), net.parameters(), strict=True):
        if key.endswith(("kernel", "bias")):
            fan_in = int(np.prod(q.shape[1:])) if q.ndim > 1 else None
            if fan_in is not None:
                assert np.abs(p).max() <= 1 / np.sqrt(fan_in) and float(q.detach().abs().max()) <= 1 / np.sqrt(fan_in)
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    assert model.predict(x).shape == tuple(net.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2))).shape)
