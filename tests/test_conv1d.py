"""Conv1D's own behaviour: by-hand values, causal padding, the 2-d equivalence, bad arguments (the contract
is in tests/test_layers.py, PyTorch in tests/test_conv_torch_b.py)."""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, ShapeError
from barenet.layers import Conv1D, Conv2D


def test_conv1d_by_hand():
    layer = Conv1D(1, 2, use_bias=False)
    layer.build((4, 1), np.random.default_rng(0), "float64")
    layer.params["kernel"][...] = np.array([1.0, -1.0]).reshape(2, 1, 1)
    y = layer.forward(np.array([1.0, 4.0, 9.0, 16.0]).reshape(1, 4, 1))
    np.testing.assert_array_equal(y.ravel(), [-3.0, -5.0, -7.0])


def test_causal_output_never_sees_a_later_step():
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    layer.build((9, 2), np.random.default_rng(0), "float64")
    x = np.random.default_rng(1).standard_normal((1, 9, 2))
    y = layer.forward(x)
    assert y.shape == (1, 9, 2)
    later = x.copy()
    later[:, 5:] += 1.0
    np.testing.assert_array_equal(layer.forward(later)[:, :5], y[:, :5])


def test_conv1d_is_conv2d_on_images_one_pixel_high():
    layer = Conv1D(4, 3, strides=2, padding="same", groups=2, activation="tanh")
    layer.build((9, 6), np.random.default_rng(0), "float64")
    image = Conv2D(4, (1, 3), strides=(1, 2), padding="same", groups=2, activation="tanh")
    image.build((1, 9, 6), np.random.default_rng(0), "float64")
    image.params["kernel"][...] = layer.params["kernel"][None]
    x = np.random.default_rng(1).standard_normal((3, 9, 6))
    np.testing.assert_allclose(layer.forward(x), image.forward(x[:, None])[:, 0], rtol=1e-13)


def test_a_sequence_model_with_conv1d_trains_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 12, 2)).astype(np.float32)
    y = (x[:, :, 0].sum(axis=1) > 0).astype(np.float32)
    model = bn.Sequential([Conv1D(4, 3, padding="causal", activation="relu", input_shape=(12, 2)),
                           bn.layers.Flatten(), bn.layers.Dense(1, activation="sigmoid")], seed=0)
    model.compile(loss="binary_crossentropy", optimizer="adam")
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    bn.save(model, tmp_path / "m.barenet")
    np.testing.assert_array_equal(bn.load(tmp_path / "m.barenet").predict(x), model.predict(x))


@pytest.mark.parametrize("make, message", [
    (lambda: Conv1D(0, 3), "Conv1D filters must be a positive integer, got 0"),
    (lambda: Conv1D(2, (3, 3)), r"Conv1D kernel_size must be a positive integer, got \(3, 3\)"),
    (lambda: Conv1D(2, 3, strides=0), "Conv1D strides must be a positive integer, got 0"),
    (lambda: Conv1D(2, 3, padding="full"), "Conv1D padding must be 'valid', 'same', 'causal', an int >= 0 or a "
                                           r"pair \(left, right\) of them, got 'full'"),
    (lambda: Conv1D(2, 3, padding=(1, -1)), r"Conv1D padding must be .* got \(1, -1\)"),
    (lambda: Conv1D(3, 3, groups=2), "Conv1D cuts its 3 filters into 2 groups; filters must be a multiple of groups"),
    (lambda: Conv1D(2, 3, data_format="NLC"), "Conv1D data_format must be one of"),
    (lambda: Conv1D(2, 3, l2=-1.0), "Conv1D l2 must be >= 0, got -1.0"),
])
def test_bad_arguments_say_what_was_expected(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


def test_shape_errors_name_the_layer():
    with pytest.raises(ShapeError, match=r"Conv1D\(2, 3\) expects sequences \(steps, channels\) per sample, got "
                                         r"sample shape \(4, 4, 1\)"):
        Conv1D(2, 3).build((4, 4, 1), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"Conv1D\(2, 5\) cannot slide a kernel of 5 .* over sequences of 4 steps"):
        Conv1D(2, 5).build((4, 1), np.random.default_rng(0))
    with pytest.raises(ShapeError, match=r"Conv1D\(2, 3, groups=2\) cuts its input channels into 2 groups, but the "
                                         r"input has 3 channels"):
        Conv1D(2, 3, groups=2).build((6, 3), np.random.default_rng(0))
