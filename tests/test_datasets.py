"""IDX parsing and the Fashion-MNIST loader, on small IDX files written here (and the real files when installed)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import barenet as bn
from barenet.datasets import DEFAULT_DATA_DIR, FASHION_MNIST_FILES, load_fashion_mnist, parse_idx, read_idx
from barenet.errors import DataError

CODES = {np.dtype(dt): code for code, dt in bn.datasets.IDX_DTYPES.items()}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode ``array`` as an IDX file, independently of the reader under test."""
    array = np.asarray(array)
    code = CODES[array.dtype.newbyteorder(">")] if array.dtype.itemsize > 1 else CODES[np.dtype(array.dtype)]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    data = idx_bytes(array)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_fashion(folder: Path, n_train: int = 6, n_test: int = 4, gz: bool = True, seed: int = 0) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in FASHION_MNIST_FILES.items():
        write_idx(folder / stem, arrays[key], gz)
    return arrays


# --------------------------------------------------------------------- read_idx
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = write_idx(tmp_path / "a-idx3", array, gz)
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert np.array_equal(out, array)
    out[0, 0, 0] = 1  # the result is an ordinary writable array


def test_read_idx_hand_written_bytes():
    raw = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    assert parse_idx(raw).tolist() == [[1, 2, 3], [4, 5, 6]]
    raw = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])
    assert parse_idx(raw).tolist() == [258, -2]


@pytest.mark.parametrize(("raw", "message"), [
    (b"", "shorter than the 4-byte IDX magic number"),
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 7]), "does not start with an IDX magic number"),
    (bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 7]), "type code 0x0A; expected one of 0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E"),
    (bytes([0, 0, 8, 3, 0, 0, 0, 1]), "declares 3 dimensions but is only 8 bytes"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2]), r"has shape \(3,\) of uint8, which needs 3 data bytes, but holds 2"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "needs 1 data bytes, but holds 2"),
    (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 1, 2]), r"float32, which needs 4 data bytes"),
])
def test_parse_idx_rejects_bad_headers(raw, message):
    with pytest.raises(DataError, match=message):
        parse_idx(raw, "x.idx")


def test_read_idx_missing_and_bad_gzip(tmp_path):
    with pytest.raises(DataError, match="does not exist or is not a file"):
        read_idx(tmp_path / "none-idx1-ubyte")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read IDX file .*bad.gz"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:30])
    with pytest.raises(DataError, match="cannot read IDX file .*cut.gz"):
        read_idx(tmp_path / "cut.gz")


idx_arrays = st.sampled_from(["u1", "i1", ">i2", ">i4", ">f4", ">f8"]).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))


@given(array=idx_arrays)
def test_property_idx_round_trip(array):
    out = parse_idx(idx_bytes(array))
    assert out.shape == array.shape and out.dtype == array.dtype.newbyteorder("=")
    assert np.array_equal(out, array, equal_nan=array.dtype.kind == "f")


@given(array=idx_arrays, data=st.data())
def test_property_corrupted_idx_raises_data_error_or_parses_consistently(array, data):
    raw = bytearray(idx_bytes(array))
    header = 4 + 4 * array.ndim
    kind = data.draw(st.sampled_from(["header byte", "truncate", "append"]))
    if kind == "header byte":
        i = data.draw(st.integers(0, header - 1))
        raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=16))
    try:
        out = parse_idx(bytes(raw))
    except DataError:
        return
    # A corruption can still describe a valid file (say, a dimension byte swapped with the data);
    # then the parse must account for every byte.
    assert 4 + 4 * out.ndim + out.nbytes == len(raw)


# --------------------------------------------------------------------- Fashion-MNIST
@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_from_path(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz=gz)
    (X_train, y_train), (X_test, y_test) = load_fashion_mnist(tmp_path)
    assert X_train.shape == (6, 28, 28) and X_train.dtype == np.uint8
    assert y_train.shape == (6,) and y_train.dtype == np.uint8
    assert X_test.shape == (4, 28, 28) and y_test.shape == (4,)
    assert np.array_equal(X_train, arrays["train_images"]) and np.array_equal(y_test, arrays["test_labels"])


@pytest.mark.parametrize("sub", ["", "fashion-mnist"])
def test_load_fashion_mnist_from_environment(tmp_path, monkeypatch, sub):
    arrays = write_fashion(tmp_path / sub if sub else tmp_path, gz=False)
    monkeypatch.setenv("BARENET_DATA", str(tmp_path))
    (X_train, _), _ = load_fashion_mnist()
    assert np.array_equal(X_train, arrays["train_images"])


def test_missing_files_say_where_and_how(tmp_path, monkeypatch):
    write_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as info:
        load_fashion_mnist(tmp_path)
    message = str(info.value)
    assert f"Looked in '{tmp_path}' (missing: t10k-labels-idx1-ubyte)" in message
    assert "apt-get install dataset-fashion-mnist" in message and "BARENET_DATA" in message

    monkeypatch.setenv("BARENET_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"empty' \(missing: .*; '.*empty/fashion-mnist' \(missing"):
        load_fashion_mnist()


def test_label_count_must_match_image_count(tmp_path):
    write_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8), gz=True)
    with pytest.raises(DataError, match="the train split has 6 images but 5 labels"):
        load_fashion_mnist(tmp_path)


@pytest.mark.parametrize(("stem", "array", "message"), [
    ("train-images-idx3-ubyte", np.zeros((6, 28, 27), np.uint8), r"images of shape \(6, 28, 27\); expected uint8"),
    ("t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.float32), "holds float32 images"),
    ("t10k-labels-idx1-ubyte", np.zeros((4, 1), np.uint8), r"labels of shape \(4, 1\); expected uint8 \(n,\)"),
    ("train-labels-idx1-ubyte", np.full(6, 10, np.uint8), "has label 10; Fashion-MNIST labels are 0..9"),
])
def test_files_of_the_wrong_kind(tmp_path, stem, array, message):
    write_fashion(tmp_path)
    write_idx(tmp_path / stem, array, gz=True)
    with pytest.raises(DataError, match=message):
        load_fashion_mnist(tmp_path)


def test_corrupt_file_names_the_file(tmp_path):
    write_fashion(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x03\0\0\0\x06"))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz declares 3 dimensions"):
        load_fashion_mnist(tmp_path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_train=st.integers(0, 5), n_test=st.integers(0, 5), gz=st.booleans())
def test_property_loader_returns_what_was_written(tmp_path, n_train, n_test, gz):
    folder = tmp_path / f"{n_train}-{n_test}-{gz}"
    arrays = write_fashion(folder, n_train, n_test, gz=gz)
    (X_train, y_train), (X_test, y_test) = load_fashion_mnist(folder)
    for got, key in ((X_train, "train_images"), (y_train, "train_labels"), (X_test, "test_images"),
                     (y_test, "test_labels")):
        assert got.dtype == np.uint8 and np.array_equal(got, arrays[key])


@pytest.mark.skipif(not all((DEFAULT_DATA_DIR / f"{s}.gz").is_file() for s in FASHION_MNIST_FILES.values()),
                    reason="the Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv("BARENET_DATA", raising=False)
    (X_train, y_train), (X_test, y_test) = load_fashion_mnist()
    assert X_train.shape == (60000, 28, 28) and X_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert X_train.dtype == y_train.dtype == np.uint8
    assert sorted(np.unique(y_train)) == list(range(10)) and sorted(np.unique(y_test)) == list(range(10))
    assert np.bincount(y_train).tolist() == [6000] * 10
