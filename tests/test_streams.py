"""fit, evaluate and predict on streams of batches: datasets, generator functions, iterables and iterators.

A stream trains exactly as the same batches given as arrays do (bit for bit without shuffling), with the
same callbacks, progress, class and sample weights, early stopping, divergence and Ctrl-C behaviour; bad
batches raise a StreamError naming the stream, epoch and batch, and the model keeps its last completed epoch.
The Ctrl-C test involves a signal and a prefetch thread: run it 200 times in a row before changing it
(``python -m pytest tests/test_streams.py -n 0 -p no:randomly --count 200 -k ctrl_c``).
"""

import io
import os
import signal
import threading

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, StreamError
from barenet.layers import Dense


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def _model(seed=1, metrics=("accuracy", "f1")):
    model = bn.Sequential([Dense(8, activation="relu", input_dim=4), Dense(2, activation="softmax")], seed=seed)
    model.compile("categorical_crossentropy", "adam", metrics=list(metrics))
    return model


def _same_weights(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights(), strict=True))


def _batches(X, y, w=None, size=32):
    def make():
        for i in range(0, len(X), size):
            yield (X[i:i + size], y[i:i + size]) if w is None else (X[i:i + size], y[i:i + size], w[i:i + size])
    return make


# --------------------------------------------------------------------- same results as arrays
def test_a_dataset_trains_bit_for_bit_as_the_same_arrays_unshuffled():
    X, y = _data()
    a, b = _model(), _model()
    ha = a.fit(X, y, epochs=3, batch_size=32, shuffle=False, verbose=0, validation_data=(X[:50], y[:50]))
    hb = b.fit(bn.data.from_arrays(X, y, block_rows=7), epochs=3, batch_size=32, verbose=0,
               validation_data=bn.data.from_arrays(X[:50], y[:50]))
    assert _same_weights(a, b)
    assert ha.history == hb.history
    assert hb.params == {"epochs": 3, "batch_size": 32, "samples": 300, "steps": 10}


def test_generator_function_and_one_shot_iterator_train_as_arrays():
    X, y = _data()
    a = _model()
    a.fit(X, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    b = _model()
    b.fit(_batches(X, y), epochs=2, verbose=0)
    assert _same_weights(a, b)
    c = _model()
    history = c.fit(_batches(X, y)(), epochs=2, steps_per_epoch=10, verbose=0)
    d = _model()
    d.fit(X, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    # the iterator gives one pass: the first epoch takes it all, the second finds nothing and stops training
    assert history.epoch == [0] and _same_weights(c, d)


def test_steps_per_epoch_goes_on_where_the_last_epoch_stopped_and_restarts_a_reiterable_stream():
    X, y = _data(n=100)
    seen = []

    class Count(bn.callbacks.Callback):
        def on_batch_end(self, batch, logs=None):
            seen.append(logs["size"])

    model = _model()
    history = model.fit(bn.data.from_arrays(X, y).batch(32), epochs=3, steps_per_epoch=3, verbose=0,
                        callbacks=[Count()])
    # passes of 32, 32, 32, 4 rows: epoch 1 takes 32 32 32, epoch 2 takes 4 then 32 32 from a new pass ...
    assert seen == [32, 32, 32, 4, 32, 32, 32, 4, 32] and history.epoch == [0, 1, 2]


def test_sample_weight_as_third_item_and_class_weight_match_arrays():
    X, y = _data()
    w = np.random.default_rng(3).uniform(0.5, 2.0, len(X))
    a, b = _model(), _model()
    a.fit(X, y, epochs=2, batch_size=32, shuffle=False, verbose=0, sample_weight=w, class_weight={1: 3.0})
    b.fit(_batches(X, y, w), epochs=2, verbose=0, class_weight={1: 3.0})
    assert _same_weights(a, b)


def test_evaluate_and_predict_take_streams():
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=1, verbose=0)
    assert model.evaluate(bn.data.from_arrays(X, y).batch(1024)) == model.evaluate(X, y)
    np.testing.assert_array_equal(model.predict(bn.data.from_arrays(X).batch(64)), model.predict(X))
    np.testing.assert_array_equal(model.predict(_batches(X, y), steps=2), model.predict(X[:64]))


def test_regression_metrics_of_a_stream_match_the_whole_arrays():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((250, 3))
    y = np.column_stack([X @ [1.0, -2.0, 0.5], X[:, 0] ** 2]) + 3.0
    model = bn.Sequential([Dense(2, input_dim=3)], seed=0, dtype="float64")
    model.compile("mse", "sgd", metrics=["mse", "mae", "r2"])
    whole = model.evaluate(X, y)
    streamed = model.evaluate(bn.data.from_arrays(X, y).batch(37))
    assert streamed.keys() == whole.keys()
    for key in whole:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-12)


def test_a_model_of_two_outputs_reports_the_same_figures_from_a_stream():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((120, 3))
    labels, values = (X[:, 0] > 0).astype(np.int64), X[:, 1:2] * 2
    inputs = bn.Input((3,))
    hidden = Dense(6, activation="tanh")(inputs)
    model = bn.Model(inputs, [Dense(2, activation="softmax", name="cls")(hidden), Dense(1, name="reg")(hidden)],
                     seed=0)
    model.compile(loss=["categorical_crossentropy", "mse"], optimizer="sgd", metrics=[["accuracy"], ["mae"]])
    whole = model.evaluate(X, [labels, values])
    streamed = model.evaluate(bn.data.from_arrays(X, (labels, values)).batch(1024))
    assert streamed.keys() == whole.keys()
    for key in whole:
        assert streamed[key] == pytest.approx(whole[key], rel=1e-6)


