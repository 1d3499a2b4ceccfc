"""Each script in examples/ runs as a real subprocess and prints the results it promises."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run ``examples/<name>`` with ``args`` (and extra ``env`` variables); fail with its stderr if it exits
    non-zero; return stdout."""
    env = {**os.environ, "MPLBACKEND": "Agg", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{proc.stderr}"
    return proc.stdout


def number_after(label: str, text: str) -> float:
    """The number printed right after ``label`` (e.g. ``"test accuracy:"``) in ``text``."""
    match = re.search(re.escape(label) + r"\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)", text)
    assert match, f"no {label!r} in output:\n{text}"
    return float(match.group(1))


def test_xor_prints_the_xor_truth_table():
    out = run_example("xor.py")
    assert "[0, 1, 1, 0]" in out.splitlines()
    assert number_after("accuracy", out) == 1.0


def test_xor_with_too_few_steps_has_not_learned_yet():
    # Guards the check above: the printed classes come from the network, not a constant.
    out = run_example("xor.py", "--epochs", "10")
    assert "[0, 1, 1, 0]" not in out.splitlines()


def test_sine_fits_with_small_mse_and_saves_a_plot(tmp_path):
    figure = tmp_path / "sine.png"
    out = run_example("sine.py", "--epochs", "150", "--plot", str(figure))
    assert number_after("final MSE on 1000 grid points:", out) < 0.01
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.stat().st_size > 10_000


@pytest.mark.parametrize("bad", [["--epochs", "ten"], ["--no-such-option"]])
def test_examples_reject_bad_arguments(bad):
    proc = subprocess.run([sys.executable, str(EXAMPLES / "sine.py"), *bad], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def metric_row(label: str, text: str) -> dict[str, float]:
    """The four metrics of the results row starting with ``label``."""
    line = next((ln for ln in text.splitlines() if ln.startswith(label)), None)
    assert line is not None, f"no row {label!r} in output:\n{text}"
    return {name: number_after(name, line) for name in ("accuracy", "precision", "recall", "f1")}


def test_rain_beats_the_majority_baseline_offline():
    # An unreachable proxy makes any download fail: the data must come from the package's own copy.
    offline = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    out = run_example("rain.py", "--epochs", "30", env=offline)
    baseline = metric_row("baseline", out)
    ours = metric_row("network, sklearn.metrics", out)
    assert 0.5 < baseline["accuracy"] < 0.65
    assert ours["accuracy"] > baseline["accuracy"] + 0.1
    assert ours["f1"] > 0.6 and ours["precision"] > 0.6 and ours["recall"] > 0.6
    assert metric_row("network, barenet evaluate", out) == pytest.approx(ours, abs=1e-4)


def test_digits_reaches_95_percent_with_early_stopping_and_reports_every_class():
    out = run_example("digits.py", "--learning-rate", "0.003", "--patience", "5")
    assert number_after("test accuracy:", out) >= 0.95
    trained = int(number_after("trained", out))
    best_epoch = int(number_after("at epoch", out))
    assert best_epoch < trained < 100, "early stopping should end training before the epoch limit"
    # restore_best_weights: the returned model scores the best epoch's validation loss, not the last one's.
    assert number_after("val_loss of the restored weights:", out) == pytest.approx(number_after("best val_loss", out))
    report_rows = [line.split() for line in out.splitlines() if re.match(r"^\s+\d\s+\d\.\d{3}", line)]
    assert [row[0] for row in report_rows] == [str(k) for k in range(10)]
    assert "macro avg" in out
