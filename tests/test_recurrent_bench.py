"""bench/rnn_sequence.py: its generated task is deterministic and learnable, and the script runs end to end."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "rnn_sequence.py"


@pytest.fixture
def bench(monkeypatch):
    """bench/rnn_sequence.py as a module."""
    monkeypatch.syspath_prepend(str(BENCH.parent))  # as when run as a script: bench/common.py importable
    spec = importlib.util.spec_from_file_location("rnn_sequence", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_task_is_deterministic_balanced_and_shaped_as_stated(bench):
    X, y = bench.make_data(500, 3)
    X2, y2 = bench.make_data(500, 3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert X.shape == (500, bench.TIME, bench.FEATURES) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.all(np.bincount(y, minlength=bench.N_CLASSES) > 60)
    assert not np.array_equal(bench.make_data(500, 4)[0], X)


def test_the_band_is_in_the_signal(bench):
    """The strongest frequency of the channel-averaged power spectrum names the class far above chance
    (0.2), but not always: the bands touch and the noise is strong, so the task is not trivial."""
    X, y = bench.make_data(2000, 0)
    power = (np.abs(np.fft.rfft(X, axis=1)) ** 2).mean(axis=2)
    peak = power[:, 1:].argmax(axis=1) + 1  # cycles per sequence
    predicted = np.clip((peak - 1.5) // 1.5, 0, bench.N_CLASSES - 1)
    accuracy = np.mean(predicted == y)
    assert 0.5 < accuracy < 0.99, accuracy


def test_bench_quotes_the_median_of_per_turn_ratios(bench):
    def run(seconds):
        return {"epoch_ends": [1.0, 1.0 + seconds], "epoch_cpu_ends": [1.0, 1.0 + 2 * seconds], "n_train": 100,
                "accuracy": 0.5, "peak_rss_mb": 100.0}

    ours = [run(1.0), run(4.0), run(1.0)]
    peer = [run(2.0), run(2.0), run(4.0)]  # per turn 2, 0.5, 4: median 2; the ratio of the medians would be 1
    table = bench.summarize({"barenet": ours, "peer": peer})
    assert table["peer"]["barenet_x"] == pytest.approx(2.0)
    assert table["peer"]["barenet_x_cpu"] == pytest.approx(2.0)
    assert table["peer"]["barenet_x_range"] == pytest.approx([0.5, 4.0])


def test_bench_runs_end_to_end_and_prints_the_table():
    src = str(BENCH.parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(BENCH), "--frameworks", "barenet", "--cells", "gru", "--repeats", "1",
                           "--epochs", "2", "--n-train", "128", "--threads", "1"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "GRU(128) over 50 steps" in done.stdout
    assert any(line.startswith("barenet ") for line in done.stdout.splitlines())


def test_bench_refuses_bad_flags():
    for flags in (["--epochs", "1"], ["--cells", "rnn"], ["--frameworks", "keras"]):
        done = subprocess.run([sys.executable, str(BENCH), *flags], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 2 and "error" in done.stderr, flags
