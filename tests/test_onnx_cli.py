"""``barenet export``: real subprocesses train on a CSV, export, and onnxruntime on the raw rows must give
what ``barenet predict`` prints: the same labels, probabilities and predictions to float32 rounding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from barenet.cli.data import read_table  # noqa: E402


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "barenet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("barenet: error: ") and fragment in lines[0], lines[0]


def shop(n: int, seed: int = 0) -> pd.DataFrame:
    """Numeric and text columns; a text label (``kind``) and a numeric target (``price``)."""
    rng = np.random.default_rng(seed)
    size = rng.normal(5, 2, n).round(3)
    count = rng.integers(0, 9, n)
    color = rng.choice(["red", "green", "blue"], n)
    shape = rng.choice(["round", "flat"], n)
    return pd.DataFrame({
        "size": size, "count": count, "color": color, "shape": shape,
        "kind": np.where(size + 2 * (color == "red") > 6, "big", "small"),
        "price": 3 * size + count + 5 * (color == "blue") + rng.normal(0, 0.5, n),
    })


def onnx_outputs(model: Path, data: Path) -> dict[str, np.ndarray]:
    """Run the exported graph on the raw table (text columns as strings, a missing one as "")."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    table = read_table(data)
    feeds = {}
    for spec in session.get_inputs():
        values = table[spec.name]
        if spec.type == "tensor(string)":
            feeds[spec.name] = np.array(["" if v is None else str(v) for v in values], dtype=object)[:, None]
        else:
            feeds[spec.name] = values.astype(np.float64)[:, None]
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_cli")
    train = shop(150)
    train.drop(columns="price").to_csv(folder / "kind.csv", index=False)
    train.drop(columns="kind").to_csv(folder / "price.csv", index=False)
    new = shop(40, seed=1).drop(columns=["kind", "price"])
    new.loc[3, "color"] = "purple"  # unseen in training: all-zero one-hot, in barenet and in the graph
    new.loc[5, "shape"] = None  # missing
    new.to_csv(folder / "new.csv", index=False)
    runs = [("kind", ["--batch-norm", "--dropout", "0.1"]), ("price", ["--activation", "tanh"])]
    procs = [subprocess.Popen([sys.executable, "-m", "barenet", "train", str(folder / f"{t}.csv"), "--target", t,
                               "--out", str(folder / f"{t}.barenet"), "--epochs", "4", "--layers", "8,4", *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for t, extra in runs]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    return folder


def test_classifier_graph_prints_what_predict_prints(folder):
    result = cli("export", folder / "kind.barenet", folder / "kind.onnx")
    assert result.returncode == 0, result.stderr
    assert "inputs: size, count, color, shape; outputs: label, probabilities" in result.stdout
    result = cli("predict", folder / "kind.barenet", folder / "new.csv", "--proba", "--out", folder / "kind.pred.csv")
    assert result.returncode == 0, result.stderr
    printed = pd.read_csv(folder / "kind.pred.csv")
    got = onnx_outputs(folder / "kind.onnx", folder / "new.csv")
    assert got["label"].tolist() == printed["kind"].tolist()
    assert set(printed["kind"]) == {"big", "small"}
    want = printed[["proba_big", "proba_small"]].to_numpy().astype(np.float32)
    np.testing.assert_allclose(got["probabilities"], want, rtol=0, atol=1e-6)  # float32 sums in another order


def test_regressor_graph_prints_what_predict_prints(folder):
    result = cli("export", folder / "price.barenet", folder / "price.onnx", "--opset", "13")
    assert result.returncode == 0, result.stderr
    result = cli("predict", folder / "price.barenet", folder / "new.csv")
    assert result.returncode == 0, result.stderr
    printed = pd.read_csv(__import__("io").StringIO(result.stdout))["price"].to_numpy().astype(np.float32)
    got = onnx_outputs(folder / "price.onnx", folder / "new.csv")
    np.testing.assert_allclose(got["prediction"], printed, rtol=1e-6)
    assert np.ptp(printed) > 1  # a real spread of predictions, not a constant
    assert [o.version for o in onnx.load(folder / "price.onnx").opset_import if not o.domain] == [13]


def test_network_only_and_metadata(folder):
    import barenet as bn
    from barenet.preprocessing import TablePreprocessor

    result = cli("export", folder / "kind.barenet", folder / "net.onnx", "--network-only", "--opset", "17")
    assert result.returncode == 0, result.stderr
    model = bn.load(folder / "kind.barenet")
    proto = onnx.load(folder / "net.onnx")
    props = {p.key: p.value for p in proto.metadata_props}
    prep = TablePreprocessor.from_json(__import__("json").loads(props["preprocessing"]))
    assert prep.classes == ["big", "small"] and props["classes"] == '["big", "small"]'
    X = prep.transform(read_table(folder / "new.csv"), dtype=model.dtype)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": X})[0], model.predict(X), atol=1e-6)


def run_main(capsys, *args) -> subprocess.CompletedProcess:
    """``barenet`` run in this process (fast, for the error paths), as a CompletedProcess."""
    from barenet.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def test_bad_paths_and_options_are_one_line_and_exit_2(folder, tmp_path, capsys):
    (tmp_path / "taken.onnx").write_bytes(b"x")
    (tmp_path / "notes.barenet").write_text("not a model")
    cases = [
        ([tmp_path / "missing.barenet", tmp_path / "a.onnx"], "does not exist"),
        ([tmp_path, tmp_path / "a.onnx"], "is a directory"),
        ([tmp_path / "notes.barenet", tmp_path / "a.onnx"], "notes.barenet"),
        ([folder / "kind.barenet", tmp_path / "taken.onnx"], "already exists; pass --force"),
        ([folder / "kind.barenet", tmp_path / "nowhere" / "a.onnx"], "does not exist"),
        ([folder / "kind.barenet", tmp_path / "a.onnx", "--opset", "12"], "opset must be an integer from 13"),
    ]
    for args, fragment in cases:
        assert_one_line_error(run_main(capsys, "export", *args), fragment)
    assert not (tmp_path / "a.onnx").exists() and (tmp_path / "taken.onnx").read_bytes() == b"x"


def test_missing_onnx_package_is_one_line_and_exit_2(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    result = run_main(capsys, "export", folder / "kind.barenet", tmp_path / "a.onnx")
    assert_one_line_error(result, 'pip install "barenet[onnx]"')
    assert not (tmp_path / "a.onnx").exists()


def _paths(value, prefix=()):
    """Every path into a nested JSON value (dict keys and list indices)."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, (*prefix, key))


def test_fuzzed_preprocessing_metadata_ends_in_barenet_errors():
    """A model file's metadata is untrusted: any mutation of a real preprocessing record either exports
    (a graph that passes the full check) or raises barenet's own error."""
    import copy

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import barenet as bn
    from barenet.errors import BarenetError
    from barenet.onnx.table import table_to_onnx
    from barenet.preprocessing import TablePreprocessor

    frame = shop(30)
    table = {k: frame[k].to_numpy(dtype=object if frame[k].dtype == object else None) for k in frame}
    del table["price"]
    prep = TablePreprocessor("kind").fit(table)
    model = bn.Sequential([bn.layers.Dense(2, "softmax", input_dim=len(prep.feature_names))], seed=0)
    model.build()
    real = prep.to_json()
    paths = list(_paths(real))
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def check(data):
        record = copy.deepcopy(real)
        for _ in range(data.draw(st.integers(1, 3))):
            path = data.draw(st.sampled_from(paths))
            if not path:
                record = data.draw(json_values)
                continue
            parent = record
            try:
                for key in path[:-1]:
                    parent = parent[key]
                if data.draw(st.booleans()) and isinstance(parent, dict):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = data.draw(json_values)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed this path
        model.metadata = {"preprocessing": record}
        try:
            table_to_onnx(model)
        except BarenetError:
            pass

    check()


def test_export_of_a_model_saved_by_the_library(tmp_path, capsys):
    """A model file without table preprocessing exports as the bare network."""
    import barenet as bn

    model = bn.Sequential([bn.layers.Conv2D(2, 3, input_shape=(5, 5, 1)), bn.layers.Flatten(),
                           bn.layers.Dense(3, "softmax")], seed=0, dtype="float64")
    model.build()
    bn.save(model, tmp_path / "cnn.barenet")
    result = run_main(capsys, "export", tmp_path / "cnn.barenet", tmp_path / "cnn.onnx")
    assert result.returncode == 0, result.stderr
    assert "inputs: input; outputs: output" in result.stdout
    x = np.random.default_rng(0).normal(size=(7, 5, 5, 1))
    session = ort.InferenceSession(str(tmp_path / "cnn.onnx"), providers=["CPUExecutionProvider"])
    assert np.max(np.abs(session.run(None, {"input": x})[0] - model.predict(x))) <= 1e-10
