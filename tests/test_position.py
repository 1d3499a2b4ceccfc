"""PositionEmbedding, SinusoidalPositionEncoding and TokenAndPositionEmbedding: what each computes, Keras-Hub's
semantics (the first two return the position information and do not add it), models with them saved and
loaded, and the messages for bad arguments. The layer contract (gradients, configs, dtypes) is checked for
each in test_layers.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, DataError, ShapeError
from barenet.layers import (
    Cache,
    Embedding,
    PositionEmbedding,
    SinusoidalPositionEncoding,
    TokenAndPositionEmbedding,
)


def _built(layer, input_shape, dtype="float64", seed=0):
    layer.build(input_shape, np.random.default_rng(seed), dtype)
    return layer


# --------------------------------------------------------------------------- PositionEmbedding
def test_position_embedding_returns_the_table_rows_broadcast_and_does_not_add_them():
    layer = _built(PositionEmbedding(6), (4, 3))
    x = np.random.default_rng(1).standard_normal((2, 4, 3))
    y = layer.forward(x)
    table = layer.params["embeddings"]
    assert table.shape == (6, 3)
    np.testing.assert_array_equal(y, np.broadcast_to(table[:4], (2, 4, 3)))
    np.testing.assert_array_equal(layer.forward(x * 100), y)  # the input's values do not matter


def test_position_embedding_gradient_sums_over_the_batch_and_the_input_gets_none():
    layer = _built(PositionEmbedding(6), (4, 3))
    grad = np.random.default_rng(2).standard_normal((5, 4, 3))
    cache = Cache()
    layer.forward(np.zeros((5, 4, 3)), training=True, cache=cache)
    np.testing.assert_array_equal(layer.backward(grad, cache), 0)
    np.testing.assert_allclose(layer.grads["embeddings"][:4], grad.sum(axis=0), rtol=1e-15)
    np.testing.assert_array_equal(layer.grads["embeddings"][4:], 0)  # positions the input does not reach
    assert layer.backward(grad, Cache(input_grad=False)) is None


def test_position_embedding_draws_glorot_uniform_over_positions_and_features():
    layer = _built(PositionEmbedding(100), (10, 50), seed=3)
    limit = np.sqrt(6 / (100 + 50))
    table = layer.params["embeddings"]
    assert np.abs(table).max() <= limit and np.abs(table).max() > 0.95 * limit


def test_position_embedding_rejects_longer_sequences_and_bad_arguments():
    with pytest.raises(ShapeError, match=r"^PositionEmbedding\(sequence_length=4, initializer='glorot_uniform'\) "
                                         r"covers 4 positions, got sequences of 5 steps \(input shape \(5, 2\)\); "
                                         r"raise sequence_length$"):
        _built(PositionEmbedding(4), (5, 2))
    with pytest.raises(ShapeError, match=r"expects sequences \(batch, time, features\), got samples of shape \(5,\)"):
        _built(PositionEmbedding(4), (5,))
    with pytest.raises(ConfigError, match=r"^PositionEmbedding sequence_length must be a positive integer, got 0$"):
        PositionEmbedding(0)
    with pytest.raises(ConfigError, match=r"unknown initializer 'nope'"):
        PositionEmbedding(3, initializer="nope")


# --------------------------------------------------------------------------- SinusoidalPositionEncoding
def test_sinusoidal_encoding_has_the_values_of_the_paper():
    """Vaswani et al.: PE(t, 2i) = sin(t / 10000^(2i/F)), PE(t, 2i+1) = cos(t / 10000^(2i/F)); with F = 4 the
    second pair's wavelength factor is 10000^(2/4) = 100."""
    layer = _built(SinusoidalPositionEncoding(), (3, 4))
    y = layer.forward(np.full((2, 3, 4), 7.0))
    expected = np.array([[0.0, 1.0, 0.0, 1.0],
                         [np.sin(1), np.cos(1), np.sin(0.01), np.cos(0.01)],
                         [np.sin(2), np.cos(2), np.sin(0.02), np.cos(0.02)]])
    np.testing.assert_allclose(y, np.broadcast_to(expected, (2, 3, 4)), rtol=1e-15, atol=1e-16)


