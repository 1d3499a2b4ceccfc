"""bn.data: the Dataset stages (batch, shuffle, take/skip, map, prefetch) and the sources (arrays, .npy, Parquet,
CSV, Dask), with the readers fuzzed over mutated real files.

The prefetch tests involve a background thread: run them 200 times in a row before changing them
(``python -m pytest tests/test_data.py -n 0 -p no:randomly --count 200 -k prefetch``).
"""

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barenet as bn
from barenet.errors import BarenetError, ConfigError, DataError, StreamError


def _ids(dataset, epoch=0, index=1):
    return np.concatenate([np.asarray(e[index] if isinstance(e, tuple) else e["id"]) for e in dataset.iterate(epoch)])


def _arrays(n=100):
    x = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    return x, np.arange(n)


# --------------------------------------------------------------------- stages
def test_batch_joins_blocks_into_batches_of_exactly_the_size():
    x, y = _arrays(100)
    ds = bn.data.from_arrays(x, y, block_rows=7).batch(16)
    sizes = [len(b[1]) for b in ds]
    assert sizes == [16] * 6 + [4] and ds.rows == 100 and ds.steps == 7
    np.testing.assert_array_equal(_ids(ds), y)
    dropped = bn.data.from_arrays(x, y, block_rows=7).batch(16, drop_remainder=True)
    assert [len(b[1]) for b in dropped] == [16] * 6 and dropped.rows == 96


def test_shuffle_is_a_permutation_reproducible_per_epoch():
    x, y = _arrays(200)
    ds = bn.data.from_arrays(x, y, block_rows=10).shuffle(50, seed=3).batch(32)
    first, again, second = _ids(ds, 0), _ids(ds, 0), _ids(ds, 1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(first), y)
    # x travels with y: each row stays whole
    rows = np.concatenate([b[0] for b in ds.iterate(0)])
    np.testing.assert_array_equal(rows[:, 0], first * 2)
    # the part order is shuffled too: the first buffer is not rows 0..49
    assert set(first[:50]) != set(range(50))
    with pytest.raises(ConfigError, match="before batch"):
        bn.data.from_arrays(x, y).batch(4).shuffle(10)


def test_iterating_a_dataset_again_reads_the_next_epoch():
    x, y = _arrays(60)
    ds = bn.data.from_arrays(x, y, block_rows=5).shuffle(20, seed=0)
    passes = [np.concatenate([b[1] for b in ds]) for _ in range(2)]
    np.testing.assert_array_equal(passes[0], _ids(ds, 0))
    np.testing.assert_array_equal(passes[1], _ids(ds, 1))


def test_take_and_skip_split_a_dataset_without_overlap():
    x, y = _arrays(100)
    ds = bn.data.from_arrays(x, y, block_rows=9)
    val, train = ds.take(25), ds.skip(25)
    assert (val.rows, train.rows) == (25, 75)
    np.testing.assert_array_equal(_ids(val), y[:25])
    np.testing.assert_array_equal(np.sort(_ids(train.shuffle(30, seed=1))), y[25:])


def test_map_and_with_rows():
    x, y = _arrays(40)
    ds = bn.data.from_arrays(x, y, block_rows=16).map(lambda e: (e[0] * 2, e[1]))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in ds]), x * 2)
    assert ds.rows == 40
    assert ds.map(lambda e: e, rows=None).rows is None and ds.map(lambda e: e, rows=None).with_rows(40).rows == 40
    assert "map(" in ds.describe() and repr(ds).startswith("Dataset(from_arrays")


def test_prefetch_gives_the_same_elements_and_stops_its_thread_when_left_early():
    x, y = _arrays(500)
    ds = bn.data.from_arrays(x, y, block_rows=10).shuffle(100, seed=0).batch(7)
    before = threading.active_count()
    np.testing.assert_array_equal(_ids(ds.prefetch(3)), _ids(ds))
    iterator = ds.prefetch(2).iterate(0)
    next(iterator)
    iterator.close()
    assert threading.active_count() == before


def test_prefetch_raises_the_error_of_its_thread_in_the_reader():
    def broken(element):
        if element[1][0] >= 30:
            raise StreamError("bad block")
        return element

    x, y = _arrays(60)
    ds = bn.data.from_arrays(x, y, block_rows=10).map(broken).prefetch()
    seen = []
    with pytest.raises(StreamError, match="bad block"):
        for block in ds:
            seen.append(block[1][0])
    assert seen == [0, 10, 20]


