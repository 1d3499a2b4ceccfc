"""barenet's own threads (barenet.threads): the batch split across threads gives the one-thread results.

Every layer that splits its batch is run on the same data with one thread and with several (the work
threshold lowered so that even these small batches are split), forward and backward, and must agree to
float rounding; training a small CNN with two threads must reproduce itself exactly and stay within
rounding of one thread.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import barenet as bn
from barenet import threads
from barenet.errors import ConfigError

L = bn.layers


@pytest.fixture
def split(monkeypatch):
    """Split every batch (threshold 1 value) across ``n`` threads inside :func:`threads.engine`."""
    monkeypatch.setattr(threads, "MIN_WORK", 1)
    previous = threads.get_num_threads()

    def use(n: int):
        threads.set_num_threads(n)
        return threads.engine()

    yield use
    threads.set_num_threads(previous)


def _blas_threads() -> list[int]:
    """Threads of NumPy's BLAS (the one barenet's products use)."""
    return [lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas" and f"{os.sep}numpy" in lib["filepath"]]


# --------------------------------------------------------------------------- the primitives
def test_parts_cover_the_rows_in_order(split):
    with split(3):
        for n in (1, 2, 3, 10, 128):
            slices = threads.parts(n)
            assert len(slices) == min(3, n)
            assert [i for s in slices for i in range(s.start, s.stop)] == list(range(n))
    assert threads.parts(128) == [slice(0, 128)]  # outside the engine nothing is split


def test_small_work_is_not_split():
    threads.set_num_threads(2)
    try:
        with threads.engine():
            assert threads.parts(4, 10) == [slice(0, 4)]
            assert len(threads.parts(64, threads.MIN_WORK)) == 2
    finally:
        threads.set_num_threads(None)


def test_run_returns_results_in_order_and_waits_for_every_part_before_raising(split):
    finished = threading.Event()

    def part(rows: slice):
        if rows.start == 0:
            raise ValueError("first part fails")
        time.sleep(0.2)
        finished.set()
        return rows.start

    with split(2):
        assert threads.run(lambda rows: rows.start, threads.parts(4)) == [0, 2]
        with pytest.raises(ValueError, match="first part fails"):
            threads.run(part, threads.parts(4))
        assert finished.is_set()  # the other thread had finished before the error reached the caller


def test_a_split_inside_a_part_runs_in_that_thread(split):
    with split(2):
        inner = threads.run(lambda rows: threads.parts(8), threads.parts(8))
    assert inner == [[slice(0, 8)], [slice(0, 8)]]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_weight_gradients_of_several_products_in_one_hand_off(split, n):
    """matmul_tn_many: every product's columns shared out, however many each has (fewer than threads too)."""
    rng = np.random.default_rng(0)
    products = [(rng.standard_normal((50, k)), rng.standard_normal((50, m))) for k, m in ((7, 384), (5, 128), (3, 2))]
    outs = [np.full((a.shape[1], b.shape[1]), np.nan) for a, b in products]
    with split(n):
        threads.matmul_tn_many([(a, b, out) for (a, b), out in zip(products, outs, strict=True)])
        single = threads.matmul_tn(*products[0], out=np.empty_like(outs[0]))
    for (a, b), out in zip(products, outs, strict=True):
        np.testing.assert_allclose(out, a.T @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(single, outs[0])


def test_the_thread_count_is_checked_and_read_from_the_environment(monkeypatch):
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="positive integer"):
            bn.set_num_threads(bad)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        monkeypatch.setenv("BARENET_NUM_THREADS", "3")
        bn.set_num_threads(None)
        assert bn.get_num_threads() == 3
    finally:
        monkeypatch.delenv("BARENET_NUM_THREADS")
        bn.set_num_threads(None)


