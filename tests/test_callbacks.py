"""Callbacks driven by real (small) training runs."""

import io
import re

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError
from barenet.models.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateScheduler,
    ProgressBar,
    ReduceLROnPlateau,
    TerminateOnNaN,
)


def _regression(seed=0, n=64):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, X @ np.array([1.0, 2.0, -1.0]) + 0.1 * rng.standard_normal(n)


def _model(optimizer=None, seed=0):
    model = bn.Sequential([bn.layers.Dense(8, activation="tanh", input_dim=3), bn.layers.Dense(1)],
                          seed=seed, dtype="float64")
    model.compile("mse", optimizer or bn.optimizers.SGD(0.01))
    return model


class Scripted(Callback):
    """Writes ``values[epoch]`` into the logs under ``key`` (placed before the callback under test),
    and records the weights at the end of each epoch."""

    def __init__(self, key, values):
        self.key, self.values, self.weights = key, list(values), []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.get_weights())


@pytest.mark.parametrize("patience, stop_epoch", [(0, 4), (1, 4), (2, 5), (3, 6)])
def test_early_stopping_waits_patience_epochs_without_improvement(patience, stop_epoch):
    # best at epoch 3; with patience p, training stops p epochs later (at least one).
    score = Scripted("score", [5, 4, 3, 2, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0])
    stopper = EarlyStopping(monitor="score", patience=patience, mode="min")
    history = _model().fit(*_regression(), epochs=10, callbacks=[score, stopper], verbose=0)
    assert stopper.best_epoch == 3 and stopper.best == 2
    assert stopper.stopped_epoch == stop_epoch
    assert history.epoch == list(range(stop_epoch + 1))


def test_history_epochs_are_positions_and_printed_epochs_count_from_1():
    """One convention, stated in History's docstring: attributes index the per-epoch lists (0-based, as
    Keras's ``history.epoch``), every printed line counts from 1."""
    score = Scripted("score", [5, 4, 1, 2, 3, 4, 5])
    out = io.StringIO()
    history = _model().fit(*_regression(), epochs=7, verbose=0,
                           callbacks=[score, EarlyStopping("score", patience=2, mode="min",
                                                           restore_best_weights=True),
                                      ProgressBar(verbose=2, stream=out)])
    lines = out.getvalue().splitlines()
    assert history.kept_epoch == 2 and history.history["score"][history.kept_epoch] == 1
    assert lines[history.kept_epoch].startswith(f"Epoch {history.kept_epoch + 1}/7 ")
    assert "score: 1.0000" in lines[history.kept_epoch]


def test_early_stopping_restores_the_best_epochs_weights():
    score = Scripted("score", [5, 4, 1, 2, 3, 4, 5])
    model = _model()
    model.fit(*_regression(), epochs=7, callbacks=[score, EarlyStopping("score", patience=2, mode="min",
                                                                         restore_best_weights=True)], verbose=0)
    assert len(score.weights) == 5  # stopped after epoch 4
    for got, best in zip(model.get_weights(), score.weights[2], strict=True):
        np.testing.assert_array_equal(got, best)
    assert not np.array_equal(score.weights[2][0], score.weights[4][0])


def test_early_stopping_without_restore_keeps_the_last_weights():
    score = Scripted("score", [5, 4, 1, 2, 3, 4, 5])
    model = _model()
    model.fit(*_regression(), epochs=7, callbacks=[score, EarlyStopping("score", patience=2, mode="min")], verbose=0)
    np.testing.assert_array_equal(model.get_weights()[0], score.weights[-1][0])


def test_early_stopping_on_real_validation_loss_in_max_mode_for_accuracy():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    y = (X[:, 0] > 0).astype(int)
    model = bn.Sequential([bn.layers.Dense(1, activation="sigmoid", input_dim=3)], seed=0)
    model.compile("binary_crossentropy", bn.optimizers.SGD(0.5), metrics=["accuracy"])
    stopper = EarlyStopping(monitor="val_accuracy", patience=1)
    assert stopper.mode == "max"
    history = model.fit(X, y, epochs=200, validation_split=0.25, callbacks=[stopper], verbose=0)
    assert len(history.epoch) < 200  # accuracy saturates, so training stops
    assert stopper.best == max(history.history["val_accuracy"])


def test_missing_monitor_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"EarlyStopping monitors 'val_loss', but the epoch logs only have "
                                          r"\['loss'\] \(pass validation_data or validation_split to fit\)"):
        _model().fit(*_regression(), epochs=2, callbacks=[EarlyStopping()], verbose=0)
    with pytest.raises(ConfigError, match=r"ReduceLROnPlateau monitors 'val_mae', but the epoch logs only have"):
        _model().fit(*_regression(), epochs=2, callbacks=[ReduceLROnPlateau("val_mae")], verbose=0)


