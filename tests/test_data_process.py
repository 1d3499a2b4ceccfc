"""``Dataset.prefetch(process=True)``: the upstream stages in a child process, with the same elements, errors
and stops as in this process. Every test starts real child processes (forked on Linux)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ConfigError, StreamError


def _batches(dataset, epoch=0):
    return [tuple(np.asarray(a) for a in b) for b in dataset.iterate(epoch)]


def _pipeline(n=3000):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((n, 3)), rng.integers(0, 2, n)
    # a lambda: the child is forked, so any callable goes
    return bn.data.from_arrays(x, y, block_rows=128).map(lambda b: (b[0] * 2.0, b[1])).shuffle(700, seed=3)


def _no_children_left():
    deadline = time.monotonic() + 10
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not multiprocessing.active_children()


def test_the_elements_and_their_order_are_those_of_the_thread_and_of_no_prefetch():
    ds = _pipeline()
    for epoch in (0, 1):
        plain = _batches(ds.batch(64), epoch)
        for stream in (ds.batch(64).prefetch(process=True), ds.prefetch(process=True).batch(64)):
            got = _batches(stream, epoch)
            assert len(got) == len(plain)
            assert all(np.array_equal(a, c) and np.array_equal(b, d) for (a, b), (c, d) in zip(got, plain, strict=True))
    assert "prefetch(2, process=True)" in repr(ds.batch(64).prefetch(process=True))
    assert _no_children_left()


class _Fixed(bn.data.Dataset):
    """The given elements, as they are, in every pass."""

    def __init__(self, elements):
        super().__init__()
        self.elements = elements

    def describe(self):
        return "fixed"

    def _elements(self, epoch, order):
        yield from self.elements


def _same(a, b):
    """Same structure, container types, dtypes, shapes and values."""
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return (type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
            and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def test_every_kind_of_element_crosses_intact_raw_or_pickled():
    """Arrays of numbers, booleans and dates in tuples, lists and dicts cross the pipe as raw bytes (views of one
    array per group); strings, a structure that changes within a group, and rows that disagree go pickled.
    Either way each element arrives as it left, and writing into one changes no other."""
    rng = np.random.default_rng(4)
    days = np.datetime64("2024-01-01") + np.arange(7)

    def element(i):
        n = 1 + i % 5
        return {"x": rng.standard_normal((n, 2, 3)).astype(np.float16), "flags": rng.random(n) < 0.5,
                "pair": (rng.integers(0, 9, n).astype(np.uint8), days[:n]), "w": [np.full(n, np.nan)]}

    cases = {
        "raw": [element(i) for i in range(300)],
        "strings": [(np.array(["a", "bc"][: 1 + i % 2]), np.arange(1 + i % 2)) for i in range(50)],
        "changing": [(np.zeros(2),) if i % 7 else {"a": np.ones(2)} for i in range(50)],
        "ragged rows": [(np.zeros(3), np.zeros(2 + i % 2)) for i in range(50)],
        "empty": [(np.zeros((0, 4)), np.zeros(0, np.int64)) for i in range(5)],
    }
    for name, elements in cases.items():
        got = list(_Fixed(elements).prefetch(process=True))
        assert len(got) == len(elements) and all(_same(a, b) for a, b in zip(elements, got, strict=True)), name
    got = list(_Fixed(cases["raw"]).prefetch(process=True))
    assert got[0]["x"].base is got[1]["x"].base is not None  # rows of one array: sent raw
    got[0]["x"][...] = 7
    assert not (got[1]["x"] == 7).any()
    assert _no_children_left()


def test_a_pipe_that_ends_inside_a_group_is_an_eof():
    from barenet.data.dataset import _receive_group

    receive, send = multiprocessing.Pipe(duplex=False)
    os.write(send.fileno(), np.zeros(5, np.float64).tobytes())  # 40 of the 80 bytes announced
    send.close()
    with pytest.raises(EOFError):
        _receive_group(receive, ("tuple", (("array", "<f8", ()),)), [4, 6])


def test_files_read_in_the_child_and_a_model_trains_as_from_the_thread(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"a": rng.standard_normal(500), "b": rng.standard_normal(500),
                          "label": rng.integers(0, 2, 500)})
    table.to_parquet(tmp_path / "t.parquet", row_group_size=100)
    table.to_csv(tmp_path / "t.csv", index=False)

    def model():
        layers = [bn.layers.Dense(4, activation="tanh", input_dim=2), bn.layers.Dense(2, activation="softmax")]
        m = bn.Sequential(layers, seed=0, dtype="float64")
        m.compile("sparse_categorical_crossentropy", "adam")
        return m

    for source in (bn.data.from_parquet(tmp_path / "t.parquet", target="label"),
                   bn.data.from_csv(tmp_path / "t.csv", target="label", block_rows=64)):
        stream = source.shuffle(200, seed=0).batch(32)
        a, b = model(), model()
        a.fit(stream.prefetch(), epochs=2, verbose=0)
        b.fit(stream.prefetch(process=True), epochs=2, verbose=0)
        assert all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights(), strict=True))
    assert _no_children_left()


def test_errors_of_the_child_are_raised_here_with_their_type_and_message(tmp_path):
    pytest.importorskip("pandas")
    ds = bn.data.from_arrays(np.zeros((100, 2)), np.zeros(100), block_rows=10)

    def fails(block):
        raise ValueError("boom in map")

    with pytest.raises(ValueError, match="boom in map"):
        list(ds.map(fails).prefetch(process=True))

    class Unpicklable(Exception):  # a local class cannot be pickled: its type and message come as a StreamError
        pass

    def fails_oddly(block):
        raise Unpicklable("an odd failure")

    with pytest.raises(StreamError, match="Unpicklable: an odd failure"):
        list(ds.map(fails_oddly).prefetch(process=True))
    lines = ["a,b,label"] + [f"{i},{i},0" for i in range(40)]
    lines[30] += ",9"
    (tmp_path / "bad.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(StreamError, match=r"bad\.csv' after row 16 .*Expected 3 fields in line 31, saw 4"):
        list(bn.data.from_csv(tmp_path / "bad.csv", block_rows=16).prefetch(process=True))
    assert _no_children_left()


def test_a_child_that_dies_is_a_stream_error_with_its_exit_code():
    ds = bn.data.from_arrays(np.zeros((100, 2)), np.zeros(100), block_rows=10)

    def dies(block):
        os._exit(7)

    with pytest.raises(StreamError, match=r"prefetch process of from_arrays.* ended without finishing the pass "
                                          r"\(exit code 7\)"):
        list(ds.map(dies).prefetch(process=True))


def test_leaving_a_pass_early_stops_the_child_at_once():
    slow = bn.data.from_arrays(np.zeros((10_000, 2)), np.zeros(10_000), block_rows=1)

    def crawl(block):
        time.sleep(0.002)  # 10,000 blocks: 20 s or more for the whole pass
        return block

    start = time.monotonic()
    elements = iter(slow.map(crawl).prefetch(process=True))
    next(elements)  # the first group comes after 0.05 s, not when 1,024 elements are ready
    elements.close()
    assert _no_children_left()
    assert time.monotonic() - start < 10  # terminated, not waited for


def test_ctrl_c_is_left_to_the_parent():
    """SIGINT (what a terminal sends the whole process group) does not stop the child: the pass completes."""
    ds = bn.data.from_arrays(np.arange(2000.0).reshape(1000, 2), np.arange(1000), block_rows=10)

    def pace(block):
        time.sleep(0.0005)
        return block

    elements = iter(ds.map(pace).prefetch(process=True))
    first = next(elements)
    (child,) = multiprocessing.active_children()
    os.kill(child.pid, signal.SIGINT)
    rest = list(elements)
    np.testing.assert_array_equal(np.concatenate([first[1], *[b[1] for b in rest]]), np.arange(1000))
    assert _no_children_left()


def test_a_dask_source_is_refused_naming_the_stage():
    da = pytest.importorskip("dask.array")
    ds = bn.data.from_dask(da.zeros((40, 2), chunks=10), da.zeros(40, chunks=10)).batch(8)
    with pytest.raises(ConfigError, match=r"cannot run from_dask\(dask array\) in a child process .*use prefetch\(\)"):
        ds.prefetch(process=True)
    with pytest.raises(ConfigError, match="size must be a positive integer"):
        ds.prefetch(0, process=True)