@pytest.fixture
def environment(monkeypatch):
    """Sets the two thread variables (``None`` unsets) and returns the thread count barenet then reads;
    every unusable value warns afresh."""
    monkeypatch.setattr(threads, "_warned", set(), raising=False)

    def use(barenet: str | None, omp: str | None) -> int:
        for name, value in (("BARENET_NUM_THREADS", barenet), ("OMP_NUM_THREADS", omp)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        threads.set_num_threads(None)
        return threads.get_num_threads()

    yield use
    monkeypatch.undo()
    threads.set_num_threads(None)


def test_openmp_list_syntax_gives_the_first_level_and_predict_works(environment):
    rng = np.random.default_rng(0)
    X = rng.random((8, 10, 10, 1), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert environment(None, "2,1") == 2
        assert environment(None, " 3 , 2,1 ") == 3
        assert environment("4", "2,1") == 4
        assert _cnn().predict(X).shape == (8, 3)


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "2,abc", "2,,1", "1.5"])
def test_an_unusable_thread_count_in_the_environment_warns_once_and_is_ignored(bad, environment):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    message = f"barenet ignores OMP_NUM_THREADS={bad!r}: expected a positive number of threads"
    with pytest.warns(UserWarning, match=re.escape(message)):
        assert environment(None, bad) == cores
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the same value does not warn again
        assert environment(None, bad) == cores
        assert _cnn().predict(np.zeros((4, 10, 10, 1), np.float32)).shape == (4, 3)
    with pytest.warns(UserWarning, match=re.escape(f"barenet ignores BARENET_NUM_THREADS={bad!r}")):
        assert environment(bad, "2") == 2  # the next source counts instead


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_threads_of_its_own(split):
    with split(2):
        threads.run(lambda rows: None, threads.parts(4))  # the parent's pool exists
        pid = os.fork()
        if pid == 0:  # child: the parent's pool threads do not exist here
            try:
                ok = threads.run(lambda rows: rows.start, threads.parts(4)) == [0, 2]
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --------------------------------------------------------------------------- one process, several callers
def test_two_threads_splitting_into_2_and_3_parts_at_once(split):
    """Each caller hands out its own number of parts to the one pool; neither stops the other's."""
    errors, wrong = [], []

    def caller(k: int) -> None:
        try:
            for _ in range(300):
                got = threads.run(lambda rows: rows.start, [slice(i, i + 1) for i in range(k)])
                if got != list(range(k)):
                    wrong.append(got)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch between the two callers as often as possible
    try:
        with split(3):
            callers = [threading.Thread(target=caller, args=(k,)) for k in (2, 3)]
            for t in callers:
                t.start()
            for t in callers:
                t.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == [] and wrong == []


def _helper_threads() -> int:
    return sum(t.name.startswith("barenet") for t in threading.enumerate())


def test_one_pool_serves_every_split_and_lives_on(split):
    """Splits into 2 and 3 parts, one after the other, and a CNN whose last batch has fewer samples than
    threads, all use one pool, which grows to the largest need and never stops a thread."""
    with split(2):
        threads.run(lambda rows: None, threads.parts(4))
        pool, size = threads._pool, threads._pool.size
        for i in range(100):
            k = 2 + i % 2
            assert threads.run(lambda rows: rows.start, [slice(j, j + 1) for j in range(k)]) == list(range(k))
        assert threads._pool is pool
    assert threads._pool is pool and _helper_threads() == pool.size == max(size, 2)
    rng = np.random.default_rng(0)
    X, y = rng.random((100, 10, 10, 1), dtype=np.float32), rng.integers(0, 3, 100)
    with split(4):
        _cnn().fit(X, y, epochs=2, batch_size=32, verbose=0)
    assert threads._pool is pool and _helper_threads() == pool.size == max(size, 3)


def _split_once() -> None:
    threads.run(lambda rows: None, [slice(0, 1), slice(1, 2)])


@pytest.fixture
def blas_at_two():
    """Every BLAS library on two threads (whatever the machine), and barenet on two threads."""
    previous = threads.get_num_threads()
    threads.set_num_threads(2)
    with threadpool_limits(limits=2, user_api="blas"):
        yield
    threads.set_num_threads(previous)


