"""The training loop's guarantees and the model's public gradient and weight access.

Covers: per-step class weights, integer ids reaching Embedding, layers that keep their own parameter
references, build at construction, compute_gradients, named weights, divergence and interrupts.
"""

import io
import os
import signal

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError
from barenet.layers import GRU, BatchNormalization, Dense, Embedding, Layer, register
from barenet.models import validation

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------- class weights per step
def test_class_weight_weighs_each_step_of_a_sequence_by_its_own_label():
    model = bn.Sequential([GRU(4, return_sequences=True, input_shape=(5, 3)), Dense(3, activation="softmax")],
                          seed=0, dtype="float64")
    model.compile("categorical_crossentropy", "sgd")
    X = RNG.standard_normal((6, 5, 3))
    labels = RNG.integers(0, 3, size=(6, 5))
    labels[:, 0] = 0  # step 0 is always class 0: weighting by it would weigh every step alike
    y = model.check_targets(labels, 6)
    weights = validation.class_weights({0: 1.0, 1: 5.0, 2: 0.5}, y, model.task, model.dtype, 3)
    np.testing.assert_array_equal(weights, np.array([1.0, 5.0, 0.5])[labels])

    value, _, _ = model.loss_and_gradients(model.check_inputs(X), y, weights, training=False, need_grad=False)
    p = model.predict(X)
    per_step = -np.log(np.take_along_axis(p, labels[..., None], axis=-1))[..., 0]
    assert value == pytest.approx(np.mean(per_step * weights), rel=1e-12)


def test_class_weight_on_sequences_trains_and_matches_sample_weight_when_uniform():
    X = RNG.standard_normal((8, 4, 2))
    labels = RNG.integers(0, 2, size=(8, 4))
    runs = []
    for kwargs in ({"class_weight": {0: 2.0, 1: 2.0}}, {"sample_weight": np.full(8, 2.0)}):
        model = bn.Sequential([GRU(3, return_sequences=True, input_shape=(4, 2)), Dense(2, activation="softmax")],
                              seed=1, dtype="float64")
        model.compile("categorical_crossentropy", "sgd")
        runs.append(model.fit(X, labels, epochs=2, batch_size=4, verbose=0, **kwargs).history["loss"])
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12)


# --------------------------------------------------------------------- integer ids
def test_integer_ids_reach_embedding_without_rounding_in_float32():
    vocab = 2**24 + 3
    layer = Embedding(vocab, 1, input_length=1, embeddings_initializer="zeros")
    model = bn.Sequential([layer], seed=0)
    table = layer.params["embeddings"]
    table[2**24, 0], table[2**24 + 1, 0] = 1.0, 2.0
    ids = np.array([[2**24 + 1], [2**24]], dtype=np.int64)
    np.testing.assert_array_equal(model.predict(ids)[:, 0, 0], [2.0, 1.0])
    assert model.check_inputs(ids).dtype == np.int64


def test_float_ids_that_are_not_exact_integers_are_refused():
    model = bn.Sequential([Embedding(10, 2, input_length=2)], seed=0)
    with pytest.raises(bn.errors.DataError, match="integer token ids"):
        model.predict(np.array([[1.5, 2.0]]))
    np.testing.assert_array_equal(model.predict(np.array([[1.0, 2.0]])), model.predict(np.array([[1, 2]])))


# --------------------------------------------------------------------- layers keeping own references
@register
class _KeepsItsKernel(Layer):
    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        self.w = self.add_param("kernel", rng.standard_normal((input_shape[0], 1)).astype(self.dtype))

    def compute_output_shape(self, input_shape):
        return (1,)

    def forward(self, x, *, training=False, cache=None):
        if cache is not None:
            cache["x"] = x
        return x @ self.w

    def backward(self, grad, cache):
        self.grads["kernel"][...] = cache["x"].T @ grad
        return grad @ self.w.T


def test_a_layer_that_keeps_its_own_parameter_reference_is_refused_at_build():
    with pytest.raises(ConfigError, match=r"keeps its own reference to its 'kernel' in attribute 'w'"):
        bn.Sequential([_KeepsItsKernel(input_shape=(3,))])


