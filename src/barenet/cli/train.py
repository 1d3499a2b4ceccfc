"""``barenet train``: fit a network to a table and save it with its preprocessing and a report.

The network is ``Dense(units) [-> BatchNormalization] -> activation [-> Dropout]`` per hidden
layer, then ``Dense(classes, softmax)`` trained with categorical cross-entropy (classification)
or ``Dense(1)`` trained with mean squared error on the standardized target (regression).

Ctrl-C (SIGINT) ends training after the current step; the command then restores the weights of
the best epoch so far (lowest ``val_loss`` when there is a validation split, else lowest
``loss``), saves them, writes the report of the epochs done, and exits with status 130.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from .. import layers, optimizers
from ..errors import ConfigError, DataError
from ..models import Sequential
from ..models.callbacks import Callback, EarlyStopping
from ..preprocessing import TablePreprocessor
from .data import read_table
from .paths import check_output_file, check_report_folder, output_errors
from .report import REPORT_FILES, write_report
from .values import MAX_UNITS, check_parameter_budget

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "linear")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
INTERRUPTED = 130  # the shell's status for a process ended by SIGINT


class BestWeights(Callback):
    """Keep a copy of the weights of the epoch with the lowest ``monitor`` value."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best = math.inf
        self.best_epoch: int | None = None
        self.weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor, math.nan)
        if math.isfinite(value) and value < self.best:
            self.best, self.best_epoch = value, epoch
            self.weights = self.model.get_weights()


def parse_layers(text: str) -> list[int]:
    """``"64,32"`` -> ``[64, 32]``; ``""`` or ``"none"`` -> no hidden layer."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--layers must be comma-separated positive integers such as 64,32; got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise ConfigError(f"--layers sizes must be positive; got {text!r}")
    if any(size > MAX_UNITS for size in sizes):
        raise ConfigError(f"--layers sizes must be at most {MAX_UNITS} units each; got {text!r}")
    return sizes


def build_model(n_features: int, n_outputs: int, task: str, args: argparse.Namespace) -> Sequential:
    """The network for ``args`` (layers, activation, l2, dropout, batch norm, optimizer, lr), compiled."""
    init = "he_normal" if args.activation in ("relu", "leaky_relu", "elu", "gelu") else "glorot_uniform"
    stack: list[layers.Layer] = []
    for i, units in enumerate(parse_layers(args.layers)):
        first = {"input_dim": n_features} if i == 0 else {}
        stack.append(layers.Dense(units, None if args.batch_norm else args.activation, l2=args.l2,
                                  kernel_initializer=init, **first))
        if args.batch_norm:
            stack += [layers.BatchNormalization(), layers.activations.get(args.activation)]
        if args.dropout:
            stack.append(layers.Dropout(args.dropout))
    last = {} if stack else {"input_dim": n_features}
    if task == "classification":
        stack.append(layers.Dense(n_outputs, "softmax", l2=args.l2, **last))
        loss, metrics = "categorical_crossentropy", ["accuracy"]
    else:
        stack.append(layers.Dense(1, None, l2=args.l2, **last))
        loss, metrics = "mean_squared_error", ["r2"]
    model = Sequential(stack, seed=args.seed)
    model.compile(loss=loss, optimizer=optimizers.get(args.optimizer, learning_rate=args.lr), metrics=metrics)
    model.build()
    return model


def split_indices(y: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled train and validation row indices; stratified by class when every class can be split."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    if fraction == 0:
        return index, index[:0]
    n_val = int(round(len(y) * fraction))
    if n_val < 1 or n_val >= len(y):
        raise DataError(f"--val-split {fraction} of {len(y)} rows leaves {n_val} for validation and "
                        f"{len(y) - n_val} for training; both need at least one")
    strata = y if stratify and np.bincount(y).min() >= 2 else None
    try:
        train, val = train_test_split(index, test_size=n_val, random_state=seed, stratify=strata)
    except ValueError:  # too few rows per class to stratify
        train, val = train_test_split(index, test_size=n_val, random_state=seed)
    return np.sort(train), np.sort(val)


def _finite_history(history: dict[str, list[float]]) -> dict[str, list[float | None]]:
    return {k: [v if math.isfinite(v) else None for v in values] for k, values in history.items()}


def prediction_targets(model: Sequential, prep: TablePreprocessor, X: np.ndarray, y: np.ndarray):
    """``(y_true, y_pred)`` for the report: class indices, or values in the target's units."""
    out = model.predict(X)
    if prep.classes is not None:
        return y, out.argmax(axis=1)
    return y * prep.target_scale + prep.target_center, prep.decode_target(out)