def test_early_stopping_restores_the_best_epoch_of_a_stream():
    X, y = _data()
    model = _model()
    stop = bn.callbacks.EarlyStopping(monitor="val_loss", patience=0, restore_best_weights=True)
    history = model.fit(bn.data.from_arrays(X, y).shuffle(100, seed=0), epochs=40, verbose=0, callbacks=[stop],
                        validation_data=_batches(X[:60], 1 - y[:60]))  # flipped labels: val_loss soon rises
    assert len(history.epoch) < 40 and history.kept_epoch == stop.best_epoch


def test_progress_bar_shows_rows_per_second_with_eta_when_the_size_is_known():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    X, y = _data()
    for stream, expect_eta in ((bn.data.from_arrays(X, y).batch(10), True), (_batches(X, y, size=10), False)):
        out = Tty()
        bar = bn.callbacks.ProgressBar(verbose=1, stream=out)
        bar._last_draw = 0.0
        _model().fit(stream, epochs=1, verbose=0, callbacks=[bar])
        text = out.getvalue()
        assert "rows/s" in text
        assert ("ETA " in text) == expect_eta
        assert ("] 1/30 - loss:" if expect_eta else " 1 batch - loss:") in text


# --------------------------------------------------------------------- bad input
def test_options_for_arrays_are_refused_with_a_stream():
    X, y = _data()
    stream = bn.data.from_arrays(X, y)
    with pytest.raises(ConfigError, match="y is for arrays"):
        _model().fit(stream, y)
    with pytest.raises(ConfigError, match="validation_split is for arrays"):
        _model().fit(stream, validation_split=0.2)
    with pytest.raises(ConfigError, match="steps_per_epoch is for streams"):
        _model().fit(X, y, steps_per_epoch=3)


@pytest.mark.parametrize("bad, message", [
    ("nan", r"epoch 2, batch 3 \(from row 64 of the epoch\): x contains 1 NaN"),
    ("shape", r"epoch 2, batch 3 .*x has shape \(32, 5\)"),
    ("dtype", r"epoch 2, batch 3 .*x must be numeric"),
    ("tuple", r"epoch 2, batch 3 \(from row 64 of the epoch\) is a tuple of 4 items; expected \(x, y\)"),
    ("raise", r"epoch 2, batch 3: the stream raised OSError: disk gone"),
])
def test_a_bad_batch_mid_stream_names_it_and_the_model_keeps_the_last_epoch(bad, message):
    X, y = _data()
    epochs_seen = []

    def stream():
        epochs_seen.append(1)
        for i, start in enumerate(range(0, len(X), 32)):
            x, t = X[start:start + 32], y[start:start + 32]
            if len(epochs_seen) == 2 and i == 2:
                if bad == "nan":
                    x = x.copy()
                    x[5, 2] = np.nan
                elif bad == "shape":
                    x = np.hstack([x, x[:, :1]])
                elif bad == "dtype":
                    x = np.full(x.shape, "a", dtype=object)
                elif bad == "tuple":
                    yield x, t, None, None
                    continue
                else:
                    raise OSError("disk gone")
            yield x, t

    model = _model()
    with pytest.raises(StreamError, match=message) as info:
        model.fit(stream, epochs=3, verbose=0)
    assert "generator function" in str(info.value)
    reference = _model()
    reference.fit(X, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert _same_weights(model, reference) and model.history.kept_epoch == 0


def test_a_stream_that_diverges_keeps_finite_weights():
    X, y = _data()
    model = bn.Sequential([Dense(8, activation="relu", input_dim=4), Dense(1)], seed=0)
    model.compile("mse", bn.optimizers.SGD(1e6))
    err = io.StringIO()
    history = model.fit(_batches(X, y.astype(float) * 1e3), epochs=5, verbose=0,
                        callbacks=[bn.callbacks.TerminateOnNaN(stream=err)])
    assert history.diverged_at is not None and all(np.isfinite(w).all() for w in model.get_weights())


# --------------------------------------------------------------------- Ctrl-C with a prefetch thread
class _InterruptAtBatch(bn.callbacks.Callback):
    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.weights = [w.copy() for w in self.model.get_weights()]

    def on_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_mid_epoch_of_a_prefetched_stream_keeps_the_last_epoch_and_stops_the_thread():
    X, y = _data()
    before = threading.active_count()
    model = _model()
    interrupt = _InterruptAtBatch(1, 4)
    stream = bn.data.from_arrays(X, y, block_rows=16).shuffle(64, seed=0).batch(16).prefetch(2)
    history = model.fit(stream, epochs=4, verbose=0, callbacks=[interrupt, bn.callbacks.TerminateOnNaN(io.StringIO())])
    assert model.interrupted and history.epoch == [0] and history.kept_epoch == 0
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), interrupt.weights, strict=True))
    assert threading.active_count() == before
