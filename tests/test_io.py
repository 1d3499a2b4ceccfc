"""bn.save / bn.load: round trips, atomic writes, and every kind of bad file giving ModelFileError."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ModelFileError, NotFittedError, OutputError
from barenet.metadata import MetadataError


def make_data(n: int = 64, features: int = 4, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    return X, np.minimum(y, classes - 1)


def make_model(dtype: str = "float32", compiled: bool = True, optimizer=None) -> bn.Sequential:
    model = bn.Sequential([
        bn.layers.Dense(8, activation="relu", input_dim=4),
        bn.layers.BatchNormalization(),
        bn.layers.Dropout(0.25),
        bn.layers.Dense(3, activation="softmax"),
    ], seed=7, dtype=dtype)
    if compiled:
        model.compile(loss="categorical_crossentropy", optimizer=optimizer or bn.optimizers.Adam(0.01),
                      metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory) -> Path:
    X, y = make_data()
    model = make_model()
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path_factory.mktemp("model") / "model.barenet"
    bn.save(model, path)
    return path


def rewrite(src: Path, dst: Path, *, drop=(), replace=None, add=None) -> Path:
    """Copy the archive ``src`` to ``dst`` without ``drop`` members, with ``replace``d and ``add``ed ones."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name not in drop:
                zout.writestr(name, replace.get(name, zin.read(name)))
        for name, data in add.items():
            zout.writestr(name, data)
    return dst


def edit_document(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin:
        document = json.loads(zin.read("barenet.json"))
    edit(document)
    return rewrite(src, dst, replace={"barenet.json": json.dumps(document)})


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


# --------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_gives_identical_predictions_weights_and_settings(tmp_path, dtype):
    X, y = make_data()
    model = make_model(dtype)
    model.fit(X, y, epochs=3, batch_size=16, verbose=0)
    model.metadata = {"scaler": {"mean": [0.5, 1.0], "scale": [2.0, 3.0]}, "classes": ["a", "b", "c"]}
    path = tmp_path / "m.barenet"
    bn.save(model, path)
    loaded = bn.load(path)

    assert np.array_equal(loaded.predict(X), model.predict(X))
    assert loaded.predict(X).dtype == np.dtype(dtype)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in
               zip(loaded.get_weights(), model.get_weights(), strict=True))
    bn_layer = loaded.layers[1]
    assert not np.array_equal(bn_layer.buffers["moving_mean"], np.zeros(8))  # trained statistics came back
    assert loaded.layers[2].rate == 0.25
    assert loaded.get_config() == model.get_config()
    assert loaded.metadata == model.metadata
    assert loaded.metric_names == ["accuracy"]
    assert isinstance(loaded.loss, bn.losses.CategoricalCrossentropy)
    assert isinstance(loaded.optimizer, bn.optimizers.Adam)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 12
    assert loaded.evaluate(X, y) == model.evaluate(X, y)


@pytest.mark.parametrize("optimizer", [
    lambda: bn.optimizers.Adam(0.01),
    lambda: bn.optimizers.SGD(0.05, momentum=0.9),
    lambda: bn.optimizers.RMSprop(bn.optimizers.ExponentialDecay(0.01, decay_steps=5, decay_rate=0.5)),
])
def test_training_resumes_bit_for_bit_after_load(tmp_path, optimizer):
    X, y = make_data()
    model = make_model("float64", optimizer=optimizer())
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    bn.save(model, tmp_path / "m.barenet")
    resumed = bn.load(tmp_path / "m.barenet")

    model.fit(X, y, epochs=2, batch_size=16, verbose=0)  # shuffling and dropout draw from the model's generator
    resumed.fit(X, y, epochs=2, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), resumed.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_uncompiled_model_saves_and_loads_without_compile_section(tmp_path):
    model = make_model(compiled=False)
    model.build()
    bn.save(model, tmp_path / "m.barenet")
    with zipfile.ZipFile(tmp_path / "m.barenet") as archive:
        assert json.loads(archive.read("barenet.json"))["compile"] is None
        assert not any(name.startswith("optimizer/") for name in archive.namelist())
    loaded = bn.load(tmp_path / "m.barenet")
    assert loaded.loss is None and loaded.optimizer is None
    X, _ = make_data()
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_the_sample_weight_reduction_is_saved_and_the_default_is_not_written(tmp_path, trained_file):
    X, y = make_data()
    model = make_model(dtype="float64")
    model.compile("categorical_crossentropy", bn.optimizers.SGD(0.05), reduction="sample_weight")
    bn.save(model, tmp_path / "m.barenet")
    with zipfile.ZipFile(tmp_path / "m.barenet") as archive:
        assert json.loads(archive.read("barenet.json"))["compile"]["reduction"] == "sample_weight"
    with zipfile.ZipFile(trained_file) as archive:
        assert "reduction" not in json.loads(archive.read("barenet.json"))["compile"]
    loaded = bn.load(tmp_path / "m.barenet")
    assert loaded.reduction == "sample_weight" and bn.load(trained_file).reduction == "batch"
    w = np.random.default_rng(3).uniform(0, 2, size=len(X))
    np.testing.assert_array_equal(loaded.compute_gradients(X, y, sample_weight=w).parameters["layers.0.kernel"],
                                  model.compute_gradients(X, y, sample_weight=w).parameters["layers.0.kernel"])


def test_compiled_but_untrained_model_round_trips(tmp_path):
    model = make_model()
    model.build()
    bn.save(model, tmp_path / "m.barenet")
    loaded = bn.load(tmp_path / "m.barenet")
    assert loaded.optimizer.iterations == 0 and loaded.optimizer.slots == {"m_sum": {}, "v_sum": {}}