# --------------------------------------------------------------------- build at construction
def test_a_model_whose_first_layer_declares_its_input_is_built_at_construction(tmp_path):
    model = bn.Sequential([Dense(4, activation="relu", input_dim=3), BatchNormalization(), Dense(2)], seed=0)
    assert model.built and model.output_shape == (2,)
    assert [w.shape for w in model.get_weights()] == [(3, 4), (4,), (4,), (4,), (4,), (4,), (4, 2), (2,)]
    text = model.summary(print_fn=None)
    assert "?" not in text and "(None, 4)" in text and "\nTrainable params: 34 (136.00 B)\n" in text
    model.set_weights([np.ones_like(w) for w in model.get_weights()])
    bn.save(model, tmp_path / "m.barenet")
    np.testing.assert_array_equal(bn.load(tmp_path / "m.barenet").predict(np.ones((1, 3))),
                                  model.predict(np.ones((1, 3))))
    # the same weights as a model built at the first fit (same generator draws)
    late = bn.Sequential([Dense(4, activation="relu"), BatchNormalization(), Dense(2)], seed=0)
    late.build((3,))
    early = bn.Sequential([Dense(4, activation="relu", input_dim=3), BatchNormalization(), Dense(2)], seed=0)
    for a, b in zip(early.get_weights(), late.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_layers_added_to_a_built_model_are_built_and_trained():
    model = bn.Sequential(seed=0)
    model.add(Dense(4, activation="tanh", input_dim=2))
    assert model.built
    model.add(Dense(1))
    assert model.output_shape == (1,) and len(model.get_weights()) == 4
    model.compile("mse", bn.optimizers.SGD(0.1))
    X = RNG.standard_normal((32, 2))
    before = model.get_weights()
    model.fit(X, X.sum(axis=1), epochs=2, verbose=0)
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


# --------------------------------------------------------------------- gradients without a step
def test_compute_gradients_gives_loss_parameter_and_input_gradients_without_a_step():
    model = bn.Sequential([Dense(5, activation="tanh", input_dim=3, l2=0.01), Dense(2, activation="softmax")],
                          seed=0, dtype="float64")
    model.compile("categorical_crossentropy", "adam")
    X, y = RNG.standard_normal((7, 3)), RNG.integers(0, 2, 7)
    before = model.get_weights()
    result = model.compute_gradients(X, y)
    assert list(result.parameters) == list(model.parameters())
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == 0
    # input gradient against central differences
    h, numeric = 1e-6, np.zeros_like(X)
    for idx in np.ndindex(*X.shape):
        up, down = X.copy(), X.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (model.compute_gradients(up, y).loss - model.compute_gradients(down, y).loss) / (2 * h)
    np.testing.assert_allclose(result.inputs, numeric, rtol=1e-6, atol=1e-9)
    assert bn.gradcheck(model, X, y).max_error < 1e-6


# --------------------------------------------------------------------- reduction="sample_weight"
def test_sample_weight_reduction_divides_the_loss_and_the_penalty_by_the_weight_sum():
    """J = (sum_i w_i l_i + lambda ||W||^2) / sum_i w_i, worked by hand for a linear layer and squared error."""
    model = bn.Sequential([Dense(2, input_dim=3, l2=0.3)], seed=0, dtype="float64")
    model.compile("mse", "sgd", reduction="sample_weight")
    X, y, w = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 2)), np.array([0.0, 1.0, 2.5, 0.5, 3.0])
    W, b = model.get_weights()
    residual = X @ W + b - y
    S = w.sum()
    result = model.compute_gradients(X, y, sample_weight=w)
    assert result.loss == pytest.approx((w @ (residual**2).mean(axis=1) + 0.3 * np.sum(W**2)) / S, rel=1e-12)
    np.testing.assert_allclose(result.parameters["layers.0.kernel"],
                               (X.T @ (w[:, None] * residual) + 0.6 * W) / S, rtol=1e-12)  # d/dp mean_j r^2 = r
    np.testing.assert_allclose(result.parameters["layers.0.bias"], w @ residual / S, rtol=1e-12)
    # Integer weights are repeated rows (zero-weight rows dropped); no weights divide the penalty by b.
    counts = np.array([0, 1, 2, 0, 3])
    kept = np.repeat(np.arange(5), counts)
    weighted = model.compute_gradients(X, y, sample_weight=counts)
    repeated = model.compute_gradients(X[kept], y[kept])
    assert weighted.loss == pytest.approx(repeated.loss, rel=1e-12)
    for key, grad in weighted.parameters.items():
        np.testing.assert_allclose(grad, repeated.parameters[key], rtol=1e-12, atol=1e-15)
    model.compile("mse", "sgd")  # back to the default: the penalty is added whole
    assert model.compute_gradients(X[kept], y[kept]).loss == pytest.approx(repeated.loss + 0.3 * np.sum(W**2) * 5 / 6)