def test_reduce_lr_on_plateau_with_cooldown_and_floor():
    # improvements at epochs 0-1, then a plateau
    score = Scripted("score", [3, 2, 2, 2, 2, 2, 2, 2, 2, 2])
    reducer = ReduceLROnPlateau("score", factor=0.5, patience=2, cooldown=2, min_lr=0.03, mode="min")
    model = _model(bn.optimizers.SGD(0.1))
    history = model.fit(*_regression(), epochs=10, callbacks=[score, reducer], verbose=0)
    # Epochs 2 and 3 do not improve: halve at 3. The cooldown ends during epoch 5 (which counts, as in Keras),
    # so 5 and 6 wait and 6 halves again, to the floor 0.03 rather than 0.025; 9 reduces but stays at the floor.
    assert history.history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.03, 0.03, 0.03, 0.03])
    assert model.optimizer.learning_rate == pytest.approx(0.03)


def test_learning_rate_scheduler_sets_the_rate_each_epoch():
    model = _model(bn.optimizers.SGD(0.1))
    seen = []

    class Spy(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(self.model.optimizer.learning_rate)

    history = model.fit(*_regression(), epochs=4, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 / (1 + epoch)), Spy()])
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])
    assert history.history["lr"] == pytest.approx(seen)


def test_learning_rate_scheduler_rejects_non_positive_rates():
    # the schedule gets the 0-based epoch, as in Keras; the message names it as printed, from 1
    with pytest.raises(ConfigError, match=r"^LearningRateScheduler: schedule\(1, lr\) returned learning rate 0.0 "
                                          r"for epoch 2; expected > 0$"):
        _model().fit(*_regression(), epochs=3, verbose=0,
                     callbacks=[LearningRateScheduler(lambda epoch, lr: 0.1 if epoch == 0 else 0.0)])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_diverging_run_stops_cleanly_with_a_message(capsys):
    model = _model(bn.optimizers.SGD(1e3))
    history = model.fit(*_regression(), epochs=50, batch_size=16, verbose=0)
    err = capsys.readouterr().err
    match = re.search(r"barenet: training diverged at epoch (\d+) \(loss [^)]+\); the model keeps the weights of "
                      r"epoch (\d+)", err)
    assert match, err
    last_epoch = int(match.group(1)) - 1
    assert history.epoch[-1] == history.diverged_at == last_epoch < 49
    assert history.kept_epoch == int(match.group(2)) - 1 == last_epoch - 1
    # the diverged epoch's loss is past the documented bound (or not finite); the ones before are not
    losses = history.history["loss"]
    assert not losses[-1] < bn.models.training.DIVERGENCE_FACTOR * losses[0]
    assert all(np.isfinite(losses[:-1]))
    # the model holds the finite weights of the kept epoch
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_terminate_on_nan_given_by_the_user_is_used_and_records_where():
    stream = io.StringIO()
    stopper = TerminateOnNaN(stream=stream)
    model = bn.Sequential([bn.layers.Dense(8, activation="relu", input_dim=3), bn.layers.Dense(1)], seed=0)
    model.compile("mse", bn.optimizers.SGD(1e3))  # float32 overflows to inf within the first epoch
    history = model.fit(*_regression(), epochs=50, batch_size=16, callbacks=[stopper], verbose=0)
    epoch, batch = stopper.terminated_at
    assert history.diverged_at == epoch and history.kept_epoch is None  # no finite epoch: initial weights
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert f"at epoch {epoch + 1}, batch {batch + 1}; training stopped" in stream.getvalue()


def test_progress_output_verbose_2_is_one_line_per_epoch(capsys):
    model = _model()
    model.compile("mse", bn.optimizers.SGD(0.01), metrics=["mae"])
    model.fit(*_regression(), epochs=3, validation_split=0.25, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines, start=1):
        assert re.fullmatch(rf"Epoch {i}/3 - \d+\.\d\ds - loss: \d+\.\d{{4}} - mae: \d+\.\d{{4}} - "
                            r"val_loss: \d+\.\d{4} - val_mae: \d+\.\d{4}", line), line


def test_progress_output_verbose_1_without_a_terminal_prints_epoch_lines(capsys):
    _model().fit(*_regression(), epochs=2, verbose=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "Epoch 2/2"]


def test_progress_bar_on_a_terminal_redraws_in_place():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    _model().fit(*_regression(n=64), epochs=2, batch_size=16, verbose=0, callbacks=[ProgressBar(1, stream=out)])
    text = out.getvalue()
    assert "\rEpoch 1/2 [" in text and "4/4 - loss: " in text
    assert "[==============================] 4/4" in text
    assert text.count("\n") == 2 and text.endswith("\x1b[K\n")


def test_silent_fit_prints_nothing(capsys):
    _model().fit(*_regression(), epochs=2, verbose=0)
    assert capsys.readouterr() == ("", "")


def test_callback_arguments_are_checked():
    with pytest.raises(ConfigError, match=r"EarlyStopping patience must be >= 0, got -1"):
        EarlyStopping(patience=-1)
    with pytest.raises(ConfigError, match=r"mode must be 'auto', 'min' or 'max', got 'up'"):
        EarlyStopping(mode="up")
    with pytest.raises(ConfigError, match=r"ReduceLROnPlateau factor must be in \(0, 1\), got 2"):
        ReduceLROnPlateau(factor=2)
    assert repr(EarlyStopping(patience=3)).startswith("EarlyStopping(monitor='val_loss', patience=3")