def test_unbuilt_model_cannot_be_saved(tmp_path):
    model = bn.Sequential([bn.layers.Dense(2)])
    with pytest.raises(NotFittedError, match="cannot save a model that is not built"):
        bn.save(model, tmp_path / "m.barenet")
    assert list(tmp_path.iterdir()) == []


def test_model_with_nan_weights_is_not_saved(tmp_path):
    model = make_model()
    model.build()
    model.layers[0].params["kernel"][0, 0] = np.nan
    with pytest.raises(bn.errors.DataError, match=r"weight 'layers.0.kernel' holds 1 NaN or infinite values"):
        bn.save(model, tmp_path / "m.barenet")
    assert list(tmp_path.iterdir()) == []


def test_metadata_that_is_not_json_is_refused(tmp_path):
    model = make_model()
    model.build()
    model.metadata = {"scaler": object()}
    with pytest.raises(bn.errors.ConfigError, match="not plain JSON data"):
        bn.save(model, tmp_path / "m.barenet")
    assert list(tmp_path.iterdir()) == []


def test_file_holds_versioned_json_and_npy_arrays_only(trained_file):
    with zipfile.ZipFile(trained_file) as archive:
        document = json.loads(archive.read("barenet.json"))
        names = set(archive.namelist())
    assert document["format"] == "barenet-model" and document["version"] == bn.io.FORMAT_VERSION
    assert {"weights/layers.0.kernel.npy", "weights/layers.1.moving_variance.npy", "optimizer/iterations.npy",
            "optimizer/m_sum/layers.3.bias.npy"} <= names
    assert all(name == "barenet.json" or name.endswith(".npy") for name in names)


# --------------------------------------------------------------------- atomic saving
def test_interrupted_save_keeps_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.barenet"
    model = make_model()
    model.build()
    bn.save(model, path)
    before = path.read_bytes()

    real_write = np.lib.format.write_array
    calls = []

    def failing_write(stream, array, **kwargs):
        calls.append(array.shape)
        if len(calls) == 3:
            stream.write(b"\x93NUMPY partial")
            raise OSError(28, "No space left on device")
        real_write(stream, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_write)
    model.layers[0].params["kernel"] += 1.0
    with pytest.raises(OSError, match="No space left"):
        bn.save(model, path)
    assert len(calls) == 3
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.barenet"]


def test_save_into_missing_folder_or_onto_directory(tmp_path):
    model = make_model()
    model.build()
    target = tmp_path / "nope" / "m.barenet"
    with pytest.raises(OutputError) as caught:
        bn.save(model, target)
    assert str(caught.value).startswith(f"cannot write model file {str(target)!r}: folder "
                                        f"{str(tmp_path / 'nope')!r} does not exist; create it first")
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        bn.save(model, tmp_path)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match="a_file' is a file, not a folder"):
        bn.save(model, tmp_path / "a_file" / "deeper" / "m.barenet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=["022", "077", "002"])
def test_saved_files_get_the_permissions_of_a_plain_open(tmp_path, umask):
    model = make_model()
    model.build()
    previous = os.umask(umask)
    try:
        bn.save(model, tmp_path / "m.barenet")
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    assert oct((tmp_path / "plain").stat().st_mode & 0o777) == oct(expected)
    assert oct((tmp_path / "m.barenet").stat().st_mode & 0o777) == oct(expected)


def test_a_replaced_file_keeps_its_permissions_as_with_a_plain_open(tmp_path):
    model = make_model()
    model.build()
    path = tmp_path / "m.barenet"
    bn.save(model, path)
    path.chmod(0o640)
    bn.save(model, path)
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)


# --------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        bn.load(tmp_path / "absent.barenet")


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="is a directory"):
        bn.load(tmp_path)


def test_named_pipe_is_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ModelFileError, match="is not a regular file"):
        bn.load(tmp_path / "pipe")


def test_empty_file(tmp_path):
    (tmp_path / "m.barenet").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"is empty \(0 bytes\)"):
        bn.load(tmp_path / "m.barenet")


def test_random_bytes(tmp_path):
    (tmp_path / "m.barenet").write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ModelFileError, match="not a zip archive"):
        bn.load(tmp_path / "m.barenet")


def test_truncated_file(tmp_path, trained_file):
    data = trained_file.read_bytes()
    (tmp_path / "half.barenet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        bn.load(tmp_path / "half.barenet")


def test_pickle_is_never_loaded(tmp_path):
    (tmp_path / "m.barenet").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelFileError, match="looks like a Python pickle"):
        bn.load(tmp_path / "m.barenet")


def test_bare_npy_file(tmp_path):
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(ModelFileError, match=r"bare \.npy array"):
        bn.load(tmp_path / "w.npy")


def test_keras_files_are_named_as_such(tmp_path):
    # A Keras 3 ".keras" file is a zip archive too (config.json, model.weights.h5, metadata.json); a ".h5"
    # file is HDF5. Neither is read, and the error says what the file is.
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        for member in ("metadata.json", "config.json", "model.weights.h5"):
            archive.writestr(member, b"{}")
    with pytest.raises(ModelFileError, match=r"model\.keras is a Keras model file \(\.keras\), not a barenet model "
                                             r"file; barenet reads only the files bn\.save and model\.save write"):
        bn.load_model(tmp_path / "model.keras")
    (tmp_path / "model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(ModelFileError, match=r"model\.h5' is an HDF5 file \(such as a Keras \.h5 model\), not a "
                                             r"barenet model file"):
        bn.load(tmp_path / "model.h5")