@pytest.mark.skipif(not _blas_threads(), reason="NumPy's BLAS is not one that threadpoolctl controls")
def test_overlapping_engine_blocks_in_two_threads_leave_blas_as_it_was(blas_at_two):
    """First in limits BLAS, last out restores it, whatever the order in which the two blocks end."""
    before = _blas_threads()
    assert before == [2] * len(before)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a() -> None:
        with threads.engine():
            _split_once()
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b() -> None:
        a_in.wait(10)
        with threads.engine():
            _split_once()
            b_in.set()
            a_out.wait(10)
            seen["b alone"] = _blas_threads()

    callers = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert seen["b alone"] == [1] * len(before)  # the other thread's block ending does not lift the limit
    assert _blas_threads() == before


_LOADED_LATER = """
import json, os
from threadpoolctl import threadpool_info
from barenet import threads

def blas():
    return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

def split_once():
    threads.run(lambda rows: None, [slice(0, 1), slice(1, 2)])

with threads.engine():
    split_once()
known = set(blas())
import scipy.linalg  # noqa: E402
with threads.engine():
    split_once()
    inside = [n for path, n in blas().items() if path not in known]
after = [n for path, n in blas().items() if path not in known]
print(json.dumps({"inside": inside, "after": after}))
"""

# the same within one engine block: loaded after the block's first split (as a compiled recurrent loop loads SciPy's)
_LOADED_IN_THE_BLOCK = """
import json, os
from threadpoolctl import threadpool_info
from barenet import threads

def blas():
    return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

with threads.engine():
    threads.run(lambda rows: None, [slice(0, 1), slice(1, 2)])
    known = set(blas())
    import scipy.linalg  # noqa: E402
    threads.run(lambda rows: None, [slice(0, 1), slice(1, 2)])
    inside = [n for path, n in blas().items() if path not in known]
after = [n for path, n in blas().items() if path not in known]
print(json.dumps({"inside": inside, "after": after}))
"""


@pytest.mark.parametrize("script", [_LOADED_LATER, _LOADED_IN_THE_BLOCK], ids=["next block", "same block"])
def test_a_blas_loaded_after_barenet_first_split_is_limited_too(script):
    pytest.importorskip("scipy.linalg")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "BARENET_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    seen = json.loads(done.stdout.splitlines()[-1])
    if not seen["after"]:
        pytest.skip("SciPy uses the BLAS that NumPy loaded")
    assert seen["after"] == [2] * len(seen["after"])
    assert seen["inside"] == [1] * len(seen["after"])


@pytest.mark.skipif(not _blas_threads(), reason="NumPy's BLAS is not one that threadpoolctl controls")
def test_a_dense_layer_leaves_its_products_to_blas_until_a_splitting_layer_has_split(split, blas_at_two):
    dense, norm = L.Dense(4), L.BatchNormalization()
    with split(2):
        with threads.layer(dense):
            assert threads.parts(8) == [slice(0, 8)]  # BLAS's own threads share out the product
        assert _blas_threads() == [2] * len(_blas_threads())
        with threads.layer(norm):
            assert len(threads.parts(8)) == 2
            _split_once()
        with threads.layer(dense):  # BLAS is on one thread now: the product splits
            assert len(threads.parts(8)) == 2
            assert _blas_threads() == [1] * len(_blas_threads())
    assert _blas_threads() == [2] * len(_blas_threads())


class _SeesBlas(L.Dense):
    """A Dense layer that records how many threads BLAS has whenever its forward pass runs."""

    seen: list[list[int]] = []

    def forward(self, x, *, training=False, cache=None):
        type(self).seen.append(_blas_threads())
        return super().forward(x, training=training, cache=cache)


