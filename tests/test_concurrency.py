"""One model shared by several Python threads, and what a model holds after inference.

A layer call keeps nothing on the layer (:mod:`barenet.layers.base`), so ``predict`` and ``evaluate`` on one
model from several threads give each thread exactly the single-threaded result, models trained side by side
in threads train as they do alone, and a prediction leaves nothing behind but its output. These tests involve
threads: run them 200 times in a row before changing them
(``python -m pytest tests/test_concurrency.py -n 0 -p no:randomly --count 200``).
"""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import barenet as bn
from barenet.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, ReLU

THREADS = 4


def _mlp(seed: int = 0) -> bn.Sequential:
    model = bn.Sequential([Dense(32, activation="relu", input_dim=8), Dropout(0.1), Dense(16), ReLU(),
                           Dense(3, activation="softmax")], seed=seed, dtype="float64")
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def _cnn(seed: int = 0) -> bn.Sequential:
    model = bn.Sequential([Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 2)),
                           BatchNormalization(), MaxPooling2D(2), Flatten(), Dense(3, activation="softmax")],
                          seed=seed, dtype="float64")
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def _transformer(seed: int = 0) -> bn.Model:
    """A pre-norm Transformer block (causal self-attention, a GELU feed-forward layer) and a classifier: the
    attention heads' compiled moves, the fused bias + GELU and the threaded loss, called from several threads."""
    L = bn.layers
    x = bn.Input(shape=(6, 8))
    a = L.LayerNormalization()(x)
    h = L.Add()([x, L.MultiHeadAttention(2, 4)(a, a, use_causal_mask=True)])
    h = L.Add()([h, L.Dense(8)(L.Dense(16, activation="gelu")(L.LayerNormalization()(h)))])
    out = L.Dense(3, activation="softmax")(L.GlobalAveragePooling1D()(h))
    model = bn.Model(x, out, seed=seed, dtype="float64")
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


MODELS = {"mlp": (_mlp, (8,)), "cnn": (_cnn, (8, 8, 2)), "transformer": (_transformer, (6, 8))}


def _data(sample_shape: tuple[int, ...], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *sample_shape)), rng.integers(0, 3, n)


def _blas_threads() -> dict[str, int]:
    """Threads of every BLAS/OpenMP library loaded, by file."""
    return {info["filepath"]: info["num_threads"] for info in threadpool_info()}


def _in_threads(work) -> list:
    """Run ``work(i)`` in :data:`THREADS` threads started together; re-raise the first error."""
    results: list = [None] * THREADS
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_one_model_predicts_and_evaluates_from_four_threads_and_models_train_side_by_side(kind):
    make, shape = MODELS[kind]
    blas_before = _blas_threads()
    shared = make()
    shared.fit(*_data(shape, 64, 0), epochs=1, batch_size=16, verbose=0)  # moving statistics away from the start
    rows = {"mlp": 4000, "cnn": 60, "transformer": 2000}[kind]  # the MLP's and Transformer's products split
    inputs = [_data(shape, rows + 7 * i, 10 + i) for i in range(THREADS)]
    expected_predictions = [shared.predict(X) for X, _ in inputs]
    expected_scores = [shared.evaluate(X, y) for X, y in inputs]
    train = [_data(shape, 40, 20 + i) for i in range(THREADS)]

    def fit_alone(i: int) -> list[np.ndarray]:
        model = make(seed=i)
        model.fit(*train[i], epochs=2, batch_size=8, verbose=0)
        return model.get_weights()

    expected_weights = [fit_alone(i) for i in range(THREADS)]

    def work(i: int):
        X, y = inputs[i]
        outputs = [(shared.predict(X), shared.evaluate(X, y)) for _ in range(5)]
        return outputs, fit_alone(i)

    for i, (outputs, weights) in enumerate(_in_threads(work)):
        for prediction, scores in outputs:
            np.testing.assert_array_equal(prediction, expected_predictions[i])
            assert scores == expected_scores[i]
        for got, want in zip(weights, expected_weights[i], strict=True):
            np.testing.assert_array_equal(got, want)
    after = _blas_threads()
    assert {path: after[path] for path in blas_before} == blas_before


def test_a_layer_called_from_threads_in_training_mode_keeps_each_call_apart():
    """The lower level: several threads each running forward and backward through one layer at once."""
    layer = Dense(5, activation="relu")
    layer.build((6,), np.random.default_rng(0), "float64")
    xs = [np.random.default_rng(i).standard_normal((30 + i, 6)) for i in range(THREADS)]

    def call(x):
        cache = bn.layers.Cache()
        y = layer.forward(x, training=True, cache=cache)
        return y, layer.backward(np.ones_like(y), cache)

    expected = [call(x) for x in xs]
    for i, (y, dx) in enumerate(_in_threads(lambda i: call(xs[i]))):
        np.testing.assert_array_equal(y, expected[i][0])
        np.testing.assert_array_equal(dx, expected[i][1])


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_predict_and_evaluate_hold_no_memory_after_they_return(kind):
    """Inference keeps nothing for a backward pass that will not come: what is allocated during ``predict``
    and still held afterwards is its output and at most a small constant (a CNN once kept its columns,
    batch-normalization inputs and activations: hundreds of MiB for a large batch)."""
    make, shape = MODELS[kind]
    model = make()
    X, y = _data(shape, 512, 1)
    model.predict(X)  # compiled kernels and the thread pool exist before measuring
    model.evaluate(X, y)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = model.predict(X)
        model.evaluate(X, y)
        held = tracemalloc.get_traced_memory()[0] - before - out.nbytes
    finally:
        tracemalloc.stop()
    assert held < 256 * 1024, f"{held} bytes held after predict and evaluate"