class Boom:
    """Would run code if unpickled."""

    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_object_array_inside_archive_is_refused_without_unpickling(tmp_path, trained_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = npy_bytes(np.array([Boom()], dtype=object), allow_pickle=True)
    path = rewrite(trained_file, tmp_path / "evil.barenet", replace={"weights/layers.0.kernel.npy": evil})
    with pytest.raises(ModelFileError, match="holds Python objects"):
        bn.load(path)
    assert not (tmp_path / "pwned.txt").exists()


def test_zip_without_json(tmp_path, trained_file):
    path = rewrite(trained_file, tmp_path / "m.barenet", drop={"barenet.json"})
    with pytest.raises(ModelFileError, match="without 'barenet.json'"):
        bn.load(path)


@pytest.mark.parametrize(("content", "message"), [
    (b"[1, 2, 3]", "holds a JSON list; expected an object"),
    (b"{not json", "is not valid JSON"),
    (b"\xff\xfe", "is not valid JSON"),
    (b'{"format": NaN}', "NaN is not allowed"),
])
def test_json_that_is_not_an_object(tmp_path, trained_file, content, message):
    path = rewrite(trained_file, tmp_path / "m.barenet", replace={"barenet.json": content})
    with pytest.raises(ModelFileError, match=message):
        bn.load(path)


def _set(keys, value):
    def edit(document):
        target = document
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


def _delete(key):
    return lambda document: document.pop(key)


@pytest.mark.parametrize(("edit", "message"), [
    (_delete("metadata"), r"lacks the keys \['metadata'\]"),
    (_set(["surprise"], 1), r"has unknown keys \['surprise'\]"),
    (_set(["format"], "keras"), "format is 'keras'; expected 'barenet-model'"),
    (_set(["version"], 2), "format version 2, newer than this barenet reads \\(up to 1\\); upgrade"),
    (_set(["version"], "1"), "format version '1' is not a positive integer"),
    (_set(["model"], []), "'model' must be a JSON object"),
    (_set(["model", "layers"], []), "must be a non-empty list"),
    (_set(["model", "layers", 0, "class"], "os.system"), "unknown layer type 'os.system'"),
    (_set(["model", "layers", 0], {"class": "Dense"}), r"'model.layers\[0\]' must be"),
    (_set(["model", "layers", 0, "config", "units"], -3), "Dense units must be a positive integer"),
    (_set(["model", "layers", 0, "config", "evil"], 1), "cannot be rebuilt: .*unexpected keyword argument 'evil'"),
    (_set(["model", "input_shape"], None), "has no input_shape"),
    (_set(["compile", "loss"], {"name": "nope"}), "compile settings are invalid: unknown loss"),
    (_set(["compile", "optimizer", "name"], "lbfgs"), "compile settings are invalid: unknown optimizer"),
    (_set(["compile", "metrics"], "accuracy"), "must be a list of metric names"),
    (_set(["compile", "reduction"], "rows"), "compile settings are invalid: reduction must be one of"),
    (_set(["compile", "reduction"], ["batch"]), "compile settings are invalid: reduction must be one of"),
    (_set(["metadata"], [1]), "'metadata' must be a JSON object"),
    (_set(["rng", "state", "inc"], -1), "'rng' is not a valid PCG64 state"),
    (_set(["rng", "bit_generator"], "MT19937"), "'rng' is for bit generator 'MT19937'"),
])
def test_bad_description(tmp_path, trained_file, edit, message):
    path = edit_document(trained_file, tmp_path / "m.barenet", edit)
    with pytest.raises(ModelFileError, match=message):
        bn.load(path)


@pytest.mark.parametrize(("member", "array", "message"), [
    ("weights/layers.0.kernel.npy", np.zeros((4, 9), np.float32), r"has shape \(4, 9\); .* needs \(4, 8\)"),
    ("weights/layers.0.kernel.npy", np.zeros((4, 8), np.float64), "has dtype <f8; .* needs <f4"),
    ("weights/layers.0.kernel.npy", np.zeros((4, 8), ">f4"), "has dtype >f4; .* needs <f4"),
    ("weights/layers.1.moving_mean.npy", np.full(8, np.nan, np.float32), "holds 8 NaN or infinite values"),
    ("optimizer/iterations.npy", np.array(-1, np.int64), "iterations is -1; expected >= 0"),
    ("optimizer/v_sum/layers.0.bias.npy", np.zeros(8, np.float32).reshape(2, 4), r"has shape \(2, 4\)"),
])
def test_wrong_arrays(tmp_path, trained_file, member, array, message):
    path = rewrite(trained_file, tmp_path / "m.barenet", replace={member: npy_bytes(array)})
    with pytest.raises(ModelFileError, match=message):
        bn.load(path)


def test_array_member_that_is_not_npy(tmp_path, trained_file):
    path = rewrite(trained_file, tmp_path / "m.barenet", replace={"weights/layers.0.bias.npy": b"hello world"})
    with pytest.raises(ModelFileError, match=r"layers.0.bias.npy is not a valid \.npy array"):
        bn.load(path)


def test_array_with_trailing_bytes(tmp_path, trained_file):
    data = npy_bytes(np.zeros(8, np.float32)) + b"\0" * 4
    path = rewrite(trained_file, tmp_path / "m.barenet", replace={"weights/layers.0.bias.npy": data})
    with pytest.raises(ModelFileError, match="holds 36 data bytes"):
        bn.load(path)


def test_missing_array(tmp_path, trained_file):
    path = rewrite(trained_file, tmp_path / "m.barenet", drop={"weights/layers.3.bias.npy"})
    with pytest.raises(ModelFileError, match=r"arrays missing .*\['weights/layers.3.bias.npy'\]"):
        bn.load(path)


@pytest.mark.parametrize("name", ["weights/layers.9.kernel.npy", "optimizer/velocity/layers.0.kernel.npy",
                                  "../../etc/passwd", "notes.txt"])
def test_extra_array(tmp_path, trained_file, name):
    path = rewrite(trained_file, tmp_path / "m.barenet", add={name: npy_bytes(np.zeros(2))})
    with pytest.raises(ModelFileError, match="unexpected members"):
        bn.load(path)


def test_duplicate_members(tmp_path, trained_file):
    path = tmp_path / "m.barenet"
    path.write_bytes(trained_file.read_bytes())
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("weights/layers.0.bias.npy", npy_bytes(np.ones(8, np.float32)))
    with pytest.raises(ModelFileError, match="duplicate member names"):
        bn.load(path)


# --------------------------------------------------------------------- resource limits
def measured_load(path: Path) -> tuple[BaseException | None, int, float]:
    """``(error or None, peak traced bytes, CPU seconds)`` of ``bn.load(path)`` (CPU time, which other jobs
    on a busy machine do not stretch)."""
    tracemalloc.start()
    start = time.process_time()
    try:
        bn.load(path)
        error = None
    except Exception as exc:  # noqa: BLE001 - the caller checks the type
        error = exc
    seconds = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return error, peak, seconds


def json_only_file(path: Path, layers: list[dict], input_shape: list[int]) -> Path:
    """A model file holding only a description (no arrays)."""
    document = {"format": "barenet-model", "version": 1, "barenet_version": "0", "compile": None, "rng": None,
                "metadata": {}, "model": {"name": None, "dtype": "float32", "seed": 0, "input_shape": input_shape,
                                          "layers": layers}}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("barenet.json", json.dumps(document, separators=(",", ":")))
    return path


def test_tiny_file_describing_two_dense_6000_is_refused_without_building_them(tmp_path):
    dense = {"class": "Dense", "config": {"units": 6000}}
    path = json_only_file(tmp_path / "m.barenet", [dense, dense], [6000])
    assert path.stat().st_size < 450
    error, peak, seconds = measured_load(path)
    assert isinstance(error, ModelFileError) and "needs at least 144024000 bytes" in str(error), error
    assert peak < 2**20, f"{peak} bytes traced"  # the two kernels alone are 288 MB
    assert seconds < 5


def test_architecture_inserted_into_a_small_file_is_refused_by_the_size_budget(tmp_path, trained_file):
    path = edit_document(trained_file, tmp_path / "m.barenet", _set(["model", "layers", 0, "config", "units"], 10**7))
    error, peak, _ = measured_load(path)
    assert isinstance(error, ModelFileError)
    assert "needs at least 200000000 bytes of arrays" in str(error) and "hold only" in str(error), error
    assert peak < 2**20, f"{peak} bytes traced"


def lstm_file(path: Path, units: int = 3) -> Path:
    model = bn.Sequential([bn.layers.LSTM(units, input_shape=(5, 4)), bn.layers.Dense(2)], seed=0)
    model.compile("mse", "adam")
    model.fit(np.zeros((8, 5, 4)), np.zeros((8, 2)), epochs=1, verbose=0)
    bn.save(model, path)
    return path


def test_lstm_4000_inserted_into_a_small_file_is_refused_fast(tmp_path):
    real = lstm_file(tmp_path / "real.barenet")
    path = edit_document(real, tmp_path / "m.barenet", _set(["model", "layers", 0, "config", "units"], 4000))
    error, peak, seconds = measured_load(path)
    assert isinstance(error, ModelFileError) and "hold only" in str(error), error
    assert peak < 2**20, f"{peak} bytes traced"  # the orthogonal initializer alone would take 512 MB
    assert seconds < 5


def test_npy_header_that_is_not_a_dict_gives_model_file_error(tmp_path, trained_file):
    text = b"((((" + b" " * 115 + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(32)
    path = rewrite(trained_file, tmp_path / "m.barenet", replace={"weights/layers.0.bias.npy": member})
    with pytest.raises(ModelFileError, match=r"layers.0.bias.npy is not a valid \.npy array: .*not a dict literal"):
        bn.load(path)


@pytest.mark.parametrize("header", [
    "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), 'evil': __import__('os'), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (8,), 'descr': '<f4', }",
    "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (8,), }",
    "{'descr': '<f4', 'fortran_order': 0, 'shape': (8,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': (-8,), }",
    "{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 5000 + "}",
])
def test_npy_headers_outside_numpys_form_are_refused(tmp_path, trained_file, header):
    text = header.encode() + b"\n"
    member = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(32)
    path = rewrite(trained_file, tmp_path / "m.barenet", replace={"weights/layers.0.bias.npy": member})
    with pytest.raises(ModelFileError, match=r"layers.0.bias.npy is not a valid \.npy array"):
        bn.load(path)