def test_stage_arguments_are_checked():
    ds = bn.data.from_arrays(np.zeros((4, 1)))
    for call in (lambda: ds.batch(0), lambda: ds.shuffle(-1), lambda: ds.take(-2), lambda: ds.prefetch(True),
                 lambda: ds.shuffle(4, seed="a"), lambda: ds.map(3)):
        with pytest.raises(ConfigError):
            call()


# --------------------------------------------------------------------- sources
def test_from_npy_reads_memory_mapped_blocks(tmp_path):
    x, y = _arrays(50)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    ds = bn.data.from_npy(tmp_path / "x.npy", tmp_path / "y.npy", block_rows=8)
    assert ds.rows == 50
    blocks = list(ds)
    assert all(not isinstance(b[0], np.memmap) for b in blocks)
    np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), x)
    np.save(tmp_path / "short.npy", y[:10])
    with pytest.raises(DataError, match="different numbers of rows"):
        bn.data.from_npy(tmp_path / "x.npy", tmp_path / "short.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:300])
    with pytest.raises(DataError, match="cut.npy"):
        bn.data.from_npy(tmp_path / "cut.npy")


def _table(n, seed=0, start=0):
    rng = np.random.default_rng(seed)
    return {"id": np.arange(start, start + n), "a": rng.standard_normal(n), "b": rng.integers(0, 5, n),
            "color": rng.choice(["red", "green", "blue"], n), "label": rng.integers(0, 2, n)}


def _write_parquet(path, table, row_group_size=None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(table), path, row_group_size=row_group_size)


def test_from_parquet_reads_a_folder_by_row_groups(tmp_path):
    pytest.importorskip("pyarrow")
    for i in range(3):
        _write_parquet(tmp_path / f"part-{i}.parquet", _table(40, seed=i, start=40 * i), row_group_size=15)
    ds = bn.data.from_parquet(tmp_path, block_rows=10)
    assert ds.rows == 120 and len(ds.parts) == 9
    blocks = list(ds)
    assert max(len(b["id"]) for b in blocks) <= 10
    np.testing.assert_array_equal(np.concatenate([b["id"] for b in blocks]), np.arange(120))
    assert blocks[0]["color"].dtype == object and blocks[0]["b"].dtype == np.int64
    shuffled = _ids(ds.shuffle(1000, seed=0))
    np.testing.assert_array_equal(np.sort(shuffled), np.arange(120))
    xy = bn.data.from_parquet(tmp_path, target="label", features=["a", "b"]).batch(50)
    x, y = next(iter(xy))
    assert x.shape == (50, 2) and x.dtype == np.float64 and y.shape == (50,)


def test_a_parquet_folder_whose_schema_changes_is_refused_naming_the_file(tmp_path):
    pytest.importorskip("pyarrow")
    _write_parquet(tmp_path / "a.parquet", _table(10))
    changed = _table(10)
    changed["b"] = changed["b"].astype(str)
    _write_parquet(tmp_path / "b.parquet", changed)
    with pytest.raises(DataError, match=r"column 'b' is string in .*b\.parquet' but int64 in .*a\.parquet'"):
        bn.data.from_parquet(tmp_path)
    (tmp_path / "b.parquet").write_bytes((tmp_path / "a.parquet").read_bytes()[:-30])
    with pytest.raises(DataError, match=r"cannot read .*b\.parquet' as Parquet"):
        bn.data.from_parquet(tmp_path)


def test_a_text_feature_is_refused_naming_the_file_and_column(tmp_path):
    pytest.importorskip("pyarrow")
    _write_parquet(tmp_path / "t.parquet", _table(10))
    ds = bn.data.from_parquet(tmp_path / "t.parquet", target="label")
    with pytest.raises(StreamError, match=r"t\.parquet', row group 0 \(rows 0-9 of the file\): column 'color' holds"):
        list(ds)


def _write_csv(path, table):
    import pandas as pd

    pd.DataFrame(table).to_csv(path, index=False)


def test_from_csv_reads_chunks_and_names_a_bad_row(tmp_path):
    pytest.importorskip("pandas")
    _write_csv(tmp_path / "d.csv", _table(50))
    ds = bn.data.from_csv(tmp_path / "d.csv", block_rows=16)
    assert ds.rows is None
    np.testing.assert_array_equal(_ids(ds), np.arange(50))
    x, y = next(iter(bn.data.from_csv(tmp_path / "d.csv", target="label", features=["a", "b"]).batch(8)))
    assert x.shape == (8, 2)
    lines = (tmp_path / "d.csv").read_text().splitlines()
    lines[40] += ",9"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(StreamError, match=r"bad\.csv' after row 32 .*Expected 5 fields in line 41, saw 6"):
        list(bn.data.from_csv(tmp_path / "bad.csv", block_rows=16))


def test_csv_files_of_a_folder_must_share_their_header(tmp_path):
    pytest.importorskip("pandas")
    _write_csv(tmp_path / "1.csv", _table(5))
    other = _table(5)
    other["extra"] = other.pop("a")
    _write_csv(tmp_path / "2.csv", other)
    with pytest.raises(StreamError, match=r"2\.csv' has the columns"):
        list(bn.data.from_csv(tmp_path))


def test_from_dask_streams_an_array_and_a_dataframe_block_by_block():
    da = pytest.importorskip("dask.array")
    dd = pytest.importorskip("dask.dataframe")
    import pandas as pd

    x, y = _arrays(90)
    ds = bn.data.from_dask(da.from_array(x, chunks=(25, 2)), y)
    assert ds.rows == 90 and len(ds.parts) == 4
    blocks = list(ds)
    assert [len(b[0]) for b in blocks] == [25, 25, 25, 15]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), y)
    frame = dd.from_pandas(pd.DataFrame(_table(60)), npartitions=3)
    np.testing.assert_array_equal(np.sort(_ids(bn.data.from_dask(frame).shuffle(100, seed=0))), np.arange(60))
    x_b, y_b = next(iter(bn.data.from_dask(frame, target="label", features=["a", "b"])))
    assert x_b.shape[1] == 2
    with pytest.raises(ConfigError):
        bn.data.from_dask(np.zeros(3))


