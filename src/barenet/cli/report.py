"""The report folder written by ``barenet train`` and ``barenet evaluate``.

Files:

* ``curves.png``: loss and the tracked metric per epoch, training and validation (from the History), with the
  kept epoch marked; after ``train``, also each layer's gradient norm and update-to-weight ratio per epoch
  (from a :class:`~barenet.callbacks.GradientMonitor`).
* ``confusion_matrix.png`` (classification) or ``predicted_vs_actual.png`` (regression).
* ``metrics.json``: for each evaluated split, accuracy and macro precision/recall/F1 plus the
  per-class values (classification), or MSE, MAE and R2 (regression), computed with
  ``sklearn.metrics`` on labels/values in the target's own units; after ``train``, the gradient figures
  (``"gradients"``) and the warnings about them (``"gradient_warnings"``).

The folder holds exactly the files of one run: it is written whole into a sibling folder that then
replaces it. A confusion matrix of many classes stays readable and quick: past
:data:`CELL_LABEL_LIMIT` classes its cells carry no numbers, past :data:`TOP_CLASSES` it shows the
most frequent classes and pools the rest (the figure's title says so).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[Any]) -> dict[str, Any]:
    """Metrics of class indices ``y_true``, ``y_pred : (n,)`` for the labels ``classes``."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    macro = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return {
        "samples": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_macro": float(macro[0]),
        "recall_macro": float(macro[1]),
        "f1_macro": float(macro[2]),
        "per_class": {str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(support[i])} for i, c in enumerate(classes)},
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """MSE, MAE and R2 of ``y_pred`` against ``y_true``, both ``(n,)`` in the target's units."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {"samples": int(len(y_true)), "mse": float(mean_squared_error(y_true, y_pred)),
            "mae": float(mean_absolute_error(y_true, y_pred)), "r2": float(r2_score(y_true, y_pred))}


#: Rows of a split kept for the figure when the report is computed from totals (:class:`SplitTotals`).
SAMPLE_ROWS = 20_000


class SplitTotals:
    """A split's predictions summed up block by block: the confusion matrix (classification) or the sums of
    errors and the moments of the true values (regression), and the first :data:`SAMPLE_ROWS` rows for the figure.

    ``add(outputs, y)`` takes network outputs ``(rows, outputs)`` and encoded targets ``(rows,)``;
    :meth:`metrics` gives what :func:`classification_metrics` / :func:`regression_metrics` give on all rows.
    """

    def __init__(self, prep) -> None:
        self.prep = prep
        k = len(prep.classes) if prep.classes is not None else 0
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.n, self.sse, self.sae, self.mean, self.m2 = 0, 0.0, 0.0, 0.0, 0.0
        self.sample: list[tuple[np.ndarray, np.ndarray]] = []
        self.sampled = 0

    def add(self, outputs: np.ndarray, y: np.ndarray) -> None:
        from .fitting import prediction_targets

        y_true, y_pred = prediction_targets(outputs, self.prep, y)
        if self.prep.classes is not None:
            k = len(self.prep.classes)
            self.confusion += np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
        elif len(y_true):
            error = y_pred - y_true
            n_b, mean_b = len(y_true), float(y_true.mean())
            n = self.n + n_b
            delta = mean_b - self.mean
            self.m2 += float(np.square(y_true - mean_b).sum()) + delta * delta * self.n * n_b / n
            self.mean += delta * n_b / n
            self.sse += float(np.square(error).sum())
            self.sae += float(np.abs(error).sum())
        self.n += len(y_true)
        room = SAMPLE_ROWS - self.sampled
        if room > 0 and len(y_true):
            self.sample.append((y_true[:room], y_pred[:room]))
            self.sampled += min(room, len(y_true))

    @property
    def samples(self) -> int:
        return self.n

    def figure_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """``(y_true, y_pred)`` of the sampled rows."""
        if not self.sample:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate([t for t, _ in self.sample]), np.concatenate([p for _, p in self.sample])

    def metrics(self, classes: list[Any] | None) -> dict[str, Any]:
        if classes is None:
            r2 = 1.0 - self.sse / self.m2 if self.m2 > 0 else (1.0 if self.sse == 0 else 0.0)
            return {"samples": self.n, "mse": self.sse / self.n, "mae": self.sae / self.n, "r2": r2}
        tp = np.diag(self.confusion).astype(np.float64)
        support, predicted = self.confusion.sum(axis=1), self.confusion.sum(axis=0)
        p = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        r = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
        f = np.divide(2 * p * r, p + r, out=np.zeros_like(tp), where=(p + r) > 0)
        return {
            "samples": self.n,
            "accuracy": float(tp.sum() / self.n),
            "precision_macro": float(p.mean()),
            "recall_macro": float(r.mean()),
            "f1_macro": float(f.mean()),
            "per_class": {str(c): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                   "support": int(support[i])} for i, c in enumerate(classes)},
        }


def split_metrics(split: tuple | SplitTotals, classes: list[Any] | None) -> dict[str, Any]:
    """The metrics of a split given as ``(y_true, y_pred)`` or as :class:`SplitTotals`."""
    if isinstance(split, SplitTotals):
        return split.metrics(classes)
    y_true, y_pred = split
    if classes is not None:
        return classification_metrics(y_true, y_pred, classes)
    return regression_metrics(y_true, y_pred)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: a confusion matrix with more classes than this has no numbers in its cells and colours by row share
CELL_LABEL_LIMIT = 20
#: a confusion matrix with more classes than this shows the most frequent true classes and pools the rest
TOP_CLASSES = 30
#: the panel title of the loss, by task
LOSS_LABELS = {"classification": "loss (cross-entropy)",
               "regression": "loss (mean squared error of the standardized target)"}


def curves_figure(history: dict[str, list[float]], title: str, loss_label: str = "loss", *,
                  kept_epoch: int | None = None, gradients: Mapping[str, Mapping[str, list[float]]] | None = None):
    """One panel per quantity (loss, then each metric), training and validation lines, on whole-number epochs.

    ``kept_epoch`` (counted from 1, as ``metrics.json`` counts it) is the epoch whose weights were saved: a
    dashed line and a ring on each curve mark it. ``gradients`` (``{"gradient_norm": {layer: [per epoch]},
    "update_ratio": {layer: [per epoch]}}``, as :class:`~barenet.callbacks.GradientMonitor` records them)
    adds a panel per quantity with one line per layer on a log scale.
    """
    plt = _pyplot()
    names = [k for k in history if not k.startswith("val_") and k != "lr"]
    rows = [names]
    gradient_names = [key for key in GRADIENT_PANELS if gradients and gradients.get(key)]
    if gradient_names:
        rows.append(gradient_names)  # a second row: the learning curves keep their size
    width = max(len(row) for row in rows)
    fig, axes = plt.subplots(len(rows), width, figsize=(5.5 * width, 4.2 * len(rows)), squeeze=False)
    for ax_row, row in zip(axes, rows, strict=True):
        for ax in ax_row[len(row):]:
            ax.set_visible(False)
        for ax, name in zip(ax_row, row, strict=False):
            if name in GRADIENT_PANELS:
                _gradient_panel(ax, name, gradients[name])
                n_epochs = max(len(values) for values in gradients[name].values())
            else:
                _curve_panel(ax, name, history, loss_label, kept_epoch)
                n_epochs = len(history[name])
            _epoch_axis(ax, n_epochs)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


#: the gradient quantities :func:`curves_figure` draws, with their panel titles
GRADIENT_PANELS = {"gradient_norm": "gradient norm per layer (mean over batches)",
                   "update_ratio": "update / weight norm per layer (mean over steps)"}


def _values(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _curve_panel(ax, name: str, history: dict[str, list[float]], loss_label: str, kept_epoch: int | None) -> None:
    epochs = np.arange(1, len(history[name]) + 1)
    series = [("training", _values(history[name]))]
    if f"val_{name}" in history:
        series.append(("validation", _values(history[f"val_{name}"])))
    for label, values in series:
        line, = ax.plot(epochs, values, marker="o", markersize=3, label=label)
        if kept_epoch is not None and 1 <= kept_epoch <= len(values):
            ax.plot([kept_epoch], [values[kept_epoch - 1]], marker="o", markersize=10, fillstyle="none",
                    color=line.get_color(), linestyle="none")
    if kept_epoch is not None and 1 <= kept_epoch <= len(epochs):
        ax.axvline(kept_epoch, color="grey", linestyle="--", linewidth=1, label=f"kept: epoch {kept_epoch}")
    ax.set_title(loss_label if name == "loss" else name.replace("_", " "))
    ax.set_ylabel(name)
    ax.legend()


def _gradient_panel(ax, name: str, per_layer: Mapping[str, list[float]]) -> None:
    for layer, values in per_layer.items():
        series = _values(values)
        series[~(series > 0)] = np.nan  # a log axis shows no zeros; a vanished layer's line ends there
        ax.plot(np.arange(1, len(series) + 1), series, marker="o", markersize=3, label=layer)
    ax.set_yscale("log")
    ax.set_title(GRADIENT_PANELS[name])
    ax.set_ylabel(name.replace("_", " "))
    ax.legend(fontsize=8 if len(per_layer) > 6 else None)


def _epoch_axis(ax, n_epochs: int) -> None:
    """Whole-number epoch ticks, 1 to ``n_epochs``: a one-epoch run shows one tick, ``1``, not 0.945 ... 1.055."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(0.5, max(n_epochs, 1) + 0.5)
    ax.grid(alpha=0.3)