def test_fortran_ordered_member_still_loads(tmp_path, trained_file):
    kernel = bn.load(trained_file).layers[0].params["kernel"].copy()
    path = rewrite(trained_file, tmp_path / "m.barenet",
                   replace={"weights/layers.0.kernel.npy": npy_bytes(np.asfortranarray(kernel))})
    assert np.array_equal(bn.load(path).layers[0].params["kernel"], kernel)


def declare_size(raw: bytes, name: str, size: int) -> bytes:
    """``raw`` (a zip archive) with ``name``'s uncompressed size set to ``size`` in both of its headers."""
    out, encoded = bytearray(raw), name.encode()
    local = raw.index(b"PK\x03\x04")
    while raw[local + 30:local + 30 + len(encoded)] != encoded:
        local = raw.index(b"PK\x03\x04", local + 4)
    out[local + 22:local + 26] = size.to_bytes(4, "little")
    central = raw.index(b"PK\x01\x02")
    while raw[central + 46:central + 46 + len(encoded)] != encoded:
        central = raw.index(b"PK\x01\x02", central + 4)
    out[central + 24:central + 28] = size.to_bytes(4, "little")
    return bytes(out)


def zeros_deflated(mebibytes: int) -> bytes:
    """A raw deflate stream of ``mebibytes`` MiB of zeros, built in milliseconds: after a full flush a
    block refers to nothing before it, so one compressed MiB can be repeated."""
    one = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = one.compress(bytes(2**20)) + one.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def zip_with_raw_member(src: Path, dst: Path, name: str, stream: bytes, declared: int, crc: int) -> Path:
    """``src``'s members, with ``name`` replaced by the raw deflate ``stream`` declaring ``declared`` bytes."""
    members = []
    with zipfile.ZipFile(src) as archive:
        for other in archive.namelist():
            if other != name:
                data = archive.read(other)
                members.append((other, 0, data, len(data), zlib.crc32(data)))
    members.append((name, 8, stream, declared, crc))
    out, central = bytearray(), bytearray()
    for member, method, data, size, checksum in members:
        encoded = member.encode()
        fields = struct.pack("<HHHHHIIIHH", 20, 0, method, 0, 33, checksum, len(data), size, len(encoded), 0)
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHII", 0, 0, 0, 0, len(out))
        central += encoded
        out += b"PK\x03\x04" + fields + encoded + data
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(out), 0)
    dst.write_bytes(bytes(out + central + end))
    return dst


