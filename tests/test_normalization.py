"""BatchNormalization's axis, its refusal of one value per channel, and its config."""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, ShapeError
from barenet.layers import BatchNormalization


def _built(axis: int, sample_shape: tuple[int, ...], rng: np.random.Generator) -> BatchNormalization:
    layer = BatchNormalization(axis=axis, momentum=0.5)
    layer.build(sample_shape, rng, "float64")
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, layer.params["gamma"].shape)
    layer.params["beta"][...] = rng.standard_normal(layer.params["beta"].shape)
    return layer


@pytest.mark.parametrize("axis, shape", [(-1, (6, 3)), (1, (6, 3)), (-1, (3, 4, 3, 2)), (1, (3, 2, 4, 3)),
                                         (2, (3, 2, 4, 3)), (-2, (3, 4, 3, 2))])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_gradients_match_finite_differences_on_any_axis(axis, shape, training):
    rng = np.random.default_rng(0)
    layer = _built(axis, shape[1:], rng)
    layer.forward(rng.standard_normal(shape) * 2 + 1, training=True)  # moving statistics for inference
    result = bn.gradcheck(layer, rng.standard_normal(shape) * 2 + 1, training=training)
    assert result.max_error < 1e-6, result


@pytest.mark.parametrize("axis, shape", [(1, (4, 3, 5, 5)), (-3, (4, 3, 5, 5)), (2, (4, 5, 3, 2)), (-1, (4, 5, 5, 3))])
def test_batchnorm_statistics_are_over_every_axis_but_the_channel_axis(axis, shape):
    rng = np.random.default_rng(1)
    layer = BatchNormalization(axis=axis, momentum=0.0)
    layer.build(shape[1:], rng, "float64")
    channel = axis % len(shape)
    offsets = np.arange(shape[channel], dtype=float).reshape([-1 if d == channel else 1 for d in range(len(shape))])
    x = rng.standard_normal(shape) + 10 * offsets
    y = layer.forward(x, training=True)
    others = tuple(d for d in range(len(shape)) if d != channel)
    np.testing.assert_allclose(layer.buffers["moving_mean"], x.mean(axis=others), rtol=1e-12)
    np.testing.assert_allclose(layer.buffers["moving_variance"], x.var(axis=others), rtol=1e-12)
    np.testing.assert_allclose(y.mean(axis=others), 0, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 2, -3, 7])
def test_batchnorm_rejects_an_axis_the_input_does_not_have(axis):
    layer = BatchNormalization(axis=axis)
    with pytest.raises(ShapeError, match=rf"cannot normalize axis {axis} of inputs \(batch, 5\); expected an axis "
                                         r"from 1 to 1 or from -1 to -1 \(axis 0 is the batch\)"):
        layer.build((5,), np.random.default_rng(0))


@pytest.mark.parametrize("axis", [1.0, "1", True, None])
def test_batchnorm_axis_must_be_an_integer(axis):
    with pytest.raises(ConfigError, match=r"BatchNormalization axis must be an integer, got"):
        BatchNormalization(axis=axis)


def test_batchnorm_axis_round_trips_and_files_without_it_load_as_the_last_axis():
    layer = BatchNormalization(axis=1, momentum=0.9)
    assert layer.get_config()["axis"] == 1
    assert BatchNormalization.from_config(layer.get_config()).axis == 1
    assert BatchNormalization.from_config({"momentum": 0.9, "epsilon": 1e-3}).axis == -1


def test_batchnorm_axis_survives_save_and_load(tmp_path):
    model = bn.Sequential([bn.layers.Conv2D(3, 2, data_format="channels_first", input_shape=(2, 5, 5)),
                           BatchNormalization(axis=1), bn.layers.Flatten(), bn.layers.Dense(2)], seed=0)
    model.compile("mse", "sgd")
    x = np.random.default_rng(0).standard_normal((6, 2, 5, 5)).astype("float32")
    model.fit(x, np.zeros((6, 2), "float32"), epochs=1, batch_size=3, verbose=0)
    bn.save(model, tmp_path / "m.barenet")
    loaded = bn.load(tmp_path / "m.barenet")
    assert loaded.layers[1].axis == 1
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)


@pytest.mark.parametrize("shape, axis", [((1, 4), -1), ((1, 3, 1, 1), 1), ((1, 1, 1, 3), -1)])
def test_batchnorm_refuses_to_train_on_one_value_per_channel(shape, axis):
    layer = BatchNormalization(axis=axis)
    layer.build(shape[1:], np.random.default_rng(0), "float64")
    moving = {k: v.copy() for k, v in layer.buffers.items()}
    with pytest.raises(ShapeError, match=r"expected more than 1 value per channel when training, got input of "
                                         rf"shape \{shape}".replace(")", r"\)")):
        layer.forward(np.ones(shape), training=True)
    for name, value in moving.items():  # the moving statistics were not dragged toward a variance of 0
        np.testing.assert_array_equal(layer.buffers[name], value)
    layer.forward(np.ones(shape), training=False)  # inference on one sample is fine
    layer.forward(np.ones((2, *shape[1:])), training=True)  # and so is training on two samples


def test_batchnorm_trains_on_a_single_image_with_several_pixels_per_channel():
    layer = BatchNormalization()
    layer.build((2, 2, 3), np.random.default_rng(0), "float64")
    x = np.random.default_rng(1).standard_normal((1, 2, 2, 3))
    np.testing.assert_allclose(layer.forward(x, training=True).mean(axis=(0, 1, 2)), 0, atol=1e-12)


def test_fit_with_a_last_batch_of_one_sample_says_what_to_change():
    model = bn.Sequential([bn.layers.Dense(3, input_dim=2), BatchNormalization(), bn.layers.Dense(1)], seed=0)
    model.compile("mse", "sgd")
    x = np.random.default_rng(0).standard_normal((5, 2)).astype("float32")
    with pytest.raises(ShapeError, match="choose a batch_size that does not leave a last batch of one"):
        model.fit(x, np.zeros(5, "float32"), epochs=1, batch_size=4, verbose=0)