def test_a_model_trains_from_parquet_as_from_the_same_arrays(tmp_path):
    pytest.importorskip("pyarrow")
    table = _table(200, seed=4)
    _write_parquet(tmp_path / "t.parquet", table, row_group_size=64)

    def model():
        layers = [bn.layers.Dense(4, activation="tanh", input_dim=2), bn.layers.Dense(2, activation="softmax")]
        m = bn.Sequential(layers, seed=0, dtype="float64")
        m.compile("categorical_crossentropy", "sgd", metrics=["accuracy"])
        return m

    a, b = model(), model()
    X = np.column_stack([table["a"], table["b"]])
    a.fit(X, table["label"], epochs=2, batch_size=20, shuffle=False, verbose=0)
    b.fit(bn.data.from_parquet(tmp_path, target="label", features=["a", "b"]).prefetch(), epochs=2, batch_size=20,
          verbose=0)
    assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights(), strict=True))


# --------------------------------------------------------------------- fuzz: mutated real files
def _mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    if kind == "truncate":
        return data[:at]
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data[:at] + data[at + draw(st.integers(1, 16)):]


def _read_all(make):
    try:
        dataset = make()
        for _ in dataset.batch(16):
            pass
    except BarenetError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_the_parquet_reader_over_mutated_files(tmp_path_factory, data):
    pytest.importorskip("pyarrow")
    folder = tmp_path_factory.mktemp("pq")
    _write_parquet(folder / "t.parquet", _table(30), row_group_size=10)
    (folder / "t.parquet").write_bytes(_mutate((folder / "t.parquet").read_bytes(), data.draw))
    _read_all(lambda: bn.data.from_parquet(folder / "t.parquet"))
    _read_all(lambda: bn.data.from_parquet(folder / "t.parquet", target="label", features=["a", "b"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_the_csv_reader_over_mutated_files(tmp_path_factory, data):
    pytest.importorskip("pandas")
    folder = tmp_path_factory.mktemp("csv")
    _write_csv(folder / "t.csv", _table(30))
    (folder / "t.csv").write_bytes(_mutate((folder / "t.csv").read_bytes(), data.draw))
    _read_all(lambda: bn.data.from_csv(folder / "t.csv", block_rows=8))
    _read_all(lambda: bn.data.from_csv(folder / "t.csv", target="label", features=["a", "b"], block_rows=8))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_the_npy_reader_over_mutated_files(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("npy")
    np.save(folder / "x.npy", _arrays(20)[0])
    (folder / "x.npy").write_bytes(_mutate((folder / "x.npy").read_bytes(), data.draw))
    _read_all(lambda: bn.data.from_npy(folder / "x.npy"))
