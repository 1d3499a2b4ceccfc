"""The report folder written by ``barenet train`` and ``barenet evaluate``.

Files:

* ``curves.png``: loss and the tracked metric per epoch, training and validation (from the History).
* ``confusion_matrix.png`` (classification) or ``predicted_vs_actual.png`` (regression).
* ``metrics.json``: for each evaluated split, accuracy and macro precision/recall/F1 plus the
  per-class values (classification), or MSE, MAE and R2 (regression), computed with
  ``sklearn.metrics`` on labels/values in the target's own units.
"""

from __future__ import annotations

import json
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    """One panel per quantity (loss, then each metric), training and validation lines."""
    plt = _pyplot()
    names = [k for k in history if not k.startswith("val_") and k != "lr"]
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        ax.plot(epochs, history[name], marker="o", markersize=3, label="training")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], marker="o", markersize=3, label="validation")
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: list[Any], path: Path, title: str) -> None:
    """Counts of true class (rows) against predicted class (columns), each cell labelled."""
    from sklearn.metrics import confusion_matrix

    plt = _pyplot()
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(len(classes))))
    size = min(4 + 0.5 * len(classes), 14)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, label="samples")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(ticks, [str(c) for c in classes])
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(folder: Path, *, history: dict[str, list[float]] | None, splits: dict[str, tuple],
                 plot_split: str, classes: list[Any] | None, target: str, header: dict[str, Any]) -> list[Path]:
    """Write the report files into ``folder`` (created if needed); returns the paths written.

    ``splits`` maps a split name to ``(y_true, y_pred)``: class indices for classification
    (``classes`` given), target values for regression. The figure of predictions uses ``plot_split``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if history and any(history.values()):
        path = folder / "curves.png"
        plot_curves(history, path, f"Training curves ({target})")
        written.append(path)
    metrics: dict[str, Any] = dict(header)
    for name, (y_true, y_pred) in splits.items():
        metrics[name] = (classification_metrics(y_true, y_pred, classes) if classes is not None
                         else regression_metrics(y_true, y_pred))
    y_true, y_pred = splits[plot_split]
    if classes is not None:
        path = folder / "confusion_matrix.png"
        plot_confusion(y_true, y_pred, classes, path, f"Confusion matrix, {plot_split} ({len(y_true)} samples)")
    else:
        path = folder / "predicted_vs_actual.png"
        plot_predicted_vs_actual(y_true, y_pred, path, f"Predicted vs actual, {plot_split} ({len(y_true)} samples)",
                                 target)
    written.append(path)
    path = folder / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    written.append(path)
    return written
