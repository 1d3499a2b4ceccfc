"""The training hot path (fused softmax cross-entropy, Adam's scratch array) and the MLP benchmark script."""

from __future__ import annotations

import gzip
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import barenet as bn
from barenet import functional as F

BENCH = Path(__file__).resolve().parents[1] / "bench" / "mlp_fashion.py"


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-13)])
def test_log_softmax_and_softmax_match_the_separate_functions(dtype, tol):
    rng = np.random.default_rng(0)
    z = (rng.standard_normal((64, 10)) * 8).astype(dtype)
    z[0] = [1e4, -1e4, 0, 0, 0, 0, 0, 0, 0, 3]  # far beyond exp's range: must stay finite
    logp, p = F.log_softmax_and_softmax(z)
    assert logp.dtype == dtype and p.dtype == dtype
    assert np.all(np.isfinite(logp))
    np.testing.assert_allclose(logp, F.log_softmax(z), rtol=tol, atol=tol)
    np.testing.assert_allclose(p, F.softmax(z), rtol=tol, atol=tol)
    np.testing.assert_allclose(p.sum(axis=-1), 1, rtol=10 * tol)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(32, 5), (6, 4, 3)])
def test_fused_cross_entropy_matches_the_unfused_loss_on_softmax_outputs(weighted, shape):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal(shape) * 3
    targets = rng.random(shape)  # soft targets exercise the sum_j t_j factor of the gradient
    w = rng.random(shape[0]) if weighted else None
    loss = bn.losses.CategoricalCrossentropy()
    value, grad, probs = loss.fused(logits, targets, w)
    logits_loss = bn.losses.CategoricalCrossentropy(from_logits=True)
    np.testing.assert_allclose(probs, F.softmax(logits), rtol=1e-13)
    assert value == pytest.approx(logits_loss(logits, targets, w), rel=1e-12)
    np.testing.assert_allclose(grad, logits_loss.gradient(logits, targets, w), rtol=1e-12, atol=1e-15)


def test_optimizer_scratch_is_reused_and_stays_out_of_the_state():
    opt = bn.optimizers.Adam(0.01)
    big, small = np.zeros((30, 20), np.float32), np.zeros(7, np.float32)
    a = opt.scratch(big)
    assert a.shape == big.shape and a.dtype == np.float32
    assert np.shares_memory(opt.scratch(small), a)  # one buffer serves every parameter
    assert opt.scratch(np.zeros(3)).dtype == np.float64
    params = {"w": np.ones((30, 20), np.float32)}
    opt.step(params, {"w": np.full((30, 20), 0.5, np.float32)})
    assert sorted(opt.get_state()) == ["iterations", "m_sum/w", "v_sum/w"]
    # first Adam step moves every weight by the learning rate (the update is m_hat / sqrt(v_hat) = sign(g))
    np.testing.assert_allclose(params["w"], 1 - 0.01, rtol=1e-6)