@pytest.mark.skipif(not _blas_threads(), reason="NumPy's BLAS is not one that threadpoolctl controls")
@pytest.mark.parametrize("graph", [False, True], ids=["sequential", "model"])
def test_one_batch_normalization_leaves_the_first_dense_products_on_blas_threads(split, blas_at_two, graph):
    """A model marks each layer call (threads.layer): the Dense layer before the batch normalization computes
    on BLAS's own threads, although the model holds a layer that splits the batch."""
    _SeesBlas.seen = []
    if graph:
        x = bn.Input(shape=(12,))
        out = L.Dense(3, activation="softmax")(L.BatchNormalization()(_SeesBlas(16, activation="relu")(x)))
        model = bn.Model(x, out, seed=0)
    else:
        model = bn.Sequential([_SeesBlas(16, activation="relu", input_dim=12), L.BatchNormalization(),
                               L.Dense(3, activation="softmax")], seed=0)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    X, y = np.random.default_rng(0).standard_normal((256, 12)), np.arange(256) % 3
    split(2)  # two threads, every batch split; fit enters one engine block a step
    model.fit(X, y, epochs=1, batch_size=128, verbose=0)
    assert len(_SeesBlas.seen) >= 2 and all(seen == [2] * len(seen) for seen in _SeesBlas.seen)
    assert _blas_threads() == [2] * len(_blas_threads())


# --------------------------------------------------------------------------- layers: threads = one thread
LAYERS = {
    "conv same": (lambda: L.Conv2D(6, 3, padding="same"), (9, 9, 2)),
    "conv valid relu": (lambda: L.Conv2D(5, 3, activation="relu"), (8, 8, 4)),
    "conv strided dilated": (lambda: L.Conv2D(4, (3, 2), strides=2, dilation_rate=(1, 2), padding=1), (11, 10, 3)),
    "conv channels_first": (lambda: L.Conv2D(4, 3, data_format="channels_first", use_bias=False), (3, 7, 7)),
    "batchnorm images": (lambda: L.BatchNormalization(), (6, 6, 5)),
    "batchnorm axis 1": (lambda: L.BatchNormalization(axis=1), (5, 6, 6)),
    "batchnorm features": (lambda: L.BatchNormalization(), (7,)),
    "max pool": (lambda: L.MaxPooling2D(2), (8, 8, 3)),
    "max pool odd": (lambda: L.MaxPooling2D(2), (7, 9, 3)),
    "max pool overlapping": (lambda: L.MaxPooling2D(3, strides=2, padding="same"), (9, 9, 2)),
    "average pool": (lambda: L.AveragePooling2D(3, strides=2, padding="same"), (9, 8, 2)),
    "relu": (lambda: L.ReLU(), (5, 5, 3)),
    "dense relu": (lambda: L.Dense(7, activation="relu"), (9,)),
    "dense linear on sequences": (lambda: L.Dense(6), (4, 5)),
    # float32 LSTM/GRU: each thread runs the compiled time loop of its rows; float64 and the rest: one Python loop
    "lstm": (lambda: L.LSTM(8), (6, 5)),
    "lstm sequences": (lambda: L.LSTM(8, return_sequences=True), (6, 5)),
    "gru": (lambda: L.GRU(8, return_sequences=True), (6, 5)),
    "gru reset before": (lambda: L.GRU(8, reset_after=False), (6, 5)),
    "simple rnn": (lambda: L.SimpleRNN(8), (6, 5)),
    "bidirectional lstm": (lambda: L.Bidirectional(L.LSTM(8, return_sequences=True)), (6, 5)),
}