@pytest.mark.parametrize("declared", [512, 256])
def test_member_inflating_past_its_declared_size_is_never_inflated_whole(tmp_path, trained_file, declared):
    """A 1 MB member inflating to 1 GiB whose entry claims 512 bytes (or exactly its array's 256): refused
    after one bounded read, by the header's size or the CRC of the declared bytes."""
    stream = zeros_deflated(1024)
    path = zip_with_raw_member(trained_file, tmp_path / "bomb.barenet", "weights/layers.0.kernel.npy", stream,
                               declared, crc=0)
    assert path.stat().st_size < 2 * 2**20
    with zipfile.ZipFile(path) as archive:  # the archive itself is well formed
        assert archive.getinfo("weights/layers.0.kernel.npy").file_size == declared
    error, peak, seconds = measured_load(path)
    assert isinstance(error, ModelFileError), error
    assert peak < 8 * 2**20, f"{peak} bytes traced"
    assert seconds < 5


def test_members_claiming_more_than_the_file_can_inflate_to_are_refused_unread(tmp_path, trained_file):
    member = "weights/layers.0.bias.npy"
    path = rewrite(trained_file, tmp_path / "m.barenet", replace={member: npy_bytes(np.zeros(8, np.float32))})
    path.write_bytes(declare_size(path.read_bytes(), member, 2**31))
    with pytest.raises(ModelFileError, match="refusing a possible zip bomb"):
        bn.load(path)


def test_bzip2_member_is_refused(tmp_path, trained_file):
    path = tmp_path / "m.barenet"
    with zipfile.ZipFile(trained_file) as zin, zipfile.ZipFile(path, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name), compress_type=zipfile.ZIP_BZIP2 if "bias" in name else None)
    with pytest.raises(ModelFileError, match="compression method 12; only stored and deflated"):
        bn.load(path)


def test_deflated_copy_of_a_model_file_loads(tmp_path, trained_file):
    path = tmp_path / "m.barenet"
    with zipfile.ZipFile(trained_file) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
    X, _ = make_data()
    assert np.array_equal(bn.load(path).predict(X), bn.load(trained_file).predict(X))