@pytest.fixture
def bench(monkeypatch):
    """bench/mlp_fashion.py as a module."""
    monkeypatch.syspath_prepend(str(BENCH.parent))  # as when run as a script: bench/common.py importable
    spec = importlib.util.spec_from_file_location("mlp_fashion", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_parameter_count_is_that_of_the_784_256_128_10_network(bench):
    assert bench.n_parameters(784) == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10 == 235_146


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_bench_runs_end_to_end_and_prints_the_table(tmp_path):
    # A small stand-in for Fashion-MNIST: class k images are bright in row band k, so it is learnable.
    rng = np.random.default_rng(2)
    for split, n in (("train", 512), ("t10k", 128)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 2 * k + 4:2 * k + 6] = 250
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    env = {**os.environ, "BARENET_DATA": str(tmp_path)}
    done = subprocess.run([sys.executable, str(BENCH), "--epochs", "2", "--repeats", "1",
                           "--frameworks", "barenet,sklearn", "--threads", "1"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))  # the table follows this line
    rows = {line.split()[0]: line.split() for line in lines[rule + 1:rule + 3]}
    assert set(rows) == {"barenet", "sklearn"}
    assert float(rows["barenet"][4]) > 0.9  # test accuracy on the easy stand-in
    assert float(rows["sklearn"][5]) > 0  # barenet's throughput ratio to scikit-learn
    assert "of the float32 matmul peak" in done.stdout and "GFLOP/s of a 2048x2048 np.matmul" in done.stdout
    assert "1.01 MFLOP/sample of products computed" in done.stdout and "1 thread(s) of" in done.stdout
    # the machine and each framework's thread pools: CPU model and vector extensions, BLAS, its kernel, threads
    assert re.search(r"^CPU: .+ logical cores; Python [\d.]+, NumPy [\d.]+; threads: 1$", done.stdout, re.M)
    assert re.search(r"^  barenet: blas \w+ .*: 1 threads; .*barenet threads: 1", done.stdout, re.M), done.stdout
    # peak RSS beyond the data (512 + 128 images of 784 float32 and their int64 labels) and each model's arrays
    assert re.search(r"^peak RSS beyond the data \(2 MB\) and each model's own arrays, MB \(barenet's budget: 100\)",
                     done.stdout, re.M), done.stdout
    memory = re.search(r"^barenet +(\d+)  \(peak (\d+) = data 2 \+ model 3\.6 \+ (\d+)(, file-backed \d+)?\)$",
                       done.stdout, re.M)
    assert memory and memory[1] == memory[3] and int(memory[2]) > int(memory[1]) > 0, done.stdout


def test_bench_quotes_the_median_of_per_turn_ratios(bench):
    def run(seconds, **extra):
        return {"samples": 1000, "seconds": seconds, "n_train": 500, "peak_rss_mb": 1.0, "accuracy": 0.5, **extra}

    # Turn by turn barenet is 1x, 2x and 8x as fast; the ratio of the median rates would be 1000/250 = 4.
    ours = [run(1.0, matmul_gflops=10.0), run(2.0, matmul_gflops=5.0), run(0.5, matmul_gflops=40.0)]
    peer = [run(1.0), run(4.0), run(4.0)]
    table = bench.summarize({"barenet": ours, "peer": peer})
    assert table["peer"]["speedup"] == 2.0 and "speedup" not in table["barenet"]
    assert table["barenet"]["samples_per_s"] == 1000 and table["barenet"]["seconds_per_epoch"] == 0.5
    fractions = bench.peak_fractions(ours, flops=6_000_000)
    assert [a / p for a, p in fractions] == pytest.approx([0.6, 0.6, 0.3])  # 6e6 FLOP/sample x 1000 samples/s


def test_bench_counts_only_the_products_computed(bench):
    # Forward x W and kernel gradient x^T g in every layer; input gradient g W^T in all but the first.
    weights = [784 * 256, 256 * 128, 128 * 10]
    assert bench.flops_per_sample(784) == 2 * sum(weights) * 2 + 2 * (weights[1] + weights[2]) == 1_007_104


def test_bench_thread_cap_reaches_every_pool(bench):
    import common

    env = common.thread_env(1)
    assert all(env[name] == "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"))
    assert common.thread_env(None) is None


@pytest.mark.parametrize("make", [
    lambda: bn.optimizers.SGD(0.1), lambda: bn.optimizers.SGD(0.1, momentum=0.9),
    lambda: bn.optimizers.SGD(0.1, momentum=0.9, nesterov=True), lambda: bn.optimizers.RMSprop(0.01),
    lambda: bn.optimizers.Adam(0.01), lambda: bn.optimizers.AdamW(0.01),
], ids=["sgd", "momentum", "nesterov", "rmsprop", "adam", "adamw"])
def test_optimizer_steps_allocate_no_parameter_sized_arrays(make):
    import tracemalloc

    opt = make()
    params = {"w": np.ones(200_000, np.float32)}  # 800 kB: any temporary of its size shows
    grads = {"w": np.full(200_000, 0.5, np.float32)}
    opt.step(params, grads)  # the first step creates the slots and the scratch array
    tracemalloc.start()
    try:
        for _ in range(3):
            opt.step(params, grads)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"{peak} bytes allocated during a step"
