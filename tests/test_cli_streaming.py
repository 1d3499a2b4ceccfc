"""``barenet train/evaluate/predict`` reading a table block by block (``--stream``), and ``predict --keep``:
real files and real ``barenet`` subprocesses, the streaming preprocessing against the whole-table one."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barenet.cli.streaming import validation_rows
from barenet.errors import BarenetError, StreamError
from barenet.preprocessing import ColumnWarning, TablePreprocessor
from barenet.preprocessing_stream import StreamStatistics


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "barenet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.1] + [0.0, 3.0, -2.0]
    color = rng.choice(["red", "green", "blue"], n)
    label = np.where(x[:, 0] + (color == "red") - 0.1 * (x[:, 1] - 3) > 0.4, "yes", "no")
    return pd.DataFrame({"id": np.arange(n) + 10_000, "a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                         "color": color, "label": label})


def blocks(frame: pd.DataFrame, size: int):
    for start in range(0, len(frame), size):
        part = frame.iloc[start:start + size]
        yield {name: (part[name].to_numpy(dtype=object) if part[name].dtype == object else part[name].to_numpy())
               for name in part.columns}, start


@pytest.mark.parametrize("scale", ["standard", "minmax"])
def test_streaming_preprocessing_equals_the_whole_table_one(scale):
    frame = table(700, seed=1)
    frame["name"] = [f"user{i}" for i in range(len(frame))]  # identifier-like: warned about by both
    frame["target"] = np.random.default_rng(2).normal(size=len(frame)) * 4 + 1  # regression
    whole = {name: (frame[name].to_numpy(dtype=object) if frame[name].dtype == object else frame[name].to_numpy())
             for name in frame.columns}
    with warnings.catch_warnings(record=True) as seen_whole:
        warnings.simplefilter("always", ColumnWarning)
        fitted = TablePreprocessor("target", scale=scale).fit(whole)
    stats = StreamStatistics("target", scale=scale)
    for block, start in blocks(frame, 97):
        stats.add(block, "test", start)
    with warnings.catch_warnings(record=True) as seen_stream:
        warnings.simplefilter("always", ColumnWarning)
        streamed = stats.preprocessor()
    assert [str(w.message) for w in seen_stream] == [str(w.message) for w in seen_whole]
    assert len(seen_whole) == 1 and "'name'" in str(seen_whole[0].message)
    a, b = fitted.to_json(), streamed.to_json()
    assert a["task"] == b["task"] == "regression"
    assert b["target_center"] == pytest.approx(a["target_center"], rel=1e-12)
    assert b["target_scale"] == pytest.approx(a["target_scale"], rel=1e-12)
    for left, right in zip(a["columns"], b["columns"], strict=True):
        assert left.keys() == right.keys() and left["kind"] == right["kind"]
        for key in left:
            assert right[key] == (pytest.approx(left[key], rel=1e-12) if key in ("center", "scale") else left[key])
    np.testing.assert_allclose(streamed.transform(whole), fitted.transform(whole), rtol=1e-6, atol=1e-6)


def test_streaming_statistics_name_the_rows_of_a_bad_value():
    frame = table(300)
    frame["b"] = frame["b"].astype(object)
    frame.loc[250, "b"] = "oops"
    stats = StreamStatistics("label")
    with pytest.raises(StreamError, match=r"rows 200-299.*column 'b' is numeric but row 250 holds 'oops'"):
        for block, start in blocks(frame, 100):
            stats.add(block, f"rows {start}-{start + 99}", start)


def test_validation_rows_are_a_seeded_share_fixed_by_place():
    held = validation_rows(0, 0, 100_000, seed=3, fraction=0.2)
    assert abs(held.mean() - 0.2) < 0.01
    np.testing.assert_array_equal(validation_rows(0, 500, 10, 3, 0.2), held[500:510])  # any block cut
    assert (validation_rows(0, 0, 1000, 4, 0.2) != held[:1000]).any()  # another seed, another split
    assert not validation_rows(0, 0, 1000, 3, 0.0).any()


def test_train_streams_and_predict_keeps_ids_row_for_row(tmp_path):
    frame = table(1200, seed=5)
    frame.to_csv(tmp_path / "t.csv", index=False)
    model = tmp_path / "m.npz"
    result = cli("train", tmp_path / "t.csv", "--target", "label", "--drop", "id", "--out", model, "--epochs", "4",
                 "--stream", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert "read block by block" in result.stdout and model.exists()
    metrics = json.loads((tmp_path / "m.npz.report" / "metrics.json").read_text())
    assert metrics["train"]["samples"] + metrics["validation"]["samples"] == 1200
    assert metrics["validation"]["accuracy"] > 0.8
    shuffled = frame.sample(frac=1.0, random_state=0)  # predictions follow the input's order, whatever it is
    shuffled.to_csv(tmp_path / "p.csv", index=False)
    result = cli("predict", model, tmp_path / "p.csv", "--keep", "id,color", "--proba", "--stream",
                 "--out", tmp_path / "out.csv")
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == ["id", "color", "label", "proba_no", "proba_yes"]
    np.testing.assert_array_equal(out["id"], shuffled["id"])
    np.testing.assert_array_equal(out["color"], shuffled["color"])
    whole = cli("predict", model, tmp_path / "p.csv", "--keep", "id", "--no-stream")  # the in-memory path
    assert whole.returncode == 0, whole.stderr
    in_memory = pd.read_csv(io.StringIO(whole.stdout))
    np.testing.assert_array_equal(in_memory["label"], out["label"])
    np.testing.assert_array_equal(in_memory["id"], out["id"])
    streamed = cli("evaluate", model, tmp_path / "t.csv", "--stream", "--report", tmp_path / "s")
    read = cli("evaluate", model, tmp_path / "t.csv", "--no-stream", "--report", tmp_path / "w")
    assert streamed.returncode == read.returncode == 0, streamed.stderr + read.stderr
    s = json.loads((tmp_path / "s" / "metrics.json").read_text())["evaluation"]
    w = json.loads((tmp_path / "w" / "metrics.json").read_text())["evaluation"]
    assert s["samples"] == w["samples"] == 1200
    for key in ("accuracy", "precision_macro", "recall_macro", "f1_macro"):
        assert s[key] == pytest.approx(w[key], abs=1e-12)


def test_a_folder_of_parquet_files_trains(tmp_path):
    frame = table(900, seed=7)
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(3):
        frame.iloc[i * 300:(i + 1) * 300].to_parquet(folder / f"part-{i}.parquet", index=False)
    result = cli("train", folder, "--target", "label", "--drop", "id", "--out", tmp_path / "m.npz", "--epochs", "2",
                 "--val-split", "0.25")
    assert result.returncode == 0, result.stderr
    assert "read block by block" in result.stdout
    result = cli("predict", tmp_path / "m.npz", folder, "--keep", "id", "--out", tmp_path / "p.parquet")
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(pd.read_parquet(tmp_path / "p.parquet")["id"], frame["id"])


def test_a_bad_row_mid_file_names_the_file_and_row(tmp_path):
    frame = table(70_000, seed=8)[["a", "b", "label"]]
    frame["a"] = frame["a"].round(3).astype(object)
    frame.loc[68_000, "a"] = "n/a?"
    frame.to_csv(tmp_path / "t.csv", index=False)
    result = cli("train", tmp_path / "t.csv", "--target", "label", "--out", tmp_path / "m.npz", "--stream")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("barenet: error: ") and "t.csv" in line and "row 68000" in line, result.stderr


def test_a_small_table_trains_as_before_unless_told_to_stream(tmp_path):
    frame = table(400, seed=9)
    frame.to_csv(tmp_path / "t.csv", index=False)
    runs = {}
    for name, flag in (("auto", []), ("off", ["--no-stream"])):
        result = cli("train", tmp_path / "t.csv", "--target", "label", "--out", tmp_path / f"{name}.npz",
                     "--epochs", "2", *flag)
        assert result.returncode == 0, result.stderr
        assert "block by block" not in result.stdout
        runs[name] = np.load(tmp_path / f"{name}.npz")
    weights = [key for key in runs["auto"].files if key.startswith("weights/")]
    assert weights and weights == [key for key in runs["off"].files if key.startswith("weights/")]
    for key in weights:
        np.testing.assert_array_equal(runs["auto"][key], runs["off"][key])


def test_keep_refuses_unknown_and_clashing_columns(tmp_path):
    frame = table(300, seed=10)
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert cli("train", tmp_path / "t.csv", "--target", "label", "--out", tmp_path / "m.npz", "--epochs", "1",
               "--stream").returncode == 0
    for keep, fragment in (("idd", "did you mean 'id'"), ("label", "a column the predictions file writes")):
        for mode in ("--stream", "--no-stream"):
            result = cli("predict", tmp_path / "m.npz", tmp_path / "t.csv", "--keep", keep, mode)
            assert result.returncode == 2 and fragment in result.stderr, result.stderr


@settings(max_examples=25, deadline=None)
@given(cut=st.integers(0, 400), junk=st.binary(min_size=0, max_size=40))
def test_streaming_a_mutated_csv_raises_only_barenet_errors(tmp_path_factory, cut, junk):
    from barenet.cli.streaming import located_blocks, open_table

    folder = tmp_path_factory.mktemp("fuzz")
    text = table(30, seed=11).to_csv(index=False).encode()
    (folder / "t.csv").write_bytes(text[:cut] + junk + text[cut:])
    try:
        stats = StreamStatistics("label")
        for block, file, first in located_blocks(open_table(str(folder / "t.csv"))):
            stats.add(block, str(file), first)
        stats.preprocessor()
    except BarenetError:
        pass