def plot_curves(history: dict[str, list[float]], path: Path, title: str, loss_label: str = "loss", *,
                kept_epoch: int | None = None, gradients: Mapping[str, Mapping[str, list[float]]] | None = None
                ) -> None:
    """Write :func:`curves_figure` to ``path`` as PNG."""
    _save(curves_figure(history, title, loss_label, kept_epoch=kept_epoch, gradients=gradients), path)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, shown: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of true (rows) against predicted (columns) over the classes ``shown``, the rest pooled last.

    ``y_true``, ``y_pred : (n,)`` class indices in ``[0, n_classes)``; ``shown : (k,)`` indices.
    Returns ``(k, k)`` when every class is shown, else ``(k + 1, k + 1)`` whose last row and
    column pool the other classes. Time and memory are O(n + n_classes + k**2), never O(n_classes**2).
    """
    k = len(shown)
    size = k if k == n_classes else k + 1
    position = np.full(n_classes, k, dtype=np.intp)
    position[shown] = np.arange(k)
    flat = position[y_true] * size + position[y_pred]
    return np.bincount(flat, minlength=size * size).reshape(size, size)


def _short(label: Any, width: int = 18) -> str:
    text = str(label)
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, classes: list[Any], title: str):
    """The confusion matrix, readable at any number of classes.

    Up to :data:`CELL_LABEL_LIMIT` classes: every count in its cell, coloured by count. More: no
    numbers, and each row coloured by its share of that true class's samples (the diagonal is the
    recall). More than :data:`TOP_CLASSES`: the most frequent true classes, the others pooled in one
    "other" row and column. The title says which of these was done.
    """
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    n = len(classes)
    if n > TOP_CLASSES:
        support = np.bincount(y_true, minlength=n)
        shown = np.sort(np.argsort(-support, kind="stable")[:TOP_CLASSES])
    else:
        shown = np.arange(n)
    matrix = confusion_counts(np.asarray(y_true), np.asarray(y_pred), shown, n)
    labels = [_short(classes[i]) for i in shown]
    notes = []
    if len(matrix) > len(shown):
        labels.append(f"other ({n - len(shown)})")
        notes.append(f"{n} classes: the {len(shown)} with most true samples, the other {n - len(shown)} "
                     "pooled as 'other'")
    labelled = n <= CELL_LABEL_LIMIT
    if labelled:
        colour, colour_label = matrix, "samples"
    else:
        rows = matrix.sum(axis=1, keepdims=True)
        colour = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
        colour_label = "share of the true class's samples"
        notes.append("colour: share of each true class's samples (diagonal = recall); counts in metrics.json")
    size = min(4 + 0.5 * len(matrix), 14)
    fig, ax = plt.subplots(figsize=(size + 1.2, size + 0.3 * len(notes)))
    image = ax.imshow(colour, cmap="Blues", vmin=0, vmax=None if labelled else 1)
    fig.colorbar(image, ax=ax, label=colour_label, shrink=0.8, ticks=MaxNLocator(integer=labelled))
    ticks = np.arange(len(matrix))
    font = 10 if len(matrix) <= CELL_LABEL_LIMIT else 7
    ax.set_xticks(ticks, labels, rotation=45 if len(matrix) <= CELL_LABEL_LIMIT else 90,
                  ha="right" if len(matrix) <= CELL_LABEL_LIMIT else "center", fontsize=font)
    ax.set_yticks(ticks, labels, fontsize=font)
    if labelled:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(len(matrix)):
            for j in range(len(matrix)):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                        color="white" if matrix[i, j] > threshold else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("\n".join([title, *notes]), fontsize=10 if notes else None)
    fig.tight_layout()
    return fig


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: list[Any], path: Path, title: str) -> None:
    """Write :func:`confusion_figure` to ``path`` as PNG."""
    _save(confusion_figure(y_true, y_pred, classes, title), path)


def _save(fig, path: Path) -> None:
    plt = _pyplot()
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


def plot_predicted_vs_actual(y_true: np.ndarray, y_pred: np.ndarray, path: Path, title: str, target: str) -> None:
    """Scatter of predictions against true values, with the line of perfect prediction."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.scatter(y_true, y_pred, s=12, alpha=0.6, label="samples")
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1, label="predicted = actual")
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)