def test_sinusoidal_encoding_of_an_odd_width_and_another_wavelength():
    layer = _built(SinusoidalPositionEncoding(max_wavelength=50), (4, 5), dtype="float32")
    y = layer.forward(np.zeros((1, 4, 5), np.float32))
    t, i = np.arange(4)[:, None], np.arange(5)
    angle = t / 50.0 ** (2 * (i // 2) / 5)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], np.where(i % 2 == 0, np.sin(angle), np.cos(angle)), rtol=1e-7, atol=1e-7)


def test_sinusoidal_encoding_passes_no_gradient_and_rejects_bad_wavelengths():
    layer = _built(SinusoidalPositionEncoding(), (3, 2))
    cache = Cache()
    layer.forward(np.ones((2, 3, 2)), training=True, cache=cache)
    np.testing.assert_array_equal(layer.backward(np.ones((2, 3, 2)), cache), 0)
    assert layer.params == {}
    for bad in (0, -1.0, float("inf"), "10000", True):
        with pytest.raises(ConfigError, match=r"^SinusoidalPositionEncoding max_wavelength must be a positive "
                                              r"number, got "):
            SinusoidalPositionEncoding(max_wavelength=bad)


# --------------------------------------------------------------------------- TokenAndPositionEmbedding
def test_token_and_position_embedding_is_the_sum_of_an_embedding_and_a_position_embedding():
    layer = _built(TokenAndPositionEmbedding(10, 6, 3), (4,))
    tokens = _built(Embedding(10, 3), (4,))
    positions = _built(PositionEmbedding(6), (4, 3))
    tokens.params["embeddings"][...] = layer.params["token_embeddings"]
    positions.params["embeddings"][...] = layer.params["position_embeddings"]
    ids = np.random.default_rng(1).integers(0, 10, (5, 4))
    grad = np.random.default_rng(2).standard_normal((5, 4, 3))
    caches = Cache(), Cache(), Cache()
    embedded = tokens.forward(ids, training=True, cache=caches[1])
    np.testing.assert_allclose(layer.forward(ids, training=True, cache=caches[0]),
                               embedded + positions.forward(embedded, training=True, cache=caches[2]), rtol=1e-15)
    assert layer.backward(grad, caches[0]) is None
    tokens.backward(grad, caches[1])
    positions.backward(grad, caches[2])
    np.testing.assert_allclose(layer.grads["token_embeddings"], tokens.grads["embeddings"], rtol=1e-14)
    np.testing.assert_allclose(layer.grads["position_embeddings"], positions.grads["embeddings"], rtol=1e-14)


def test_mask_zero_marks_real_tokens_and_leaves_the_output_alone():
    ids = np.array([[3, 1, 0, 0], [2, 2, 2, 0]])
    masked = _built(TokenAndPositionEmbedding(5, 4, 2, mask_zero=True), (4,))
    plain = _built(TokenAndPositionEmbedding(5, 4, 2), (4,))
    np.testing.assert_array_equal(masked.compute_mask(ids), ids != 0)
    assert plain.compute_mask(ids) is None
    np.testing.assert_array_equal(masked.forward(ids), plain.forward(ids))


def test_token_and_position_embedding_rejects_bad_ids_and_arguments():
    layer = _built(TokenAndPositionEmbedding(5, 4, 2), (3,))
    with pytest.raises(DataError, match=r"got token id 5; ids must be in \[0, 4\] for vocabulary_size=5$"):
        layer.forward(np.array([[0, 1, 5]]))
    with pytest.raises(DataError, match=r"expects integer token ids; got non-integer value 1.5"):
        layer.forward(np.array([[0, 1.5, 2]]))
    with pytest.raises(ShapeError, match=r"covers 4 positions, got token ids of shape \(6,\) per sample; "
                                         r"the last axis is the sequence$"):
        _built(TokenAndPositionEmbedding(5, 4, 2), (6,))
    with pytest.raises(ConfigError, match=r"^TokenAndPositionEmbedding embedding_dim must be a positive integer, "
                                          r"got 2.0$"):
        TokenAndPositionEmbedding(5, 4, 2.0)
    with pytest.raises(ConfigError, match=r"^TokenAndPositionEmbedding mask_zero must be True or False, got 1$"):
        TokenAndPositionEmbedding(5, 4, 2, mask_zero=1)


# --------------------------------------------------------------------------- in models
def _models():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 12, (32, 6))
    labels = (ids[:, 0] > ids[:, -1]).astype(int)  # depends on the order: positions matter
    learned = bn.Sequential([TokenAndPositionEmbedding(12, 8, 4, input_shape=(6,)), bn.layers.Flatten(),
                             bn.layers.Dense(2, activation="softmax")], seed=1)
    # in a Sequential each of these two replaces its input (adding them takes a graph of layers); here they
    # stand for their configuration and weights in a saved file
    fixed = bn.Sequential([Embedding(12, 4, input_length=6), SinusoidalPositionEncoding(), PositionEmbedding(6),
                           bn.layers.Flatten(), bn.layers.Dense(2, activation="softmax")], seed=2)
    return [(learned, ids, labels), (fixed, ids, labels)]


@pytest.mark.parametrize("index", [0, 1], ids=["token-and-position", "sinusoidal-then-learned"])
def test_models_train_save_and_load_with_the_same_predictions(index, tmp_path):
    model, ids, labels = _models()[index]
    model.compile("sparse_categorical_crossentropy", bn.optimizers.Adam(0.05))
    before = model.get_weights()
    model.fit(ids, labels, epochs=2, batch_size=8, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    bn.save(model, tmp_path / "m.barenet")
    again = bn.load(tmp_path / "m.barenet")
    assert [type(layer) for layer in again.layers] == [type(layer) for layer in model.layers]
    assert again.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_array_equal(again.predict(ids), model.predict(ids))
