"""Recurrent layers and Embedding: gradients through time, initial states, hand-worked values, errors, models.

The layer contract (shapes, config round trip, float32) is covered by tests/test_layers.py. Here the gradient
checks sweep sequence lengths 1, 2 and 7, both output modes and a given initial state, with a finite-difference
step of 1e-5: products of many gates make some gradient entries small (1e-5), and for those the rounding error
of a 1e-6 step is already 1e-6 relative; 1e-5 keeps truncation and rounding both near 1e-10.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, DataError, ShapeError
from barenet.gradcheck import numerical_gradient, relative_error
from barenet.layers import GRU, LSTM, Bidirectional, Cache, Dense, Embedding, SimpleRNN

H = 1e-5
FEATURES, UNITS, BATCH = 2, 3, 2
LAYERS = {
    "simplernn": lambda rs: SimpleRNN(UNITS, return_sequences=rs),
    "simplernn-gelu": lambda rs: SimpleRNN(UNITS, activation="gelu", return_sequences=rs),
    "lstm": lambda rs: LSTM(UNITS, return_sequences=rs),
    "gru": lambda rs: GRU(UNITS, return_sequences=rs),
    "gru-reset-before": lambda rs: GRU(UNITS, reset_after=False, return_sequences=rs),
}


def _built(make, time: int, return_sequences: bool, seed: int = 0):
    layer = make(return_sequences)
    layer.build((time, FEATURES), np.random.default_rng(seed), "float64")
    # Nonzero biases, so that their paths through the gates are exercised too.
    layer.params["bias"][...] += np.random.default_rng(seed + 1).normal(0, 0.2, layer.params["bias"].shape)
    return layer


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("time", [1, 2, 7])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
def test_gradients_through_time_match_finite_differences(name, time, return_sequences, with_state):
    layer = _built(LAYERS[name], time, return_sequences)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((BATCH, time, FEATURES))
    states = [rng.standard_normal((BATCH, UNITS)) for _ in layer.state_names]
    if with_state:
        layer.initial_state = _as_state(states)
    result = bn.gradcheck(layer, x, h=H)
    assert set(result.errors) == {"input", "kernel", "recurrent_kernel", "bias"}
    assert result.max_error < 1e-6, result

    c = Cache()
    r = rng.standard_normal(layer.forward(x, cache=c).shape)
    layer.backward(r.copy(), c)
    if not with_state:
        assert c["initial_state_grad"] is None
        return
    for state, grad in zip(states, _parts(c["initial_state_grad"]), strict=True):
        numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * r)), state, H)
        assert relative_error(grad, numeric) < 1e-6


def _parts(state):
    """A state as a list of arrays: ``[h]`` or ``[h, c]``."""
    return [state] if isinstance(state, np.ndarray) else list(state)


def _as_state(parts):
    return parts[0] if len(parts) == 1 else tuple(parts)


@pytest.mark.parametrize("name", ["simplernn", "lstm", "gru"])
def test_a_state_shared_by_the_batch_gets_the_summed_gradient(name):
    layer = _built(LAYERS[name], 3, True)
    x = np.random.default_rng(3).standard_normal((4, 3, FEATURES))
    shared = [np.linspace(-0.5, 0.5, UNITS) for _ in layer.state_names]
    g = np.random.default_rng(4).standard_normal((4, 3, UNITS))
    c_shared, c_full = Cache(), Cache()
    y_shared = layer.forward(x, initial_state=_as_state(shared), cache=c_shared)
    layer.backward(g, c_shared)
    grad_shared = _parts(c_shared["initial_state_grad"])
    y_full = layer.forward(x, initial_state=_as_state([np.tile(s, (4, 1)) for s in shared]), cache=c_full)
    layer.backward(g, c_full)
    grad_full = _parts(c_full["initial_state_grad"])
    np.testing.assert_array_equal(y_shared, y_full)
    for a, b in zip(grad_shared, grad_full, strict=True):
        assert a.shape == (UNITS,) and b.shape == (4, UNITS)
        np.testing.assert_allclose(a, b.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("name", ["simplernn", "lstm", "gru", "gru-reset-before"])
def test_final_state_lets_a_sequence_be_processed_in_chunks(name):
    layer = _built(LAYERS[name], 6, True)
    x = np.random.default_rng(5).standard_normal((3, 6, FEATURES))
    c_whole, c_first, c_second = Cache(), Cache(), Cache()
    whole = layer.forward(x, cache=c_whole)
    final = c_whole["final_state"]
    half = _built(LAYERS[name], 3, True)
    first = half.forward(x[:, :3], cache=c_first)
    second = half.forward(x[:, 3:], initial_state=c_first["final_state"], cache=c_second)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, rtol=1e-12)
    for a, b in zip(_parts(final), _parts(c_second["final_state"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    np.testing.assert_array_equal(whole[:, -1], _parts(final)[0])


def test_forward_initial_state_argument_overrides_the_attribute():
    layer = _built(LAYERS["gru"], 2, False)
    x = np.ones((1, 2, FEATURES))
    layer.initial_state = np.full(UNITS, 5.0)
    from_attribute = layer.forward(x)
    zeros = layer.forward(x, initial_state=np.zeros(UNITS))
    layer.initial_state = None
    np.testing.assert_array_equal(zeros, layer.forward(x))
    assert not np.allclose(from_attribute, zeros)


# ----------------------------------------------------------------- hand-worked values
def test_simplernn_linear_recurrence_by_hand():
    layer = SimpleRNN(1, activation=None, return_sequences=True)
    layer.build((3, 1), np.random.default_rng(0), "float64")
    layer.params["kernel"][...] = 2.0
    layer.params["recurrent_kernel"][...] = 0.5
    layer.params["bias"][...] = 1.0
    y = layer.forward(np.array([[[1.0], [0.0], [-1.0]]]), initial_state=np.array([[4.0]]))
    # h1 = 2*1 + 0.5*4 + 1 = 5; h2 = 0 + 2.5 + 1 = 3.5; h3 = -2 + 1.75 + 1 = 0.75
    np.testing.assert_allclose(y[0, :, 0], [5.0, 3.5, 0.75])


def test_lstm_one_step_by_hand():
    layer = LSTM(1)
    layer.build((1, 1), np.random.default_rng(0), "float64")
    layer.params["kernel"][...] = [[1.0, 2.0, 3.0, 4.0]]  # input, forget, candidate, output
    layer.params["recurrent_kernel"][...] = 0.0
    layer.params["bias"][...] = 0.0
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    cache = Cache()
    y = layer.forward(np.array([[[0.5]]]), initial_state=(np.zeros(1), np.array([2.0])), cache=cache)
    c = sig(1.0) * 2.0 + sig(0.5) * np.tanh(1.5)
    np.testing.assert_allclose(y, [[sig(2.0) * np.tanh(c)]], rtol=1e-14)
    np.testing.assert_allclose(cache["final_state"][1], [[c]], rtol=1e-14)


def test_gru_one_step_by_hand_in_both_reset_forms():
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    x, h0 = 0.5, 2.0
    for reset_after in (True, False):
        layer = GRU(1, reset_after=reset_after)
        layer.build((1, 1), np.random.default_rng(0), "float64")
        layer.params["kernel"][...] = [[1.0, -1.0, 2.0]]  # update, reset, candidate
        layer.params["recurrent_kernel"][...] = [[0.5, 0.25, -1.0]]
        layer.params["bias"][...] = 0.0
        if reset_after:
            layer.params["bias"][1] = [0.0, 0.0, 0.3]  # recurrent bias of the candidate, inside the reset
        y = layer.forward(np.array([[[x]]]), initial_state=np.array([h0]))
        z, r = sig(1.0 * x + 0.5 * h0), sig(-1.0 * x + 0.25 * h0)
        cand = np.tanh(2.0 * x + r * (-1.0 * h0 + 0.3)) if reset_after else np.tanh(2.0 * x + (r * h0) * -1.0)
        np.testing.assert_allclose(y, [[z * h0 + (1 - z) * cand]], rtol=1e-14)


def test_parameter_layout_and_initialization():
    lstm, gru, gru_before = LSTM(4), GRU(4), GRU(4, reset_after=False)
    for layer in (lstm, gru, gru_before):
        layer.build((5, 3), np.random.default_rng(0), "float64")
    assert {k: v.shape for k, v in lstm.params.items()} == {"kernel": (3, 16), "recurrent_kernel": (4, 16),
                                                            "bias": (16,)}
    assert gru.params["bias"].shape == (2, 12) and gru_before.params["bias"].shape == (12,)
    np.testing.assert_array_equal(lstm.params["bias"], [0] * 4 + [1] * 4 + [0] * 8)  # unit_forget_bias
    U = lstm.params["recurrent_kernel"]
    np.testing.assert_allclose(U @ U.T, np.eye(4), atol=1e-12)  # orthogonal rows
    assert U.flags.c_contiguous
    assert lstm.n_params == 4 * 4 * (3 + 4 + 1)


# ----------------------------------------------------------------- errors
def test_bad_arguments_and_inputs_say_what_was_expected():
    with pytest.raises(ConfigError, match=r"LSTM units must be a positive integer, got 0"):
        LSTM(0)
    with pytest.raises(ConfigError, match=r"GRU return_sequences must be True or False, got 'yes'"):
        GRU(2, return_sequences="yes")
    with pytest.raises(ConfigError, match=r"SimpleRNN l2 must be >= 0, got -0.1"):
        SimpleRNN(2, l2=-0.1)
    with pytest.raises(ShapeError, match=r"LSTM\(2\) expects sequences \(batch, time, features\); got sample "
                                         r"shape \(5,\)"):
        LSTM(2).build((5,), np.random.default_rng(0))
    layer = LSTM(2)
    layer.build((3, 1), np.random.default_rng(0), "float64")
    with pytest.raises(ConfigError, match=r"LSTM\(2\) takes 2 initial state array\(s\) \(h, c\), got 1"):
        layer.forward(np.zeros((4, 3, 1)), initial_state=[np.zeros((4, 2))])
    with pytest.raises(ShapeError, match=r"initial state 'c' must have shape \(4, 2\) or \(2,\), got \(3, 2\)"):
        layer.forward(np.zeros((4, 3, 1)), initial_state=(np.zeros(2), np.zeros((3, 2))))
    with pytest.raises(ConfigError, match=r"Bidirectional merge_mode must be one of .*got 'max'"):
        Bidirectional(GRU(2), merge_mode="max")
    with pytest.raises(ConfigError, match=r"Bidirectional wraps a SimpleRNN, LSTM or GRU layer, got Dense"):
        Bidirectional(Dense(2))


def test_reprs_show_the_main_arguments():
    assert repr(LSTM(32)) == "LSTM(32)"
    assert repr(GRU(8, return_sequences=True, reset_after=False)) == "GRU(8, return_sequences=True, reset_after=False)"
    assert repr(SimpleRNN(4, activation="relu")) == "SimpleRNN(4, activation='relu')"
    assert repr(Bidirectional(LSTM(3), merge_mode="sum")) == "Bidirectional(LSTM(3), merge_mode='sum')"
    assert repr(Embedding(100, 8)) == "Embedding(100, 8)"


# ----------------------------------------------------------------- Embedding
def test_embedding_looks_up_rows_and_scatters_gradients_with_repeats():
    layer = Embedding(5, 2)
    layer.build((3,), np.random.default_rng(0), "float64")
    table = layer.params["embeddings"]
    ids = np.array([[0, 4, 0], [2, 2, 2]], dtype=float)  # what a model passes after casting
    c = Cache()
    y = layer.forward(ids, cache=c)
    np.testing.assert_array_equal(y, table[[[0, 4, 0], [2, 2, 2]]])
    g = np.arange(12, dtype=float).reshape(2, 3, 2)
    assert layer.backward(g, c) is None
    expected = np.zeros((5, 2))
    expected[0] = g[0, 0] + g[0, 2]
    expected[4] = g[0, 1]
    expected[2] = g[1].sum(axis=0)
    np.testing.assert_array_equal(layer.grads["embeddings"], expected)


def test_embedding_rejects_non_integer_and_out_of_range_ids():
    layer = Embedding(5, 2, input_length=3)
    layer.build((3,), np.random.default_rng(0), "float64")
    with pytest.raises(DataError, match=r"Embedding\(5, 2\) expects integer token ids; got non-integer value "
                                        r"1.5 \(1 such entries\)"):
        layer.forward(np.array([[0.0, 1.5, 2.0]]))
    with pytest.raises(DataError, match=r"got token id 5; ids must be in \[0, 4\] for input_dim=5"):
        layer.forward(np.array([[0, 5, 2]]))
    with pytest.raises(DataError, match=r"got token id -1"):
        layer.forward(np.array([[0, -1, 2]]))
    with pytest.raises(ShapeError, match=r"Embedding\(5, 2\) expected input of shape \(batch, 3\), got \(1, 4\)"):
        layer.forward(np.zeros((1, 4)))
    with pytest.raises(ConfigError, match=r"Embedding output_dim must be a positive integer, got 0"):
        Embedding(5, 0)


# ----------------------------------------------------------------- in a model
def _sequence_model(dtype="float32", l2=0.0):
    return bn.Sequential([
        Embedding(7, 3, input_length=5),
        Bidirectional(LSTM(4, return_sequences=True, l2=l2), merge_mode="concat"),
        GRU(3, l2=l2),
        Dense(2, activation="softmax"),
    ], seed=0, dtype=dtype)


def _token_data(n=40, seed=0):
    X = np.random.default_rng(seed).integers(0, 7, (n, 5))
    return X, (X[:, 0] > X[:, -1]).astype(int)


def test_whole_model_gradient_with_l2_on_both_kernels():
    model = _sequence_model("float64", l2=0.01)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
    X, y = _token_data(6)
    # Some bias entries of this loss are ~3e-7; a step of 1e-4 resolves them (truncation error ~1e-8).
    result = bn.gradcheck(model, X, y, h=1e-4)
    assert "layers.1.backward_recurrent_kernel" in result.errors
    assert result.max_error < 1e-6, result


def test_summary_config_round_trip_and_save_load(tmp_path):
    model = _sequence_model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer=bn.optimizers.Adam(0.01), metrics=["accuracy"])
    X, y = _token_data()
    model.fit(X, y, epochs=2, batch_size=8, verbose=0)
    text = model.summary(print_fn=None)
    for fragment in ("Embedding(7, 3)", "(None, 5, 3)", "Bidirectional(LSTM(4, return_sequences=True), "
                     "merge_mode='concat')", "(None, 5, 8)", f"{2 * 4 * 4 * (3 + 4 + 1):,}", "GRU(3)", "(None, 3)",
                     f"Trainable params: {model.n_params:,}"):
        assert fragment in text
    again = bn.Sequential.from_config(model.get_config())
    assert again.get_config() == model.get_config()
    assert [k for k in again.parameters()] == [k for k in model.parameters()]

    path = tmp_path / "lstm.barenet"
    bn.save(model, path)
    loaded = bn.load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # Training resumes identically: the aliased Bidirectional parameters are restored in place.
    h1 = model.fit(X, y, epochs=1, batch_size=8, verbose=0).history["loss"]
    h2 = loaded.fit(X, y, epochs=1, batch_size=8, verbose=0).history["loss"]
    assert h1 == h2


@pytest.mark.parametrize("layer", [lambda: SimpleRNN(8), lambda: LSTM(8), lambda: GRU(8)],
                         ids=["simplernn", "lstm", "gru"])
def test_recurrent_layer_learns_to_remember_the_first_input(layer):
    rng = np.random.default_rng(0)
    X = rng.normal(0, 0.3, (256, 6, 1))
    X[:, 0, 0] = rng.choice([-1.0, 1.0], 256)
    y = (X[:, 0, 0] > 0).astype(int)
    model = bn.Sequential([layer(), Dense(1, activation="sigmoid")], seed=1)
    model.compile(loss="binary_crossentropy", optimizer=bn.optimizers.Adam(0.02), metrics=["accuracy"])
    model.build((6, 1))
    model.fit(X, y, epochs=25, batch_size=32, verbose=0)
    assert model.evaluate(X, y)["accuracy"] > 0.95


def test_same_seed_same_bits():
    X, y = _token_data()
    losses = []
    for _ in range(2):
        model = _sequence_model()
        model.compile(loss="sparse_categorical_crossentropy", optimizer="adam")
        losses.append(model.fit(X, y, epochs=2, batch_size=8, verbose=0).history["loss"])
    assert losses[0] == losses[1]


@pytest.mark.parametrize("mode, rs", list(itertools.product(["concat", "sum", "mul", "ave"], [False, True])))
def test_bidirectional_reads_the_sequence_both_ways(mode, rs):
    layer = Bidirectional(SimpleRNN(2, return_sequences=rs), merge_mode=mode)
    layer.build((4, 1), np.random.default_rng(0), "float64")
    x = np.random.default_rng(1).standard_normal((3, 4, 1))
    y = layer.forward(x)
    yf = layer.forward_layer.forward(x)
    yb = layer.backward_layer.forward(x[:, ::-1])
    yb = yb[:, ::-1] if rs else yb
    expected = {"concat": np.concatenate([yf, yb], -1), "sum": yf + yb, "mul": yf * yb, "ave": (yf + yb) / 2}[mode]
    np.testing.assert_allclose(y, expected, rtol=1e-14)
    assert layer.params["forward_kernel"] is layer.forward_layer.params["kernel"]
    assert layer.grads["backward_bias"] is layer.backward_layer.grads["bias"]
