"""The ``barenet`` command, driven as a real subprocess on files written to tmp_path."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import barenet as bn

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "barenet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("barenet: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def flowers(n: int, seed: int = 0) -> pd.DataFrame:
    """Three separable classes with string labels, a text feature and two numeric features."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    return pd.DataFrame({
        "petal": label * 2.0 + rng.normal(0, 0.3, n),
        "stem": rng.normal(10, 2, n) + label,
        "soil": np.array(["clay", "sand", "loam"])[(label + (rng.random(n) < 0.2)) % 3],
        "species": np.array(["iris", "rose", "tulip"])[label],
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One classification model trained from CSV, shared by the round-trip tests."""
    folder = tmp_path_factory.mktemp("cli")
    data = folder / "flowers.csv"
    flowers(240).to_csv(data, index=False)
    model = folder / "flowers.barenet"
    result = cli("train", data, "--target", "species", "--out", model, "--epochs", "25", "--layers", "16",
                 "--lr", "0.01")
    assert result.returncode == 0, result.stderr
    return folder, data, model, result


def test_train_writes_model_and_report(trained):
    folder, _, model, result = trained
    assert "Epoch 25/25" in result.stdout and "val_accuracy" in result.stdout
    loaded = bn.load(model)
    assert loaded.metadata["preprocessing"]["classes"] == ["iris", "rose", "tulip"]
    assert len(loaded.metadata["history"]["loss"]) == 25
    report = Path(f"{model}.report")
    for name in ("curves.png", "confusion_matrix.png"):
        width, height = png_size(report / name)
        assert 300 <= width <= 3000 and 300 <= height <= 3000
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["task"] == "classification"
    assert metrics["train"]["samples"] + metrics["validation"]["samples"] == 240
    assert metrics["validation"]["accuracy"] > 0.9
    assert set(metrics["validation"]["per_class"]) == {"iris", "rose", "tulip"}
    assert set(metrics["validation"]["per_class"]["rose"]) == {"precision", "recall", "f1", "support"}


def test_predict_and_evaluate_apply_the_stored_preprocessing(trained):
    folder, _, model, _ = trained
    fresh = flowers(60, seed=1)
    fresh.loc[0, "soil"] = "gravel"  # unseen category: encoded as all zeros, not an error
    data = folder / "fresh.csv"
    fresh.drop(columns="species").to_csv(data, index=False)
    result = cli("predict", model, data, "--proba")
    assert result.returncode == 0, result.stderr
    from io import StringIO

    out = pd.read_csv(StringIO(result.stdout))
    assert list(out.columns) == ["species", "proba_iris", "proba_rose", "proba_tulip"]
    assert len(out) == 60
    np.testing.assert_allclose(out.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-5)
    assert (out["species"] == fresh["species"]).mean() > 0.9

    labelled = folder / "labelled.csv"
    fresh.to_csv(labelled, index=False)
    result = cli("evaluate", model, labelled, "--target", "species")
    assert result.returncode == 0, result.stderr
    assert "60 samples: accuracy" in result.stdout
    report = Path(f"{model}.evaluation")
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["evaluation"]["samples"] == 60 and metrics["evaluation"]["accuracy"] > 0.9
    assert png_size(report / "confusion_matrix.png")[0] > 300
    assert png_size(report / "curves.png")[0] > 300


def test_summary_lists_layers_and_parameters(trained):
    _, _, model, _ = trained
    result = cli("summary", model)
    assert result.returncode == 0, result.stderr
    # 5 inputs (petal, stem, soil=clay|loam|sand) -> 16 -> 3
    assert "Dense(16" in result.stdout and f"Trainable params: {5 * 16 + 16 + 16 * 3 + 3}" in result.stdout
    assert "Target: species (3 classes)" in result.stdout


def test_regression_from_parquet(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    frame["price"] = 1000 + 300 * frame["a"] - 200 * frame["b"] + rng.normal(0, 10, 300)
    data = tmp_path / "houses.parquet"
    frame.to_parquet(data)
    model = tmp_path / "houses.barenet"
    result = cli("train", data, "--target", "price", "--out", model, "--epochs", "40", "--layers", "16",
                 "--lr", "0.01", "--scale", "minmax", "--report", tmp_path / "rep")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("regression:")
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert set(metrics["validation"]) == {"samples", "mse", "mae", "r2"}
    assert metrics["validation"]["r2"] > 0.9
    assert png_size(tmp_path / "rep" / "predicted_vs_actual.png")[1] > 300
    out = tmp_path / "pred.csv"
    assert cli("predict", model, data, "--out", out).returncode == 0
    predicted = pd.read_csv(out)["price"]
    assert abs(predicted.mean() - frame["price"].mean()) < 50  # in the target's units, not standardized


def test_npz_columns_and_binary_labels(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    data = tmp_path / "points.npz"
    np.savez(data, X=X, y=y)
    model = tmp_path / "points.barenet"
    result = cli("train", data, "--target", "y", "--out", model, "--epochs", "20", "--layers", "8", "--lr", "0.02")
    assert result.returncode == 0, result.stderr
    prep = bn.load(model).metadata["preprocessing"]
    assert [c["name"] for c in prep["columns"]] == ["X0", "X1", "X2", "X3"] and prep["classes"] == [0, 1]
    result = cli("predict", model, data)
    assert result.returncode == 0, result.stderr
    predicted = np.array(result.stdout.split()[1:], dtype=int)
    assert (predicted == y).mean() > 0.9


def bad_inputs(tmp: Path) -> list[tuple[list, str]]:
    good = tmp / "good.csv"
    flowers(30).to_csv(good, index=False)
    (tmp / "empty.csv").write_text("")
    (tmp / "header.csv").write_text("a,b\n")
    (tmp / "garbage.parquet").write_bytes(os.urandom(200))
    typo = flowers(30)
    typo["petal"] = typo["petal"].astype(object)
    typo.loc[3, "petal"] = "n/a?"
    typo.to_csv(tmp / "typo.csv", index=False)
    nan_target = flowers(30)
    nan_target.loc[5, "species"] = None
    nan_target.to_csv(tmp / "nan_target.csv", index=False)
    one_class = flowers(30)
    one_class["species"] = "rose"
    one_class.to_csv(tmp / "one_class.csv", index=False)
    (tmp / "fake.barenet").write_bytes(b"PK\x03\x04 not really a zip")
    out = ["--out", tmp / "m.barenet"]
    return [
        (["train", tmp / "missing.csv", "--target", "species", *out], "does not exist"),
        (["train", tmp / "garbage.parquet", "--target", "species", *out], "cannot read"),
        (["train", tmp / "empty.csv", "--target", "species", *out], "is empty"),
        (["train", tmp / "header.csv", "--target", "a", *out], "no rows"),
        (["train", good, "--target", "colour", *out], "the columns are ['petal', 'stem', 'soil', 'species']"),
        (["train", tmp / "typo.csv", "--target", "species", *out], "row 3 holds 'n/a?'"),
        (["train", tmp / "nan_target.csv", "--target", "species", *out], "missing values (first in row 5)"),
        (["train", tmp / "one_class.csv", "--target", "species", *out], "single class 'rose'"),
        (["train", good, "--target", "species", "--scale", "log", *out], "invalid choice: 'log'"),
        (["train", good, "--target", "species", "--layers", "64,x", *out], "--layers must be"),
        (["train", good.with_suffix(".txt"), "--target", "species", *out], "does not exist"),
        (["predict", tmp / "fake.barenet", good], "barenet model file"),
        (["predict", good, good], "barenet model file"),
        (["summary", tmp / "nothing.barenet"], "does not exist"),
        (["tune", good, "--target", "species", "--grid", "depth=3"], "--grid key 'depth' is unknown"),
    ]


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    cases = bad_inputs(tmp_path)
    # independent processes, started together to keep the suite quick
    procs = [subprocess.Popen([sys.executable, "-m", "barenet", *map(str, args)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args, _ in cases]
    for proc, (args, fragment) in zip(procs, cases, strict=True):
        stdout, stderr = proc.communicate(timeout=120)
        assert_one_line_error(subprocess.CompletedProcess(args, proc.returncode, stdout, stderr), fragment)
    assert not (tmp_path / "m.barenet").exists()


def test_nothing_is_overwritten_without_force(trained, tmp_path):
    folder, data, model, _ = trained
    before = model.read_bytes()
    again = cli("train", data, "--target", "species", "--out", model, "--epochs", "1")
    assert_one_line_error(again, "already exists; pass --force")
    assert model.read_bytes() == before

    other = tmp_path / "other.barenet"
    report = tmp_path / "report"  # a folder the user named (barenet's default one is replaced without --force)
    report.mkdir()
    assert_one_line_error(cli("train", data, "--target", "species", "--out", other, "--epochs", "1",
                              "--report", report), "report folder")
    assert not other.exists()
    forced = cli("train", data, "--target", "species", "--out", other, "--epochs", "1", "--report", report,
                 "--force")
    assert forced.returncode == 0, forced.stderr
    assert (report / "metrics.json").exists()

    out = tmp_path / "pred.csv"
    out.write_text("keep me\n")
    assert_one_line_error(cli("predict", model, data, "--out", out), "output file")
    assert out.read_text() == "keep me\n"
    assert cli("predict", model, data, "--out", out, "--force").returncode == 0
    assert out.read_text().startswith("species\n")


def test_ctrl_c_saves_the_best_model_and_exits_130(tmp_path):
    data = tmp_path / "big.csv"
    flowers(4000).to_csv(data, index=False)
    model = tmp_path / "big.barenet"
    proc = subprocess.Popen(
        [sys.executable, "-m", "barenet", "train", str(data), "--target", "species", "--out", str(model),
         "--epochs", "1000", "--layers", "32"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a shell may start us ignoring SIGINT
    )
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if line.startswith("Epoch 1/1000"):
            break
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    stdout = "".join(lines) + stdout
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "fit returns" not in stderr  # the library's line speaks of fit; the command says what it saved
    told = re.search(r"training interrupted; saved the model of epoch (\d+) ", stdout)
    assert told, stdout
    loaded = bn.load(model)
    epochs_done = len(loaded.metadata["history"]["loss"])
    assert 1 <= epochs_done < 1000
    metrics = json.loads((Path(f"{model}.report") / "metrics.json").read_text())
    assert metrics["interrupted"] is True and metrics["epochs_run"] == epochs_done
    # the epoch the user is told about is the one saved, and one the record holds
    kept = int(told.group(1))
    assert metrics["kept_epoch"] == loaded.metadata["fit"]["kept_epoch"] == kept <= epochs_done
    assert metrics["kept_logs"]["val_loss"] == min(loaded.metadata["history"]["val_loss"])


def test_tune_prints_a_ranked_table(tmp_path):
    data = tmp_path / "flowers.csv"
    flowers(90).to_csv(data, index=False)
    result = cli("tune", data, "--target", "species", "--grid", "layers=4|8,4 lr=0.01", "--cv", "2", "--epochs", "5")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert lines[header].split()[:3] == ["rank", "mean", "accuracy"]
    rows = [line.split() for line in lines[header + 2:header + 4]]
    assert [r[0] for r in rows] == ["1", "2"] and {r[4] for r in rows} == {"4", "8,4"}
    assert float(rows[0][1]) >= float(rows[1][1])
    assert lines[-3].startswith("best: --layers ")


def test_tune_on_a_dask_scheduler(tmp_path):
    from dask.distributed import LocalCluster

    data = tmp_path / "flowers.csv"
    flowers(60).to_csv(data, index=False)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        result = cli("tune", data, "--target", "species", "--grid", "layers=4|8", "--cv", "2", "--epochs", "3",
                     "--scheduler", cluster.scheduler_address)
        prefixes = list(cluster.scheduler.task_prefixes)
    assert result.returncode == 0, result.stderr
    assert f"running in the dask scheduler at {cluster.scheduler_address}" in result.stdout
    assert any("fit_and_score" in name for name in prefixes), f"no fit ran on the cluster: {prefixes}"
    assert result.stdout.splitlines()[-3].startswith("best:")


def test_demo_still_runs():
    result = cli("demo", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