def recurrent_and_conv_models() -> list[tuple[bn.Sequential, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, (16, 5))
    seq = bn.Sequential([bn.layers.Embedding(20, 4, input_length=5),
                         bn.layers.Bidirectional(bn.layers.LSTM(3, return_sequences=True)),
                         bn.layers.GRU(2), bn.layers.Dense(2, activation="softmax")], seed=1)
    seq.compile("sparse_categorical_crossentropy", "adam")
    images = rng.normal(size=(8, 6, 6, 2))
    cnn = bn.Sequential([bn.layers.Conv2D(3, 3, input_shape=(6, 6, 2)), bn.layers.BatchNormalization(),
                         bn.layers.MaxPooling2D(2), bn.layers.Flatten(), bn.layers.Dense(2)], seed=2)
    cnn.compile("mse", "sgd")
    return [(seq, tokens, np.arange(16) % 2), (cnn, images, rng.normal(size=(8, 2)))]


def test_loading_draws_no_initial_weights(tmp_path, monkeypatch):
    """Weights the file overwrites are never drawn: no initializer runs while loading (no orthogonalization)."""
    for i, (model, X, y) in enumerate(recurrent_and_conv_models()):
        model.fit(X, y, epochs=1, batch_size=4, verbose=0)
        bn.save(model, tmp_path / f"{i}.barenet")
    calls = []
    for name, init in list(bn.initializers._BY_NAME.items()):
        monkeypatch.setitem(bn.initializers._BY_NAME, name, _spy(init, name, calls))
    fresh = recurrent_and_conv_models()  # built at construction, through the spies
    assert calls
    for i, (model, _, _) in enumerate(fresh):
        calls.clear()
        loaded = bn.load(tmp_path / f"{i}.barenet")
        assert calls == []
        assert loaded.built and loaded.get_config()["layers"] == model.get_config()["layers"]


def _spy(init, name, calls):
    def spy(shape, fan_in, fan_out, rng, dtype):
        calls.append(name)
        return init(shape, fan_in, fan_out, rng, dtype)
    return spy


def test_recurrent_and_conv_models_round_trip(tmp_path):
    for i, (model, X, y) in enumerate(recurrent_and_conv_models()):
        model.fit(X, y, epochs=2, batch_size=4, verbose=0)
        bn.save(model, tmp_path / f"{i}.barenet")
        loaded = bn.load(tmp_path / f"{i}.barenet")
        assert np.array_equal(loaded.predict(X), model.predict(X))
        assert loaded.optimizer.iterations == model.optimizer.iterations


def test_sample_shape_beyond_the_limit_is_refused_before_building(tmp_path):
    layers = [{"class": "MaxPooling2D", "config": {"pool_size": [2, 2]}}]
    path = json_only_file(tmp_path / "m.barenet", layers, [100000, 100000, 1])
    error, peak, _ = measured_load(path)
    assert isinstance(error, ModelFileError) and "may describe samples of at most" in str(error), error
    assert peak < 2**20



def _graph_with_a_big_dense() -> dict:
    """A graph description whose one Dense layer, built, holds 4000 x 20000 floats (320 MB)."""
    return {"name": "m", "dtype": "float32", "seed": 0, "layers": [{"class": "Dense", "config": {"name": "big",
                                                                                                   "units": 4000}}],
            "inputs": [{"name": "x", "shape": [20000], "integer": False}],
            "nodes": [{"layer": 0, "inputs": [["input", 0]], "single": True}], "outputs": [["node", 0]],
            "single_input": True, "single_output": True}


@pytest.mark.parametrize("spec, message", [
    ({"class": "Model", "config": _graph_with_a_big_dense()}, "layer 0 of the Sequential model is a Model"),
    ({"class": "Bidirectional", "config": {"layer": {"class": "Model", "config": _graph_with_a_big_dense()}}},
     "unknown layer type 'Model'"),
])
def test_a_model_inside_a_sequential_description_is_refused_before_it_is_built(tmp_path, spec, message):
    path = json_only_file(tmp_path / "m.barenet", [spec, {"class": "Dense", "config": {"units": 2}}], [3])
    error, peak, seconds = measured_load(path)
    assert isinstance(error, ModelFileError) and message in str(error), error
    assert peak < 2**20, f"{peak} bytes traced"
    assert seconds < 5


def _parameterless(i: int, name: str | None = None) -> dict:
    config = [{}, {}, {"rate": 0.1}][i % 3]
    return {"class": ["ReLU", "Flatten", "Dropout"][i % 3], "config": {**config, **({"name": name} if name else {})}}


def sequential_of(folder: Path, n: int) -> Path:
    """A Sequential file of ``n`` layers: Dense(4) then ReLU, Flatten and Dropout in turn."""
    bn.save(bn.Sequential([bn.layers.Dense(4, input_dim=4)], seed=0), folder / "dense.barenet")
    more = [_parameterless(i) for i in range(n - 1)]
    return edit_document(folder / "dense.barenet", folder / f"sequential-{n}.barenet",
                         lambda document: document["model"]["layers"].extend(more))


def graph_of(folder: Path, calls: int) -> Path:
    """A graph file of one input and ``calls`` calls in a chain: Dense(4) then ReLU, Flatten and Dropout, each a
    layer of its own."""
    x = bn.Input(shape=(4,), name="x")
    bn.save(bn.Model(x, bn.layers.Dense(4, name="dense")(x), seed=0), folder / "dense.barenet")

    def edit(document):
        graph = document["model"]
        graph["layers"] += [_parameterless(i, f"p{i}") for i in range(calls - 1)]
        graph["nodes"] += [{"layer": i, "inputs": [["node", i - 1]], "single": True} for i in range(1, calls)]
        graph["outputs"] = [["node", calls - 1]]
    return edit_document(folder / "dense.barenet", folder / f"graph-{calls}.barenet", edit)


@pytest.mark.parametrize("make, most, message", [
    (sequential_of, bn.io.MAX_LAYERS, r"the model has 10001 layers; barenet loads Sequential models of at most "
                                      r"10000 layers"),
    (graph_of, bn.io.MAX_GRAPH_NODES - 1, r"the graph describes more than 10000 nodes \(inputs and layer calls"),
])
def test_a_file_of_the_most_layers_loads_in_seconds_and_one_more_is_refused(tmp_path, make, most, message):
    path = make(tmp_path, most)
    start = time.process_time()  # CPU time: a busy machine does not stretch it
    model = bn.load(path)
    seconds = time.process_time() - start
    assert len(model.layers) == most
    assert seconds < 5, f"{seconds:.1f} CPU s"
    with pytest.raises(ModelFileError, match=message):
        bn.load(make(tmp_path, most + 1))

# --------------------------------------------------------------------- ModelCheckpoint
class Snapshot(bn.callbacks.Callback):
    """Records predictions at the end of each epoch, with the epoch's logs."""

    def __init__(self, X):
        self.X, self.epochs = X, []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((dict(logs), self.model.predict(self.X)))


def _regression(n: int = 48, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=n)


def test_checkpoint_save_best_only_keeps_the_best_val_loss_model(tmp_path):
    X, y = _regression()
    Xv, yv = _regression(seed=2)
    model = bn.Sequential([bn.layers.Dense(1, input_dim=3)], seed=0, dtype="float64")
    # A learning rate this large makes the loss oscillate, so later epochs are not always better.
    model.compile(loss="mse", optimizer=bn.optimizers.SGD(0.9))
    snapshot = Snapshot(Xv)
    path = tmp_path / "best.barenet"
    checkpoint = bn.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    history = model.fit(X, y, epochs=8, batch_size=None, validation_data=(Xv, yv), verbose=0,
                        callbacks=[checkpoint, snapshot])

    val_losses = history.history["val_loss"]
    assert np.argmin(val_losses) != len(val_losses) - 1, "the scenario needs a best epoch before the last"
    best = int(np.argmin(val_losses))
    assert checkpoint.best == val_losses[best]
    assert np.array_equal(bn.load(path).predict(Xv), snapshot.epochs[best][1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.barenet"]


def test_checkpoint_formats_epoch_and_logs_into_the_file_name(tmp_path):
    X, y = _regression()
    model = bn.Sequential([bn.layers.Dense(1, input_dim=3)], seed=0)
    model.compile(loss="mse", optimizer="sgd")
    checkpoint = bn.callbacks.ModelCheckpoint(tmp_path / "ckpt-{epoch:02d}-{loss:.1f}.barenet", monitor="loss")
    history = model.fit(X, y, epochs=3, verbose=0, callbacks=[checkpoint])
    expected = [f"ckpt-{e + 1:02d}-{loss:.1f}.barenet" for e, loss in enumerate(history.history["loss"])]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)
    assert bn.load(tmp_path / expected[-1]).optimizer.iterations == model.optimizer.iterations


def test_checkpoint_into_a_missing_folder_is_refused_before_the_first_epoch(tmp_path):
    X, y = _regression()
    model = bn.Sequential([bn.layers.Dense(1, input_dim=3)], seed=0)
    model.compile(loss="mse", optimizer="sgd")
    before = model.get_weights()
    checkpoint = bn.callbacks.ModelCheckpoint(tmp_path / "nodir" / "ckpt-{epoch:02d}.barenet", monitor="loss")
    with pytest.raises(OutputError) as caught:
        model.fit(X, y, epochs=3, verbose=0, callbacks=[checkpoint])
    assert f"cannot write checkpoint {str(tmp_path / 'nodir' / 'ckpt-{epoch:02d}.barenet')!r}: folder " \
           f"{str(tmp_path / 'nodir')!r} does not exist" in str(caught.value)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before, strict=True))  # no epoch ran
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("save_best_only", [True, False])
def test_checkpoint_is_not_overwritten_when_training_diverges(tmp_path, save_best_only):
    X, y = _regression()
    model = bn.Sequential([bn.layers.Dense(1, input_dim=3)], seed=0, dtype="float64")
    model.compile(loss="mse", optimizer=bn.optimizers.SGD(0.01))
    snapshot = Snapshot(X)
    path = tmp_path / "ckpt.barenet"
    checkpoint = bn.callbacks.ModelCheckpoint(path, monitor="loss", save_best_only=save_best_only)
    # From the third epoch on, a huge learning rate sends the loss to infinity and then NaN.
    blow_up = bn.callbacks.LearningRateScheduler(lambda epoch, lr: 1e300 if epoch >= 2 else 0.01)
    terminate = bn.callbacks.TerminateOnNaN(stream=io.StringIO())
    with np.errstate(over="ignore", invalid="ignore"):
        history = model.fit(X, y, epochs=6, batch_size=8, shuffle=False, verbose=0,
                            callbacks=[blow_up, checkpoint, terminate, snapshot])

    assert terminate.terminated_at is not None and terminate.terminated_at[0] == 2
    assert not np.isfinite(history.history["loss"][-1])
    saved = bn.load(path)
    assert np.array_equal(saved.predict(X), snapshot.epochs[1][1])
    assert saved.optimizer.iterations == 2 * 6