#: every file a report folder can hold; ``--force`` replaces a folder holding only these
REPORT_FILES = frozenset({"curves.png", "confusion_matrix.png", "predicted_vs_actual.png", "metrics.json"})


def write_report(folder: Path, *, history: dict[str, list[float]] | None, splits: dict[str, tuple],
                 plot_split: str, classes: list[Any] | None, target: str, header: dict[str, Any],
                 kept_epoch: int | None = None, gradients: Mapping[str, Mapping[str, list[float]]] | None = None
                 ) -> list[Path]:
    """Write the report into ``folder``, whole or not at all; returns the paths written.

    ``splits`` maps a split name to ``(y_true, y_pred)``: class indices for classification
    ``splits`` maps a split name to ``(y_true, y_pred)``: class indices for classification
    (``classes`` given), target values for regression; or to :class:`SplitTotals` (a table read block
    by block: metrics over every row, the figure from the first rows). The figure of predictions uses ``plot_split``.
    ``kept_epoch`` (from 1), the epoch whose weights the model holds, is marked on the curves; ``gradients`` (see
    :func:`curves_figure`) adds the gradient panels to them and is written to ``metrics.json``.
    The files are written into a fresh sibling folder that then replaces ``folder`` (see
    :func:`barenet.cli.paths.write_folder`): no file of an earlier report survives, and a failure
    leaves the earlier report as it was.
    """
    from .paths import write_folder

    names = write_folder(folder, lambda fresh: _write_report_files(
        fresh, history=history, splits=splits, plot_split=plot_split, classes=classes, target=target,
        header=header, kept_epoch=kept_epoch, gradients=gradients))
    return [Path(folder) / name for name in names]