def run(args: argparse.Namespace) -> int:
    from ..io import save

    if not 0.0 <= args.val_split < 1.0:
        raise ConfigError(f"--val-split must be in [0, 1), got {args.val_split}")
    if not 0.0 <= args.dropout < 1.0:
        raise ConfigError(f"--dropout must be in [0, 1), got {args.dropout}")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.lr <= 0 or args.l2 < 0:
        raise ConfigError(f"--lr must be > 0 and --l2 >= 0, got lr={args.lr} and l2={args.l2}")
    out = check_output_file(args.out, args.force, "model file")
    report = check_report_folder(args.report or f"{out}.report", args.force, REPORT_FILES)
    parse_layers(args.layers)

    table = read_table(args.data)
    prep = TablePreprocessor(args.target, task=args.task, scale=args.scale).fit(table)
    X = prep.transform(table)
    y = prep.encode_target(table[args.target])
    train, val = split_indices(y, args.val_split, args.seed, stratify=prep.classes is not None)
    check_parameter_budget(X.shape[1], parse_layers(args.layers), prep.n_outputs)
    model = build_model(X.shape[1], prep.n_outputs, prep.task, args)
    print(f"{prep.task}: {len(train)} training rows, {len(val)} validation rows, {X.shape[1]} input features"
          + (f", {len(prep.classes)} classes" if prep.classes else ""), flush=True)

    monitor = "val_loss" if len(val) else "loss"
    best = BestWeights(monitor)
    callbacks: list[Callback] = [best]
    if args.early_stopping:
        callbacks.append(EarlyStopping(monitor=monitor, patience=args.early_stopping, restore_best_weights=True))
    validation = (X[val], y[val]) if len(val) else None
    history = model.fit(X[train], y[train], epochs=args.epochs, batch_size=args.batch_size,
                        validation_data=validation, callbacks=callbacks, verbose=1)
    interrupted = bool(getattr(model, "interrupted", False))
    if interrupted and best.weights is not None:
        model.set_weights(best.weights)

    model.metadata = {
        "preprocessing": prep.to_json(),
        "history": _finite_history(history.history),
        "training": {key: value for key, value in vars(args).items()
                     if key not in ("func", "command", "force", "out", "report")},
    }
    with output_errors("model file", out):
        save(model, out)
    splits: dict[str, Any] = {"train": prediction_targets(model, prep, X[train], y[train])}
    if len(val):
        splits["validation"] = prediction_targets(model, prep, X[val], y[val])
    header = {"task": prep.task, "target": prep.target, "data": str(args.data), "epochs_run": len(history.epoch),
              "interrupted": interrupted}
    write_report(report, history=history.history, splits=splits, plot_split="validation" if len(val) else "train",
                 classes=prep.classes, target=prep.target, header=header)
    if interrupted:
        where = (f"epoch {best.best_epoch + 1} ({monitor} {best.best:.4f})" if best.best_epoch is not None
                 else "the last completed step (no epoch finished)")
        print(f"barenet: training interrupted; saved the model of {where} to {out}", flush=True)
    else:
        print(f"saved model to {out}")
    print(f"report: {report}/")
    return INTERRUPTED if interrupted else 0