def _run_layer(make, sample_shape, dtype, x, g):
    layer = make()
    layer.build(sample_shape, np.random.default_rng(1), dtype)
    cache = L.Cache()
    y = layer.forward(x, training=True, cache=cache)
    dx = layer.backward(g, cache)
    return y, dx, {k: v.copy() for k, v in layer.grads.items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_give_the_one_thread_results_on_several_threads(name, dtype, split):
    make, sample_shape = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((13, *sample_shape)).astype(dtype)
    probe = make()
    probe.build(sample_shape, np.random.default_rng(1), dtype)
    g = rng.standard_normal((13, *probe.output_shape)).astype(dtype)
    with split(1):
        one = _run_layer(make, sample_shape, dtype, x, g)
    for n in (2, 3):
        with split(n):
            many = _run_layer(make, sample_shape, dtype, x, g)
        tol = 2e-5 if dtype == "float32" else 1e-12
        for a, b in zip(one[:2], many[:2], strict=True):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
        assert one[2].keys() == many[2].keys()
        for key in one[2]:
            np.testing.assert_allclose(many[2][key], one[2][key], rtol=tol, atol=tol, err_msg=key)


# --------------------------------------------------------------------------- a model
def _cnn(seed=0):
    model = bn.Sequential([L.Conv2D(4, 3, padding="same", use_bias=False, input_shape=(10, 10, 1)),
                           L.BatchNormalization(), L.MaxPooling2D(2), L.ReLU(), L.Flatten(),
                           L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")], seed=seed)
    model.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(0.01))
    return model


def test_training_on_threads_repeats_itself_and_matches_one_thread(split):
    rng = np.random.default_rng(0)
    X = rng.random((96, 10, 10, 1), dtype=np.float32)
    y = rng.integers(0, 3, 96)
    weights = {}
    for n, run in ((1, 0), (2, 0), (2, 1)):
        threads.set_num_threads(n)
        model = _cnn()
        model.fit(X, y, epochs=2, batch_size=32, verbose=0)
        weights[n, run] = model.get_weights()
    for a, b in zip(weights[2, 0], weights[2, 1], strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights[1, 0], weights[2, 0], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


class _BlasSeen(bn.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.seen = _blas_threads()


@pytest.mark.skipif(not _blas_threads(), reason="NumPy's BLAS is not one that threadpoolctl controls")
def test_blas_runs_on_one_thread_only_while_a_model_that_splits_computes_a_step(split):
    """BLAS is limited from a step's first split to the step's end, and is back between steps."""
    before = _blas_threads()
    rng = np.random.default_rng(0)
    X, y = rng.random((40, 10, 10, 1), dtype=np.float32), rng.integers(0, 3, 40)
    threads.set_num_threads(2)  # the fixture splits every batch and restores the count
    cnn, seen_cnn = _cnn(), _BlasSeen()
    cnn.fit(X, y, epochs=1, callbacks=[seen_cnn], verbose=0)
    mlp = bn.Sequential([L.Dense(8, activation="relu", input_dim=100), L.Dense(3, activation="softmax")])
    mlp.compile(loss="categorical_crossentropy", optimizer="adam")
    seen_mlp = _BlasSeen()
    mlp.fit(X.reshape(40, -1), y, epochs=1, callbacks=[seen_mlp], verbose=0)
    assert seen_cnn.seen == before  # between steps BLAS has its own threads back
    assert seen_mlp.seen == before  # dense layers only: BLAS keeps its own threads
    assert _blas_threads() == before


class _SaveEpochs(bn.callbacks.Callback):
    """Copies of the weights before training and after every epoch."""

    def __init__(self, target):
        super().__init__()
        self.target = target
        self.weights = [self._copy()]

    def _copy(self):
        return [w.copy() for w in self.target.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self._copy())


def test_ctrl_c_while_slices_run_keeps_a_completed_epoch_and_the_threads_usable(split):
    """A SIGINT from a timer lands wherever training is (often while the main thread waits for a slice):
    fit stops with the weights of the last completed epoch, and the threads train again afterwards."""
    rng = np.random.default_rng(0)
    X, y = rng.random((256, 10, 10, 1), dtype=np.float32), rng.integers(0, 3, 256)
    with split(2):
        model = _cnn()
        saved = _SaveEpochs(model)
        timer = threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            history = model.fit(X, y, epochs=500, batch_size=16, callbacks=[saved], verbose=0)
        finally:
            timer.cancel()
            timer.join()
        assert model.interrupted
        kept = saved.weights[len(history.epoch)]
        for a, b in zip(model.get_weights(), kept, strict=True):
            np.testing.assert_array_equal(a, b)
        model.fit(X[:32], y[:32], epochs=1, batch_size=16, verbose=0)
        assert all(np.isfinite(w).all() for w in model.get_weights())