def test_adam_state_saved_as_moments_by_earlier_versions_is_converted(tmp_path, trained_file):
    """Files whose Adam slots are the moments m and v (not the sums m_sum, v_sum) load and resume alike."""
    with zipfile.ZipFile(trained_file) as archive:
        sums = {name: np.load(io.BytesIO(archive.read(name))) for name in archive.namelist()
                if name.startswith("optimizer/") and "_sum/" in name}
    legacy = {}
    for name, value in sums.items():
        slot, factor = ("m", 1 - 0.9) if "/m_sum/" in name else ("v", 1 - 0.999)
        legacy[name.replace(f"/{slot}_sum/", f"/{slot}/")] = npy_bytes((value * np.float32(factor)).astype(np.float32))
    path = rewrite(trained_file, tmp_path / "old.barenet", drop=set(sums), add=legacy)
    old, new = bn.load(path), bn.load(trained_file)
    for key, value in new.optimizer.get_state().items():
        np.testing.assert_allclose(old.optimizer.get_state()[key], value, rtol=1e-6, atol=1e-30)
    X, y = make_data()
    for model in (old, new):
        model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(old.get_weights(), new.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_gelu_saved_before_the_exact_form_existed_loads_as_the_tanh_form(tmp_path):
    """A file written when "gelu" meant the tanh approximation (a Dense's activation "gelu", a GELU layer whose
    config is empty) loads to that approximation and predicts what it predicted; new files say which form."""
    L = bn.layers
    model = bn.Sequential([L.Dense(5, activation=L.GELU(approximate=True), input_dim=4), L.GELU(approximate=True),
                           L.Dense(2, activation="gelu")], seed=0, dtype="float64")
    model.build()
    bn.save(model, tmp_path / "new.barenet")
    with zipfile.ZipFile(tmp_path / "new.barenet") as archive:
        layers = json.loads(archive.read("barenet.json"))["model"]["layers"]
    assert [spec["config"].get("activation") for spec in layers] == [
        {"kind": "gelu", "approximate": True}, None, {"kind": "gelu", "approximate": False}]
    assert layers[1]["config"] == {"approximate": True}

    def to_old_format(document):
        first, second, _ = document["model"]["layers"]
        first["config"]["activation"] = "gelu"
        del second["config"]["approximate"]

    old = bn.load(edit_document(tmp_path / "new.barenet", tmp_path / "old.barenet", to_old_format))
    assert [old.layers[0].activation.approximate, old.layers[1].approximate, old.layers[2].activation.approximate] \
        == [True, True, False]
    X = make_data()[0]
    np.testing.assert_array_equal(old.predict(X), model.predict(X))
    np.testing.assert_array_equal(bn.load(tmp_path / "new.barenet").predict(X), model.predict(X))


# --------------------------------------------------------------------- metadata schema
@pytest.fixture(scope="module")
def cli_model(tmp_path_factory) -> tuple[Path, Path]:
    """A classification model with the metadata ``barenet train`` writes (numeric and text columns), and its CSV."""
    import pandas as pd

    from barenet.preprocessing import TablePreprocessor

    folder = tmp_path_factory.mktemp("cli_model")
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 30)
    frame = pd.DataFrame({"size": label + rng.normal(0, 0.3, 30), "soil": np.array(["clay", "sand", "loam"])[label],
                          "kind": np.array(["a", "b", "c"])[label]})
    frame.to_csv(folder / "data.csv", index=False)
    prep = TablePreprocessor("kind").fit({name: frame[name].to_numpy() for name in frame})
    model = bn.Sequential([bn.layers.Dense(4, activation="relu", input_dim=len(prep.feature_names)),
                           bn.layers.Dense(3, activation="softmax")], seed=0)
    model.compile("sparse_categorical_crossentropy", "adam", metrics=["accuracy"])
    X = prep.transform({name: frame[name].to_numpy() for name in frame})
    history = model.fit(X, prep.encode_target(frame["kind"].to_numpy()), epochs=2, verbose=0)
    model.metadata = {"preprocessing": prep.to_json(), "history": history.history, "training": {"epochs": 2}}
    bn.save(model, folder / "m.barenet")
    return folder / "m.barenet", folder / "data.csv"


