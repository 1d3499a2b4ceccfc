"""predict on one row: the lean path (no engine block, no per-layer marks, the plain layer loop) gives what the
batched path gives, returns a fresh array each call, checks its input as fully, and leaves the threads as they were.
The inference benchmark's networks agree across barenet, PyTorch and onnxruntime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import barenet as bn
from barenet import threads
from barenet.errors import DataError, ShapeError

L = bn.layers
BENCH = Path(__file__).resolve().parents[1] / "bench" / "inference.py"


def mlp(seed: int = 0) -> bn.Sequential:
    model = bn.Sequential([L.Dense(16, activation="relu", input_dim=6), L.Dense(8, activation="tanh"),
                           L.Dense(3, activation="softmax")], seed=seed, dtype="float32")
    model.build()
    return model


def small_resnet(seed: int = 0) -> bn.Model:
    """Convolution, batch normalization (with moved statistics), pooling and a residual sum: layers that split."""
    x = inputs = bn.Input(shape=(8, 8, 2))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding=1, use_bias=False)(x)))
    h = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(x))
    x = L.MaxPooling2D(2)(L.ReLU()(L.Add()([x, h])))
    out = L.Dense(5, activation="softmax")(L.GlobalAveragePooling2D()(x))
    model = bn.Model(inputs, out, seed=seed)
    model.build()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            layer.buffers["moving_mean"][...] = rng.normal(0, 0.5, 4)
            layer.buffers["moving_variance"][...] = rng.uniform(0.5, 2, 4)
    return model


def masked_average(seed: int = 0) -> bn.Sequential:
    """A padding mask from the embedding that the average over the sequence honours."""
    model = bn.Sequential([L.Embedding(20, 4, mask_zero=True, input_length=6), L.Dense(5, activation="relu"),
                           L.GlobalAveragePooling1D(), L.Dense(2, activation="softmax")], seed=seed, dtype="float32")
    model.build()
    return model


def data(model, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if isinstance(model.layers[0], L.Embedding):
        X = rng.integers(1, 20, (n, 6))
        X[:, 4:] = 0  # padding the mask hides
        X[0, 2:] = 0
        return X
    return rng.standard_normal((n, *model.input_shape)).astype(np.float32)


@pytest.mark.parametrize("build", [mlp, small_resnet, masked_average])
def test_predict_on_one_row_matches_that_row_of_a_batch(build):
    model = build()
    X = data(model, 12, 1)
    batch = model.predict(X)
    for i in (0, 5, 11):
        one = model.predict(X[i:i + 1])
        assert one.shape == (1, *batch.shape[1:]) and one.dtype == batch.dtype
        # BLAS may block a product of one row differently from one of twelve: float rounding only
        np.testing.assert_allclose(one[0], batch[i], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("build", [mlp, small_resnet])
def test_predict_on_one_row_inside_an_engine_block_is_the_lean_result(build):
    """The engine block the lean path skips changes nothing for one row: the same bits either way."""
    model = build()
    x = data(model, 1, 2)
    with model._engine():
        entered = model.forward(model.check_inputs(x), training=False)
    np.testing.assert_array_equal(model.predict(x), entered)


def test_each_predict_call_returns_its_own_array():
    model = small_resnet()
    X = data(model, 3, 3)
    first = model.predict(X[:1])
    kept = first.copy()
    second = model.predict(X[1:2])
    model.predict(X[2:3])
    np.testing.assert_array_equal(first, kept)  # a later call wrote nothing into an earlier result
    assert not np.shares_memory(first, second)
    assert not np.array_equal(first, second)


def test_predict_on_one_row_still_checks_its_input():
    model = mlp()
    bad = np.zeros((1, 6), dtype=np.float32)
    bad[0, 3] = np.nan
    with pytest.raises(DataError, match="1 NaN or infinite values"):
        model.predict(bad)
    with pytest.raises(ShapeError, match=r"has shape \(1, 5\)"):
        model.predict(np.zeros((1, 5)))
    # other dtypes and lists are converted as before
    row = data(model, 1, 4)
    np.testing.assert_array_equal(model.predict(row.astype(np.float64)), model.predict(row))
    np.testing.assert_array_equal(model.predict(row.tolist()), model.predict(row))


def test_outside_an_engine_block_nothing_splits_or_is_marked():
    before = threads.get_num_threads()
    threads.set_num_threads(2)
    try:
        assert threads.parts(10_000, 10_000) == [slice(0, 10_000)]
        with threads.layer(L.Conv2D(2, 3)), threads.layer(L.Dense(2)):
            assert threads.parts(10_000, 10_000) == [slice(0, 10_000)]
        with threads.engine():
            assert threads.parts(1, 1 << 30) == [slice(0, 1)]  # one row: one part
            assert len(threads.parts(10_000, 10_000)) == 2
            with threads.layer(L.Dense(2)):  # a layer of products keeps BLAS's threads until something splits
                assert threads.parts(10_000, 10_000) == [slice(0, 10_000)]
    finally:
        threads.set_num_threads(before)


# --------------------------------------------------------------------- the benchmark's networks
@pytest.fixture(scope="module")
def bench():
    import sys

    sys.path.insert(0, str(BENCH.parent))  # as when run as a script: bench/common.py importable
    try:
        spec = importlib.util.spec_from_file_location("inference_bench", BENCH)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH.parent))
    return module


@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm", "resnet18"])
def test_bench_networks_agree_across_frameworks(bench, name, tmp_path):
    """barenet's network, PyTorch's copy of it (layouts converted) and onnxruntime on barenet's export give the
    same probabilities on the benchmark's inputs."""
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = bench.barenet_model(name, 0)
    X = bench.inputs(name, 3) if name == "lstm" else np.random.default_rng(5).random(
        (3, *model.input_shape), dtype=np.float32)
    ours = model.predict(X)
    net = bench.torch_network(name, model)
    with torch.inference_mode():
        theirs = net(torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)) if X.ndim == 4 else X)).numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    bn.export_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: X})[0], ours, atol=1e-5)


def test_bench_quotes_medians_of_per_turn_ratios(bench):
    def run(rate, ms):
        return {"samples_per_s": rate, "median_ms": ms, "p99_ms": 2 * ms}

    ours = [run(100, 1.0), run(400, 4.0), run(100, 1.0)]
    peer = [run(200, 2.0), run(200, 2.0), run(400, 4.0)]  # per turn 0.5, 2, 0.25: median 0.5
    table = bench.summarize({"barenet": ours, "onnxruntime": peer})
    assert table["onnxruntime"]["throughput_x"] == pytest.approx(0.5)
    assert table["onnxruntime"]["latency_x"] == pytest.approx(0.5)
    assert table["barenet"]["samples_per_s"] == 100 and "throughput_x" not in table["barenet"]
