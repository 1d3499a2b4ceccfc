"""How ``barenet train``, ``tune``, ``predict`` and ``evaluate`` train, keep and refuse models: real CSV
files and real ``barenet`` subprocesses (the style of ``test_cli.py``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import barenet as bn
from barenet.errors import BarenetError


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "barenet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess, status: int, fragment: str) -> str:
    """The single ``barenet: error:`` line of ``result`` (warnings may precede it); checks status and text."""
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("barenet: warning: ")]
    assert len(lines) == 1 and lines[0].startswith("barenet: error: "), result.stderr
    assert fragment in lines[0], lines[0]
    return lines[0]


def weather(n: int, seed: int = 0) -> pd.DataFrame:
    """A daily weather table like vega_datasets' seattle-weather.csv: a date column (every value
    distinct), three numeric columns, a wind column written with units and a text label."""
    rng = np.random.default_rng(seed)
    day = np.arange(n)
    temp_max = 15 + 8 * np.sin(2 * np.pi * day / 365) + rng.normal(0, 2, n)
    precipitation = np.maximum(rng.normal(2, 4, n), 0).round(1)
    label = np.where(precipitation > 3, "rain", np.where(temp_max > 18, "sun", "fog"))
    return pd.DataFrame({
        "date": pd.date_range("2012-01-01", periods=n).strftime("%Y/%m/%d"),
        "precipitation": precipitation,
        "temp_max": temp_max.round(1),
        "temp_min": (temp_max - 7 + rng.normal(0, 1, n)).round(1),
        "wind": [f"{w:.1f} m/s" for w in rng.gamma(3, 1.2, n)],
        "weather": label,
    })


def correlated_line(n: int = 400) -> pd.DataFrame:
    """``y = 3 (x1 - x2)`` with x1, x2 correlated 0.9: plain SGD at a learning rate just above the
    stability limit of the steep direction first fits y, then slowly blows up."""
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=n), rng.normal(size=n)
    x1, x2 = z1, 0.9 * z1 + np.sqrt(1 - 0.81) * z2
    return pd.DataFrame({"x1": x1.round(4), "x2": x2.round(4), "y": (3 * (x1 - x2) + rng.normal(0, 0.1, n)).round(4)})


# ----------------------------------------------------------------- item 7: the kept epoch
def test_early_stopping_names_and_records_the_epoch_it_keeps(tmp_path):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(120, 6)).round(4), columns=[f"x{i}" for i in range(6)])
    frame["y"] = (frame["x0"] + rng.normal(0, 1.0, 120)).round(4)  # noisy: a wide network overfits soon
    data, model = tmp_path / "noisy.csv", tmp_path / "noisy.barenet"
    frame.to_csv(data, index=False)
    result = cli("train", data, "--target", "y", "--out", model, "--layers", "128,128", "--lr", "0.01",
                 "--epochs", "200", "--early-stopping", "4")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((Path(f"{model}.report") / "metrics.json").read_text())
    kept, ran = metrics["kept_epoch"], metrics["epochs_run"]
    assert metrics["stopped"] == "early_stopping" and ran == kept + 4 < 200
    told = re.search(r"early stopping: kept epoch (\d+) \(.*val_loss ([0-9.]+)", result.stdout)
    assert told and int(told.group(1)) == kept, result.stdout
    loaded = bn.load(model)
    history = loaded.metadata["history"]
    assert loaded.metadata["fit"]["kept_epoch"] == kept and len(history["val_loss"]) == ran
    assert metrics["kept_logs"]["val_loss"] == min(history["val_loss"]) == history["val_loss"][kept - 1]
    assert float(told.group(2)) == pytest.approx(metrics["kept_logs"]["val_loss"], abs=1e-4)
    # the saved weights are the kept epoch's: the report's validation R2 is that epoch's val_r2
    # (R2 does not change when the target is standardized), not the last epoch's
    assert metrics["validation"]["r2"] == pytest.approx(metrics["kept_logs"]["val_r2"], abs=1e-4)
    assert abs(history["val_r2"][-1] - history["val_r2"][kept - 1]) > 1e-3


# ----------------------------------------------------------------- item 15: divergence
def test_training_that_diverges_at_once_writes_nothing_and_exits_1(tmp_path):
    data, model = tmp_path / "seattle.csv", tmp_path / "m.barenet"
    weather(300).to_csv(data, index=False)
    for target in ("temp_max", "weather"):
        result = cli("train", data, "--target", target, "--lr", "1e6", "--optimizer", "sgd", "--out", model)
        one_error_line(result, 1, "training diverged at epoch 1")
        assert "nothing was written" in result.stderr
        assert list(tmp_path.iterdir()) == [data]


def test_training_that_diverges_later_saves_the_best_epoch_before_it(tmp_path):
    data, model = tmp_path / "line.csv", tmp_path / "line.barenet"
    correlated_line().to_csv(data, index=False)
    result = cli("train", data, "--target", "y", "--layers", "none", "--optimizer", "sgd", "--lr", "0.55",
                 "--batch-size", "64", "--epochs", "400", "--out", model)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    told = re.search(r"training diverged at epoch (\d+) \(.*\); saved the model of epoch (\d+) \(", result.stdout)
    assert told, result.stdout
    diverged, kept = int(told.group(1)), int(told.group(2))
    assert kept < diverged
    metrics = json.loads((Path(f"{model}.report") / "metrics.json").read_text())
    assert (metrics["stopped"], metrics["kept_epoch"], metrics["diverged_at_epoch"]) == ("diverged", kept, diverged)
    assert metrics["epochs_run"] <= diverged and np.isfinite(metrics["validation"]["r2"])
    loaded = bn.load(model)
    assert loaded.metadata["fit"] == {k: metrics[k] for k in loaded.metadata["fit"]}
    assert all(np.isfinite(w).all() for w in loaded.get_weights())
    predicted = cli("predict", model, data)
    assert predicted.returncode == 0, predicted.stderr
    assert np.isfinite(np.array(predicted.stdout.split()[1:], dtype=float)).all()


@pytest.mark.parametrize("value", [1e30, -3e38])
def test_predict_and_evaluate_refuse_a_model_whose_outputs_are_not_finite(tmp_path, value):
    data, model = tmp_path / "line.csv", tmp_path / "line.barenet"
    correlated_line(60).to_csv(data, index=False)
    assert cli("train", data, "--target", "y", "--layers", "4", "--epochs", "1", "--out", model).returncode == 0
    broken = bn.load(model)
    broken.set_weights([np.full_like(w, value) for w in broken.get_weights()])  # outputs overflow to inf
    bn.save(broken, model)
    for command in (("predict", model, data), ("evaluate", model, data)):
        line = one_error_line(cli(*command), 2, "gives NaN or infinite outputs for ")
        assert re.search(r"outputs for \d+ of 60 rows .* train it again", line), line
    assert not Path(f"{model}.evaluation").exists()


# ----------------------------------------------------------------- item 17: tune trains what train trains
def test_tune_scores_a_candidate_as_train_and_evaluate_score_it(tmp_path):
    from sklearn.model_selection import KFold

    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(160, 3)).round(3), columns=["a", "b", "c"])
    frame["price"] = (1000 + 300 * frame["a"] - 200 * frame["b"] + rng.normal(0, 30, 160)).round(2)
    data = tmp_path / "houses.csv"
    frame.to_csv(data, index=False)
    flags = ["--target", "price", "--task", "regression", "--epochs", "15", "--lr", "0.01", "--seed", "4"]
    tuned = cli("tune", data, *flags, "--grid", "layers=none|6", "--cv", "2")
    assert tuned.returncode == 0, tuned.stderr
    table = {row.split()[4]: float(row.split()[1]) for row in tuned.stdout.splitlines()
             if re.match(r"\d+ ", row)}
    frame = pd.read_csv(data)
    for layers in ("none", "6"):
        scores = []
        for k, (train, held_out) in enumerate(KFold(2, shuffle=True, random_state=4).split(frame)):
            part, rest, model = tmp_path / f"train{k}.csv", tmp_path / f"held{k}.csv", tmp_path / f"m{k}.barenet"
            frame.iloc[train].to_csv(part, index=False)
            frame.iloc[held_out].to_csv(rest, index=False)
            trained = cli("train", part, *flags, "--layers", layers, "--out", model, "--force")
            assert trained.returncode == 0, trained.stderr
            scored = cli("evaluate", model, rest, "--force")
            assert scored.returncode == 0, scored.stderr
            scores.append(json.loads((Path(f"{model}.evaluation") / "metrics.json").read_text())["evaluation"]["r2"])
        assert table[layers] == pytest.approx(np.mean(scores), abs=6e-5), (layers, scores, tuned.stdout)


# ----------------------------------------------------------------- items 18, 19: the right column
def test_errors_name_the_column_that_is_wrong(tmp_path):
    frame = weather(80)
    frame.loc[7, "temp_max"] = np.inf
    data = tmp_path / "inf.csv"
    frame.to_csv(data, index=False)
    line = one_error_line(cli("train", data, "--target", "temp_max", "--out", tmp_path / "m.barenet"), 2,
                          "column 'temp_max' holds infinite values")
    assert "'target'" not in line

    good, model = tmp_path / "good.csv", tmp_path / "cls.barenet"
    weather(80).to_csv(good, index=False)
    assert cli("train", good, "--target", "weather", "--drop", "date", "--epochs", "2", "--out",
               model).returncode == 0
    line = one_error_line(cli("evaluate", model, good, "--target", "temp_max", "--allow-other-target"), 2,
                          "target column 'temp_max' has labels")
    assert "'weather'" not in line.split("it knows")[0]


def test_an_unknown_column_gets_the_likely_one_suggested(tmp_path):
    data, model = tmp_path / "w.csv", tmp_path / "w.barenet"
    weather(60).to_csv(data, index=False)
    train = ["train", data, "--out", model, "--epochs", "1"]
    one_error_line(cli(*train, "--target", "Weather"), 2, "no column named 'Weather' (did you mean 'weather'?); "
                                                          "the columns are ['date',")
    one_error_line(cli(*train, "--target", "weather", "--drop", "Date,wnd"), 2,
                   "--drop names ['Date', 'wnd'], which the table lacks (did you mean 'date' for 'Date', 'wind' for "
                   "'wnd'?)")
    one_error_line(cli(*train, "--target", "weather", "--features", "temp_mx"), 2, "(did you mean 'temp_max'?)")
    line = one_error_line(cli(*train, "--target", "cloudiness"), 2, "no column named 'cloudiness'; the columns")
    assert "did you mean" not in line
    assert cli(*train, "--target", "weather", "--drop", "date,wind").returncode == 0
    renamed = tmp_path / "renamed.csv"
    weather(20).rename(columns={"temp_min": "Temp_Min"}).to_csv(renamed, index=False)
    one_error_line(cli("predict", model, renamed), 2, "lacks the feature columns ['temp_min'] the model was trained "
                                                      "on (did you mean 'Temp_Min'?)")


def test_evaluate_takes_the_target_from_the_model(tmp_path):
    frame = weather(90)
    data, model = tmp_path / "w.csv", tmp_path / "w.barenet"
    frame.to_csv(data, index=False)
    assert cli("train", data, "--target", "weather", "--drop", "date,wind", "--epochs", "3", "--out",
               model).returncode == 0
    result = cli("evaluate", model, data)
    assert result.returncode == 0, result.stderr
    assert json.loads((Path(f"{model}.evaluation") / "metrics.json").read_text())["target"] == "weather"
    one_error_line(cli("evaluate", model, data, "--target", "temp_max", "--force"), 2,
                   "trained to predict column 'weather', not 'temp_max'")
    frame["label"] = frame.pop("weather")
    renamed = tmp_path / "renamed.csv"
    frame.to_csv(renamed, index=False)
    one_error_line(cli("evaluate", model, renamed, "--force"), 2, "no column named 'weather' (the model's target")
    result = cli("evaluate", model, renamed, "--target", "label", "--allow-other-target", "--force")
    assert result.returncode == 0, result.stderr
    assert json.loads((Path(f"{model}.evaluation") / "metrics.json").read_text())["target"] == "label"


# ----------------------------------------------------------------- item 20: suspicious columns
def test_identifier_and_unit_columns_are_named_and_can_be_left_out(tmp_path):
    data = tmp_path / "w.csv"
    weather(120).to_csv(data, index=False)
    result = cli("train", data, "--target", "temp_max", "--epochs", "1", "--out", tmp_path / "a.barenet")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("barenet: warning: ")]
    assert len(warnings) == 2, result.stderr
    assert "column 'date' has 120 distinct values in 120 rows" in warnings[0] and "--drop date" in warnings[0]
    assert "column 'wind' holds numbers with units such as" in warnings[1] and "--drop wind" in warnings[1]

    result = cli("train", data, "--target", "temp_max", "--epochs", "1", "--drop", "date,wind",
                 "--out", tmp_path / "b.barenet")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert "5 input features" in result.stdout  # precipitation, temp_min and the 3 weather labels
    assert [c["name"] for c in bn.load(tmp_path / "b.barenet").metadata["preprocessing"]["columns"]] == [
        "precipitation", "temp_min", "weather"]
    result = cli("train", data, "--target", "temp_max", "--epochs", "1", "--features", "temp_min,precipitation",
                 "--out", tmp_path / "c.barenet")
    assert result.returncode == 0 and "2 input features" in result.stdout, result.stderr

    one_error_line(cli("train", data, "--target", "temp_max", "--drop", "dat", "--out", tmp_path / "d.barenet"),
                   2, "--drop names ['dat'], which the table lacks (did you mean 'date'?); the columns are ['date', "
                      "'precipitation'")
    one_error_line(cli("train", data, "--target", "temp_max", "--features", "wind,Temp_min",
                       "--out", tmp_path / "d.barenet"), 2, "--features names ['Temp_min']")
    assert not (tmp_path / "d.barenet").exists()


@settings(max_examples=300, deadline=None)
@given(features=st.one_of(st.none(), st.text(max_size=12)), drop=st.one_of(st.none(), st.text(max_size=12)),
       grid=st.text(max_size=30))
def test_column_and_grid_flags_fail_only_with_barenet_errors(features, drop, grid):
    from barenet.cli.fitting import parse_columns, select_columns
    from barenet.cli.tune import parse_grid

    table = {name: np.arange(4.0) for name in ("a", "b", "a,b", "y")}
    try:
        chosen = select_columns(table, "y", parse_columns(features, "--features"), parse_columns(drop, "--drop"))
    except BarenetError:
        pass
    else:
        assert "y" in chosen and len(chosen) >= 2 and set(chosen) <= set(table)
    try:
        parse_grid(grid)
    except BarenetError:
        pass


def test_early_stopping_exposes_the_best_epoch_and_its_figures():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + rng.normal(0, 0.1, 64)
    model = bn.Sequential([bn.layers.Dense(1, input_dim=3)], seed=0)
    model.compile(loss="mse", optimizer=bn.optimizers.get("sgd", learning_rate=0.05))
    from barenet.callbacks import EarlyStopping

    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(X[:48], y[:48], validation_data=(X[48:], y[48:]), epochs=40, callbacks=[stop], verbose=0)
    values = history.history["val_loss"]
    best = int(np.argmin(values))
    assert stop.best_epoch == best and stop.best_logs["val_loss"] == values[best]
    assert stop.best_logs == {name: column[best] for name, column in history.history.items()}
    assert model.evaluate(X[48:], y[48:])["loss"] == pytest.approx(values[best], rel=1e-5)
