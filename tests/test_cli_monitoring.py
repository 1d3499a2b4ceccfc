"""Watching ``barenet train``: ``--tensorboard DIR`` event files read back with TensorBoard's reader, the gradient
warnings and panels of the report, through real ``barenet`` subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barenet as bn
from barenet.errors import BarenetError

pytest.importorskip("pandas")
pytest.importorskip("sklearn")


def cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "barenet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _table(path: Path, seed: int = 0, n: int = 120) -> Path:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    label = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    path.write_text("a,b,c,label\n" + "".join(f"{r[0]:.5f},{r[1]:.5f},{r[2]:.5f},{lab}\n"
                                              for r, lab in zip(X, label, strict=True)))
    return path


def test_train_with_tensorboard_writes_the_history_it_saves(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    pytest.importorskip("tensorboardX")
    data, model_path, logs = _table(tmp_path / "d.csv"), tmp_path / "m.barenet", tmp_path / "logs"
    result = cli("train", data, "--target", "label", "--out", model_path, "--epochs", "3", "--layers", "8",
                 "--tensorboard", logs)
    assert result.returncode == 0, result.stderr
    history = bn.load(model_path).metadata["history"]
    assert "tensorboard" not in bn.load(model_path).metadata["training"]  # a local path, not a training option
    runs = {}
    for run in ("train", "validation"):
        runs[run] = event_accumulator.EventAccumulator(str(logs / run), size_guidance={"scalars": 0})
        runs[run].Reload()
    for name in ("loss", "accuracy"):
        for run, key in (("train", name), ("validation", f"val_{name}")):
            events = runs[run].Scalars(f"epoch_{name}")
            assert [(e.step, e.value) for e in events] == [(k, float(np.float32(v))) for k, v in
                                                           enumerate(history[key])], (run, name)
    assert [n.name for n in runs["train"].Graph().node] == ["input", "dense_0", "dense_1"]
    metrics = json.loads((tmp_path / "m.barenet.report" / "metrics.json").read_text())
    assert metrics["gradient_warnings"] == []
    assert sorted(metrics["gradients"]["gradient_norm"]) == ["dense_0", "dense_1"]
    assert all(len(values) == 3 for values in metrics["gradients"]["update_ratio"].values())


def test_a_deep_sigmoid_network_is_warned_about_by_layer_name(tmp_path):
    data, model_path = _table(tmp_path / "d.csv"), tmp_path / "m.barenet"
    result = cli("train", data, "--target", "label", "--out", model_path, "--epochs", "1", "--activation", "sigmoid",
                 "--layers", "12,12,12,12,12,12,12,12")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("barenet: warning: gradients")]
    assert warnings and warnings[0].startswith("barenet: warning: gradients vanish in layer 'dense_0' at epoch 1")
    metrics = json.loads((tmp_path / "m.barenet.report" / "metrics.json").read_text())
    assert [f"barenet: warning: {text}" for text in metrics["gradient_warnings"]] == warnings
    norms = metrics["gradients"]["gradient_norm"]
    assert norms["dense_0"][0] < 1e-3 * norms["dense_8"][0]


def test_an_unusable_tensorboard_folder_is_refused_before_training(tmp_path):
    pytest.importorskip("tensorboardX")
    data, model_path = _table(tmp_path / "d.csv"), tmp_path / "m.barenet"
    result = cli("train", data, "--target", "label", "--out", model_path, "--tensorboard", tmp_path / "no" / "run")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("barenet: error: cannot write TensorBoard log folder"), lines
    assert "folder" in lines[0] and "does not exist" in lines[0]
    assert "Epoch" not in result.stdout and not model_path.exists()


def test_without_tensorboardx_the_flag_names_the_extra(tmp_path):
    data, model_path = _table(tmp_path / "d.csv"), tmp_path / "m.barenet"
    code = ("import sys; sys.modules['tensorboardX'] = None\n"
            "from barenet.cli import main\n"
            f"sys.exit(main(['train', {str(data)!r}, '--target', 'label', '--out', {str(model_path)!r}, "
            f"'--tensorboard', {str(tmp_path / 'logs')!r}]))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ('barenet: error: the TensorBoard callback writes its event files with the '
                                     'tensorboardX package; install it with pip install "barenet[tensorboard]"')
    assert not model_path.exists()


@given(name=st.text(min_size=1, max_size=12) | st.text(alphabet="ab./\x00", min_size=1, max_size=300),
       nested=st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_log_path_is_accepted_or_refused_with_a_barenet_error(tmp_path, name, nested):
    """The paths a user gives the TensorBoard and CSVLogger callbacks (and ``--tensorboard``)."""
    pytest.importorskip("tensorboardX")
    from barenet.callbacks import CSVLogger, TensorBoard

    path = os.path.join(str(tmp_path), name, "run") if nested else os.path.join(str(tmp_path), name)
    for check in (lambda: TensorBoard(path).check_log_dir(), lambda: _open_and_close(CSVLogger(path))):
        try:
            check()
        except BarenetError:
            continue
        assert "\x00" not in path


def _open_and_close(logger):
    logger.on_train_begin()
    logger.on_train_end()
