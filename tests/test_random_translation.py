"""RandomTranslation (layers/augmentation.py): Keras's random per-image shifts.

The contract (gradients, config round trip, dtypes) runs in ``tests/test_layers.py``'s CASES; here: the shifts
against a hand-built ``np.pad`` reference for every fill mode, bilinear weights worked by hand, the identity at
inference, seeding, errors, a save/load round trip, the backward pass as the adjoint of the forward one, and
Keras 3 (torch backend) as the reference for the translation itself and for the argument names.
Images are channels-last ``(batch, height, width, channels)`` unless a test says otherwise.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, ShapeError
from barenet.layers import Cache, RandomTranslation
from barenet.layers.augmentation import FILL_MODES, shift_matrices, translate

NP_PAD = {"constant": "constant", "nearest": "edge", "reflect": "symmetric", "wrap": "wrap"}


def _built(layer: RandomTranslation, shape=(7, 6, 2), seed: int = 0) -> RandomTranslation:
    layer.build(shape, np.random.default_rng(seed))
    return layer


def _shifted(image: np.ndarray, dy: int, dx: int, fill_mode: str, fill_value: float) -> np.ndarray:
    """Reference: pad by more than the shift as ``np.pad`` extends the image, then cut the shifted window."""
    h, w, _ = image.shape
    p = max(h, w)
    extra = {"constant_values": fill_value} if fill_mode == "constant" else {}
    padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode=NP_PAD[fill_mode], **extra)
    return padded[p - dy:p - dy + h, p - dx:p - dx + w]


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_nearest_shifts_match_a_padded_reference_image_by_image(fill_mode):
    layer = _built(RandomTranslation(0.5, (-0.6, 0.3), fill_mode=fill_mode, interpolation="nearest",
                                     fill_value=-2.0))
    x = np.random.default_rng(1).standard_normal((40, 7, 6, 2))
    y = layer.forward(x, training=True)
    layer.rng = np.random.default_rng(0)  # replay the draws
    dy, dx = (np.round(s).astype(int) for s in layer.draw_shifts(40, 7, 6))
    assert dy.min() >= -4 and dy.max() <= 4 and dx.min() >= -4 and dx.max() <= 2  # 0.5 * 7, (-0.6, 0.3) * 6
    assert len(set(dy)) > 5 and len(set(dx)) > 4  # per-image shifts, not one per batch
    for i in range(len(x)):
        np.testing.assert_array_equal(y[i], _shifted(x[i], dy[i], dx[i], fill_mode, -2.0))


def test_bilinear_weights_by_hand():
    # a shift of 0.25 px reads s = i - 0.25: pixel i - 1 with weight 0.25, pixel i with 0.75
    (a,) = shift_matrices(np.array([0.25]), 4, "constant", "bilinear", np.float64)
    np.testing.assert_array_equal(a, [[0.75, 0, 0, 0], [0.25, 0.75, 0, 0], [0, 0.25, 0.75, 0], [0, 0, 0.25, 0.75]])
    (a,) = shift_matrices(np.array([-1.5]), 3, "nearest", "bilinear", np.float64)  # s = i + 1.5, clamped
    np.testing.assert_array_equal(a, [[0, 0.5, 0.5], [0, 0, 1], [0, 0, 1]])
    (a,) = shift_matrices(np.array([2.5]), 3, "nearest", "nearest", np.float64)  # round(i - 2.5), half to even
    np.testing.assert_array_equal(a, [[1, 0, 0], [1, 0, 0], [1, 0, 0]])
    # constant fill: the half of the first pixel's taps that falls outside reads fill_value
    x = np.arange(1.0, 4.0).reshape(1, 1, 3, 1)
    y = translate(x, np.ones((1, 1, 1)), shift_matrices(np.array([0.5]), 3, "constant", "bilinear", np.float64), 10)
    np.testing.assert_allclose(y.ravel(), [5.5, 1.5, 2.5])


def test_whole_pixel_bilinear_shifts_equal_nearest_ones():
    shifts = np.array([-3.0, -1.0, 0.0, 2.0, 5.0])
    for mode in FILL_MODES:
        np.testing.assert_array_equal(shift_matrices(shifts, 6, mode, "bilinear", np.float64),
                                      shift_matrices(shifts, 6, mode, "nearest", np.float64))


def test_identity_at_inference_and_in_predict():
    model = bn.Sequential([RandomTranslation(0.2, 0.2, input_shape=(5, 4, 3))], seed=0)
    model.build()
    x = np.random.default_rng(0).standard_normal((6, 5, 4, 3)).astype(np.float32)
    assert model.layers[0].forward(x, training=False) is x
    np.testing.assert_array_equal(model.predict(x), x)


def test_same_seed_same_shifts_and_float32_stays_float32():
    def run(seed):
        layer = RandomTranslation(0.3, 0.3, fill_mode="constant", fill_value=0.5)
        return _built(layer, seed=seed).forward(np.ones((8, 7, 6, 2), np.float32), training=True)

    a, b, c = run(3), run(3), run(4)
    assert a.dtype == np.float32 and a.shape == (8, 7, 6, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_channels_first_shifts_the_same_images():
    x = np.random.default_rng(2).standard_normal((5, 6, 7, 3))
    last = _built(RandomTranslation(0.3, 0.3, fill_mode="wrap"), shape=(6, 7, 3), seed=1)
    first = _built(RandomTranslation(0.3, 0.3, fill_mode="wrap", data_format="channels_first"), shape=(3, 6, 7),
                   seed=1)
    np.testing.assert_allclose(first.forward(x.transpose(0, 3, 1, 2), training=True),
                               last.forward(x, training=True).transpose(0, 3, 1, 2), atol=1e-14)


@pytest.mark.parametrize("fill_mode", FILL_MODES)
def test_backward_is_the_adjoint_of_the_forward_map(fill_mode):
    """``<A x, g> = <x, A^T g>`` for the linear part; the constant fill adds no input gradient."""
    layer = _built(RandomTranslation(0.4, 0.4, fill_mode=fill_mode, fill_value=1.5))
    rng = np.random.default_rng(3)
    x, g = rng.standard_normal((2, 6, 7, 6, 2))
    cache = Cache()
    y = layer.forward(x, training=True, cache=cache)
    dx = layer.backward(g, cache)
    layer.rng = np.random.default_rng(0)
    offset = layer.forward(np.zeros_like(x), training=True)  # the fill's share, same draws as the first call
    np.testing.assert_allclose(np.sum((y - offset) * g), np.sum(x * dx), rtol=1e-12)
    assert layer.backward(g, Cache(input_grad=False)) is None


def test_bad_arguments_raise_barenet_errors():
    with pytest.raises(ConfigError, match=r"height_factor must be a number in \[-1, 1\] or a pair"):
        RandomTranslation(1.5, 0.1)
    with pytest.raises(ConfigError, match=r"width_factor .* got \(0.1, 0.2, 0.3\)"):
        RandomTranslation(0.1, (0.1, 0.2, 0.3))
    with pytest.raises(ConfigError, match="height_factor"):
        RandomTranslation(True, 0.1)
    with pytest.raises(ConfigError, match=r"fill_mode must be one of \('reflect', 'wrap', 'constant', 'nearest'\), "
                                          r"got 'mirror'"):
        RandomTranslation(0.1, 0.1, fill_mode="mirror")
    with pytest.raises(ConfigError, match="interpolation must be one of"):
        RandomTranslation(0.1, 0.1, interpolation="bicubic")
    with pytest.raises(ConfigError, match="fill_value must be a finite number, got nan"):
        RandomTranslation(0.1, 0.1, fill_value=float("nan"))
    with pytest.raises(ShapeError, match="RandomTranslation.*expects images"):
        RandomTranslation(0.1, 0.1).build((28, 28), np.random.default_rng(0))


def test_factors_keep_their_keras_form_in_the_config():
    layer = RandomTranslation(-0.2, [0.3, -0.1], fill_mode="nearest")
    assert layer.height_bounds == (-0.2, 0.2) and layer.width_bounds == (-0.1, 0.3)
    assert layer.get_config() == {"height_factor": -0.2, "width_factor": [-0.1, 0.3], "fill_mode": "nearest",
                                  "interpolation": "bilinear", "fill_value": 0.0}


def test_save_and_load_round_trip(tmp_path):
    images = bn.Input(shape=(6, 5, 1))
    x = RandomTranslation((-0.2, 0.1), 0.3, fill_mode="constant", interpolation="nearest", fill_value=0.25)(images)
    model = bn.Model(images, bn.layers.Dense(2)(bn.layers.Flatten()(x)), seed=0)
    model.compile("mse", "sgd")
    X = np.random.default_rng(0).standard_normal((8, 6, 5, 1))
    model.fit(X, np.zeros((8, 2)), epochs=1, batch_size=4, verbose=0)
    bn.save(model, tmp_path / "m.barenet")
    again = bn.load_model(tmp_path / "m.barenet")
    layer = next(lay for lay in again.layers if isinstance(lay, RandomTranslation))
    assert layer.get_config() == next(lay for lay in model.layers if isinstance(lay, RandomTranslation)).get_config()
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    assert "RandomTranslation" in again.summary(print_fn=None)


@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")
def test_translation_and_argument_names_match_keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch")
    keras = pytest.importorskip("keras", minversion="3")
    x = np.random.default_rng(4).standard_normal((4, 7, 6, 2)).astype(np.float32)
    dy, dx = np.array([0.5, -2.25, 3.0, -7.5]), np.array([-1.5, 2.0, 0.25, 4.0])
    matrix = np.zeros((4, 8), np.float32)
    matrix[:, 0] = matrix[:, 4] = 1
    matrix[:, 2], matrix[:, 5] = -dx, -dy  # Keras's translation: output (i, j) reads input (i - dy, j - dx)
    for mode in FILL_MODES:
        for interpolation in ("bilinear", "nearest"):
            theirs = keras.ops.convert_to_numpy(keras.ops.image.affine_transform(
                x, matrix, interpolation=interpolation, fill_mode=mode, fill_value=0.7))
            ours = translate(x, shift_matrices(dy, 7, mode, interpolation, x.dtype),
                             shift_matrices(dx, 6, mode, interpolation, x.dtype), 0.7 if mode == "constant" else 0)
            np.testing.assert_allclose(ours, theirs, atol=1e-6, err_msg=f"{mode} {interpolation}")
    reference = keras.layers.RandomTranslation((-0.2, 0.1), 0.3, fill_mode="nearest", fill_value=0.5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(reference(x, training=False)), x)
    ours = RandomTranslation((-0.2, 0.1), 0.3, fill_mode="nearest", fill_value=0.5).get_config()
    theirs = reference.get_config()
    assert {k: theirs[k] for k in ours} == {**ours, "height_factor": (-0.2, 0.1)}
