"""CSVLogger on real training runs: the file read back with the csv module holds History's values."""

import csv

import numpy as np
import pytest

import barenet as bn
from barenet.callbacks import CSVLogger, LearningRateScheduler
from barenet.errors import ConfigError, OutputError


def _data(seed=0, n=48):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] - X[:, 2] > 0).astype(int)


def _model(seed=0):
    model = bn.Sequential([bn.layers.Dense(6, "tanh", input_dim=3), bn.layers.Dense(2, "softmax")], seed=seed,
                          dtype="float64")
    model.compile("categorical_crossentropy", bn.optimizers.SGD(0.1), metrics=["accuracy"])
    return model


def _read(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_rows_hold_the_history_of_each_epoch(tmp_path):
    X, y = _data()
    path = tmp_path / "log.csv"
    schedule = LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    history = _model().fit(X, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0,
                           callbacks=[schedule, CSVLogger(path)])
    header, *rows = _read(path)
    assert header == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert [int(row[0]) for row in rows] == history.epoch == [0, 1, 2]
    for column, name in enumerate(header[1:], start=1):
        assert [float(row[column]) for row in rows] == history.history[name], name  # repr round-trips exactly


def test_append_continues_the_table_without_a_second_header(tmp_path):
    X, y = _data()
    path = tmp_path / "log.csv"
    model = _model()
    model.fit(X, y, epochs=2, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    second = model.fit(X, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";", append=True)])
    header, *rows = _read(path, ";")
    assert header == ["epoch", "accuracy", "loss"] and len(rows) == 3
    assert float(rows[2][2]) == second.history["loss"][0]
    model.fit(X, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator=";")])
    assert len(_read(path, ";")) == 2  # without append the file is replaced


def test_append_to_an_empty_file_writes_the_header(tmp_path):
    X, y = _data()
    path = tmp_path / "log.tsv"
    path.write_text("")
    _model().fit(X, y, epochs=1, verbose=0, callbacks=[CSVLogger(path, separator="\t", append=True)])
    assert _read(path, "\t")[0] == ["epoch", "accuracy", "loss"]


def test_a_value_an_epoch_lacks_is_na(tmp_path):
    class LateValue(bn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["extra"] = 1.0 if epoch == 0 else None
            if epoch:
                del logs["extra"]

    X, y = _data()
    path = tmp_path / "log.csv"
    _model().fit(X, y, epochs=2, verbose=0, callbacks=[LateValue(), CSVLogger(path)])
    header, first, second = _read(path)
    assert header == ["epoch", "accuracy", "extra", "loss"] and first[2] == "1.0" and second[2] == "NA"


def test_bad_arguments_and_paths_are_refused(tmp_path):
    for separator in ("", ";;", "\n", '"', 1):
        with pytest.raises(ConfigError, match="separator must be one character"):
            CSVLogger(tmp_path / "x.csv", separator=separator)
    X, y = _data()
    with pytest.raises(OutputError, match="does not exist"):
        _model().fit(X, y, epochs=1, verbose=0, callbacks=[CSVLogger(tmp_path / "missing" / "log.csv")])
    with pytest.raises(OutputError, match="is a folder"):
        _model().fit(X, y, epochs=1, verbose=0, callbacks=[CSVLogger(tmp_path)])


def test_paths_no_system_call_takes_are_output_errors(tmp_path):
    """A NUL character or a name longer than the file system allows: OutputError, for every barenet output."""
    X, y = _data()
    model = _model()
    for path in (tmp_path / "a\x00b.csv", tmp_path / ("x" * 300 + ".csv"), tmp_path / ("x" * 300) / "log.csv"):
        with pytest.raises(OutputError, match="cannot write CSV log"):
            model.fit(X, y, epochs=1, verbose=0, callbacks=[CSVLogger(path)])
        with pytest.raises(OutputError, match="cannot write model file"):
            bn.save(model, path.with_suffix(".barenet"))