def _write_report_files(folder: Path, *, history: dict[str, list[float]] | None, splits: dict[str, tuple],
                        plot_split: str, classes: list[Any] | None, target: str, header: dict[str, Any],
                        kept_epoch: int | None, gradients: Mapping[str, Mapping[str, list[float]]] | None
                        ) -> list[str]:
    written = []
    if history and any(history.values()):
        task = "classification" if classes is not None else "regression"
        plot_curves(history, folder / "curves.png", f"Training curves ({target})", LOSS_LABELS[task],
                    kept_epoch=kept_epoch, gradients=gradients)
        written.append("curves.png")
    metrics: dict[str, Any] = dict(header)
    for name, split in splits.items():
        metrics[name] = split_metrics(split, classes)
    if gradients:
        metrics["gradients"] = {key: {layer: [v if v is None or math.isfinite(v) else None for v in values]
                                      for layer, values in per_layer.items()}
                                for key, per_layer in gradients.items()}
    split = splits[plot_split]
    if isinstance(split, SplitTotals):
        y_true, y_pred = split.figure_rows()
        counted = f"the first {len(y_true)} of {split.samples} samples"
    else:
        y_true, y_pred = split
        counted = f"{len(y_true)} samples"
    if classes is not None:
        plot_confusion(y_true, y_pred, classes, folder / "confusion_matrix.png",
                       f"Confusion matrix, {plot_split} ({counted})")
        written.append("confusion_matrix.png")
    else:
        plot_predicted_vs_actual(y_true, y_pred, folder / "predicted_vs_actual.png",
                                 f"Predicted vs actual, {plot_split} ({counted})", target)
        written.append("predicted_vs_actual.png")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    written.append("metrics.json")
    return written