def _prep(*keys, value):
    return _set(["metadata", "preprocessing", *keys], value)


def _drop(*keys):
    def edit(document):
        target = document["metadata"]
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return edit


# (edit, message, command): each damaged form is also run through one of the three commands.
DAMAGED_METADATA = [
    (_prep(value="standard"), "metadata.preprocessing must be a JSON object, got a string", "summary"),
    (_prep(value=[1, 2]), "metadata.preprocessing must be a JSON object, got a list", "predict"),
    (_prep("columns", value={"size": 1}), "metadata.preprocessing.columns must be a non-empty list", "evaluate"),
    (_drop("preprocessing", "columns", 0, "name"), "columns[0] needs a 'name' that is a string", "summary"),
    (_drop("preprocessing", "columns", 0, "kind"), "needs a 'kind' of 'numeric' or 'categorical'", "predict"),
    (_prep("columns", 1, "categories", value=7), "columns[1].categories must be a list of strings", "evaluate"),
    (_prep("classes", value=[]), "must list at least two classes", "summary"),
    (_prep("classes", value=["a", "b"]), "describes 2 classes, but the model has 3 outputs", "predict"),
    (_prep("columns", 0, "center", value="0.5"), "columns[0].center must be a finite number", "evaluate"),
    (_prep("target_scale", value=0), "target_scale must be a finite number > 0", "summary"),
    (_set(["metadata", "history"], "loss"), "metadata.history must be an object", "evaluate"),
    (_set(["metadata", "history"], None), "metadata.history must be an object of per-epoch lists, got null",
     "evaluate"),
    (_set(["metadata", "history", "loss"], ["low", "lower"]), "metadata.history.loss holds a string 'low'", "evaluate"),
    (_set(["metadata", "history", "loss"], [None]), "lists have different lengths [1, 2]", "evaluate"),
]


@pytest.mark.parametrize(("edit", "message", "command"), DAMAGED_METADATA)
def test_damaged_metadata_is_refused_at_load_with_one_clear_message(tmp_path, cli_model, edit, message, command):
    path = edit_document(cli_model[0], tmp_path / "m.barenet", edit)
    with pytest.raises(MetadataError) as info:
        bn.load(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("edit", "message", "command"), DAMAGED_METADATA)
def test_cli_on_damaged_metadata_prints_one_error_line_and_exits_2(tmp_path, cli_model, edit, message, command):
    path = edit_document(cli_model[0], tmp_path / "m.barenet", edit)
    args = {"summary": [path], "predict": [path, cli_model[1]],
            "evaluate": [path, cli_model[1], "--target", "kind", "--report", tmp_path / "report"]}[command]
    result = subprocess.run([sys.executable, "-m", "barenet", command, *map(str, args)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("barenet: error: ") and message in lines[0], result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "report").exists()


def test_history_with_nulls_for_non_finite_epochs_still_loads(tmp_path, cli_model):
    path = edit_document(cli_model[0], tmp_path / "m.barenet", _set(["metadata", "history", "loss"], [None, 0.5]))
    assert bn.load(path).metadata["history"]["loss"] == [None, 0.5]


@pytest.mark.parametrize("kind", [["numeric"], {"numeric": 1}, 3, None])
def test_column_kind_of_another_json_type_is_a_schema_error(tmp_path, cli_model, kind):
    """Found by the fuzzer: a list as a column's kind raised TypeError (unhashable) in the schema check."""
    path = edit_document(cli_model[0], tmp_path / "m.barenet", _prep("columns", 0, "kind", value=kind))
    with pytest.raises(MetadataError, match=r"columns\[0\] \('size'\) needs a 'kind' of 'numeric' or 'categorical'"):
        bn.load(path)
