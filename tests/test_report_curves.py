"""The command line's learning curves: the kept epoch is marked, a one-epoch run reads as one epoch, and the
gradient panels draw what a GradientMonitor recorded."""

import json

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")

import matplotlib.pyplot as plt  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from barenet.cli.inference import _kept_epoch  # noqa: E402
from barenet.cli.report import GRADIENT_PANELS, curves_figure, write_report  # noqa: E402


def _visible_ticks(ax):
    low, high = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if low <= t <= high]


def _kept_lines(ax):
    return [line for line in ax.get_lines() if line.get_label().startswith("kept: epoch")]


def test_a_one_epoch_run_has_one_tick_reading_1():
    fig = curves_figure({"loss": [0.7], "val_loss": [0.8], "accuracy": [0.5], "val_accuracy": [0.4]}, "t")
    fig.canvas.draw()
    for ax in fig.axes:
        assert _visible_ticks(ax) == [1.0], ax.get_title()
        assert [label.get_text() for label in ax.get_xticklabels() if label.get_text()
                and ax.get_xlim()[0] <= label.get_position()[0] <= ax.get_xlim()[1]] == ["1"]
    plt.close(fig)


@pytest.mark.parametrize("epochs", [2, 7, 60])
def test_ticks_are_whole_epochs_inside_the_run(epochs):
    fig = curves_figure({"loss": [1.0 / (k + 1) for k in range(epochs)]}, "t")
    fig.canvas.draw()
    ticks = _visible_ticks(fig.axes[0])
    assert ticks and all(t.is_integer() and 1 <= t <= epochs for t in ticks), ticks
    plt.close(fig)


def test_the_kept_epoch_is_marked_on_every_curve_panel():
    history = {"loss": [0.9, 0.6, 0.5, 0.55], "val_loss": [1.0, 0.7, 0.65, 0.8], "accuracy": [0.5, 0.6, 0.7, 0.7],
               "val_accuracy": [0.4, 0.5, 0.6, 0.55]}
    fig = curves_figure(history, "t", kept_epoch=3)
    for ax, name in zip(fig.axes, ["loss", "accuracy"], strict=True):
        (line,) = _kept_lines(ax)
        assert list(line.get_xdata()) == [3, 3]
        rings = [tuple(zip(m.get_xdata(), m.get_ydata(), strict=True)) for m in ax.get_lines()
                 if m.get_markersize() == 10]
        assert sorted(rings) == sorted([((3, history[name][2]),), ((3, history[f"val_{name}"][2]),)])
        assert "kept: epoch 3" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


@given(kept=st.one_of(st.none(), st.integers(-5, 10)))
@settings(max_examples=25, deadline=None)
def test_a_kept_epoch_outside_the_run_is_not_drawn(kept):
    fig = curves_figure({"loss": [0.5, 0.4, 0.3]}, "t", kept_epoch=kept)
    assert len(_kept_lines(fig.axes[0])) == (1 if kept is not None and 1 <= kept <= 3 else 0)
    plt.close(fig)


def test_gradient_panels_one_line_per_layer_on_a_log_axis():
    gradients = {"gradient_norm": {"dense_0": [1e-6, 2e-6], "dense_1": [0.1, 0.0]},
                 "update_ratio": {"dense_0": [1e-3, 2e-3], "dense_1": [1e-3, float("nan")]}}
    fig = curves_figure({"loss": [0.5, 0.4]}, "t", gradients=gradients)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["loss", *GRADIENT_PANELS.values()]
    for ax, key in zip(visible[1:], GRADIENT_PANELS, strict=True):
        assert ax.get_yscale() == "log"
        assert [line.get_label() for line in ax.get_lines()] == ["dense_0", "dense_1"]
        assert list(ax.get_lines()[0].get_ydata()) == gradients[key]["dense_0"]
    plt.close(fig)


def test_the_report_draws_the_gradients_and_writes_them_to_metrics_json(tmp_path):
    import numpy as np

    gradients = {"gradient_norm": {"dense_0": [0.5, float("inf")]}, "update_ratio": {"dense_0": [1e-3, 2e-3]}}
    y = np.array([0, 1, 1, 0])
    write_report(tmp_path / "report", history={"loss": [0.7, 0.6]}, splits={"train": (y, y)}, plot_split="train",
                 classes=["a", "b"], target="t", header={"task": "classification"}, kept_epoch=2,
                 gradients=gradients)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["gradients"] == {"gradient_norm": {"dense_0": [0.5, None]},
                                    "update_ratio": {"dense_0": [1e-3, 2e-3]}}
    assert (tmp_path / "report" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                                       max_size=3), max_leaves=8)


@given(fit=json_values, kept=json_values)
@settings(max_examples=40, deadline=None)
def test_the_kept_epoch_read_from_a_model_file_is_an_epoch_or_none(fit, kept):
    for metadata in ({"fit": fit}, {"fit": {"kept_epoch": kept}}, {}):
        value = _kept_epoch(metadata)
        assert value is None or (type(value) is int and value >= 1)
    assert _kept_epoch({"fit": {"kept_epoch": 4}}) == 4