def test_an_unknown_reduction_is_refused_and_the_model_keeps_its_compile_settings():
    model = bn.Sequential([Dense(1, input_dim=2)])
    model.compile("mse", "sgd", reduction="sample_weight")
    with pytest.raises(ConfigError, match=r"reduction must be one of \['batch', 'sample_weight'\], got 'rows'"):
        model.compile("mae", "adam", reduction="rows")
    assert model.reduction == "sample_weight" and model.loss.name == "mean_squared_error"


# --------------------------------------------------------------------- named weights
def test_named_weights_cover_parameters_and_buffers_and_set_weights_takes_them():
    model = bn.Sequential([Dense(3, input_dim=2), BatchNormalization(), Dense(1)], seed=0)
    named = model.named_weights()
    assert list(named) == ["layers.0.kernel", "layers.0.bias", "layers.1.gamma", "layers.1.beta",
                           "layers.1.moving_mean", "layers.1.moving_variance", "layers.2.kernel", "layers.2.bias"]
    for a, b in zip(named.values(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    model.set_weights({"layers.1.moving_mean": np.full(3, 7.0)})
    np.testing.assert_array_equal(model.layers[1].buffers["moving_mean"], 7.0)
    with pytest.raises(bn.errors.ShapeError, match=r"unknown names \['layers.9.kernel'\]"):
        model.set_weights({"layers.9.kernel": np.zeros(1)})
    with pytest.raises(bn.errors.ShapeError, match=r"'gamma' \(layers.1.gamma\) has shape \(3,\), got \(2,\)"):
        model.set_weights({"layers.1.gamma": np.zeros(2)})


# --------------------------------------------------------------------- inputs at the edges
def test_predict_on_zero_rows_returns_an_empty_array_of_the_output_shape():
    model = bn.Sequential([Dense(3, input_dim=4), Dense(2)], seed=0)
    out = model.predict(np.empty((0, 4)))
    assert out.shape == (0, 2) and out.dtype == np.float32


# --------------------------------------------------------------------- interrupts
class _InterruptAt(bn.callbacks.Callback):
    """Sends SIGINT to this process from inside the end of an epoch, after the progress line."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)
            self.sent_after_weights = [w.copy() for w in self.model.get_weights()]


def test_ctrl_c_at_the_end_of_an_epoch_keeps_that_epoch_in_history_and_weights(capsys):
    model = bn.Sequential([Dense(4, activation="tanh", input_dim=2), Dense(1)], seed=0)
    model.compile("mse", bn.optimizers.SGD(0.05))
    X = RNG.standard_normal((64, 2))
    interrupt = _InterruptAt(1)
    history = model.fit(X, X[:, 0], epochs=5, batch_size=8, verbose=2, callbacks=[interrupt])
    out, err = capsys.readouterr()
    assert model.interrupted and "training interrupted" in err
    # the user saw two epoch lines; the history, kept epoch and weights all say epoch 2
    assert [line.split(" - ")[0] for line in out.splitlines()] == ["Epoch 1/5", "Epoch 2/5"]
    assert history.epoch == [0, 1] and history.kept_epoch == 1 and len(history.history["loss"]) == 2
    for a, b in zip(model.get_weights(), interrupt.sent_after_weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_ctrl_c_line_goes_where_the_runs_terminate_on_nan_speaks(capsys):
    """A program that words the interruption for its own users (the ``barenet`` command) silences fit's line."""
    model = bn.Sequential([Dense(4, activation="tanh", input_dim=2), Dense(1)], seed=0)
    model.compile("mse", bn.optimizers.SGD(0.05))
    X = RNG.standard_normal((64, 2))
    own = io.StringIO()
    model.fit(X, X[:, 0], epochs=5, batch_size=8, verbose=0,
              callbacks=[_InterruptAt(1), bn.callbacks.TerminateOnNaN(stream=own)])
    assert model.interrupted and capsys.readouterr().err == ""
    assert own.getvalue() == ("\nbarenet: training interrupted during epoch 3; fit returns the history of the "
                              "completed epochs and the model keeps their weights\n")


def test_categorical_crossentropy_takes_labels_as_a_column():
    model = bn.Sequential([Dense(3, activation="softmax", input_dim=2)], seed=0)
    model.compile("categorical_crossentropy", "sgd", metrics=["accuracy"])
    X, labels = RNG.standard_normal((10, 2)), RNG.integers(0, 3, 10)
    assert model.evaluate(X, labels[:, None]) == model.evaluate(X, labels)


# --------------------------------------------------------------------- many classes
def test_integer_labels_over_many_classes_stay_labels_in_bounded_memory():
    import tracemalloc

    classes, n = 30_000, 1_000
    model = bn.Sequential([Dense(classes, activation="softmax", input_dim=4)], seed=0)
    model.compile("sparse_categorical_crossentropy", "sgd", metrics=["accuracy", "f1"])
    X, labels = RNG.standard_normal((n, 4)), RNG.integers(0, classes, n)
    targets = model.check_targets(labels, n)
    assert targets.dtype == np.int64 and targets.shape == (n,)
    model.fit(X[:10], labels[:10], epochs=1, batch_size=10, verbose=0)  # imports and compiles outside the trace
    tracemalloc.start()
    history = model.fit(X, labels, epochs=1, batch_size=10, verbose=0, class_weight={0: 2.0})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # classes x classes (an identity matrix) would be 3.35 GiB and n x classes (one-hot rows or an epoch's
    # probabilities) 120 MB; a batch of 10 rows of 30,000 classes is 1.2 MB per array
    assert peak < 12 * 2**20, peak
    assert set(history.history) == {"loss", "accuracy", "f1"}
    logs = model.evaluate(X[:50], labels[:50])
    probs = model.predict(X[:50])
    expected = -np.mean(np.log(np.maximum(probs[np.arange(50), labels[:50]], 1e-7)))
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    assert logs["accuracy"] == np.mean(probs.argmax(axis=1) == labels[:50])


def test_compile_documents_every_name_it_accepts():
    doc = bn.Sequential.compile.__doc__
    for table in (bn.losses._BY_NAME, bn.metrics._BY_NAME, bn.optimizers._BY_NAME):
        for name in table:
            assert f'"{name}"' in doc, name
    for section in ("Returns", "Raises"):
        assert section in bn.Sequential.fit.__doc__


def test_restored_best_weights_are_the_kept_epoch_of_the_history():
    X = RNG.standard_normal((40, 2))
    model = bn.Sequential([Dense(8, activation="tanh", input_dim=2), Dense(1)], seed=0)
    model.compile("mse", bn.optimizers.SGD(0.5))
    stopper = bn.callbacks.EarlyStopping("val_loss", patience=2, restore_best_weights=True)
    history = model.fit(X, X[:, 0] * 3, epochs=40, validation_split=0.25, verbose=0, callbacks=[stopper])
    assert history.kept_epoch == stopper.best_epoch == int(np.argmin(history.history["val_loss"]))
    assert history.kept_epoch < history.epoch[-1]
