"""The one code path that builds and trains the network of ``barenet train`` and ``barenet tune``.

:func:`prepare` selects the columns (``--features``, ``--drop``), fits the table preprocessing and
splits the rows into training and validation; :func:`fit_network` builds, compiles and trains the
network and decides which epoch's weights the command keeps. ``train`` runs them once on the whole
table; ``tune`` runs them on the training part of each cross-validation fold, so a candidate of
``tune`` is exactly the model ``train`` would fit on those rows with the same flags.

Which epoch is kept
-------------------
The training is watched by a :class:`SnapshotCallback`, which after every epoch records the
epoch's figures and, when they and the weights are finite, a copy of the weights and optimizer
state. The command reports and saves from that record only:

* training ran all its epochs: the last epoch;
* ``--early-stopping N``, training interrupted (Ctrl-C) or diverged (a NaN or infinite loss,
  metric or weight): the best epoch so far, the one with the lowest ``val_loss`` (``loss``
  without a validation split); when no epoch ended with finite values, nothing is kept.
"""

from __future__ import annotations

import argparse
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import layers, optimizers
from ..errors import ConfigError, DataError
from ..models import Sequential
from ..models.callbacks import Callback, EarlyStopping, ProgressBar, TerminateOnNaN
from ..preprocessing import SCALERS, TASKS, ColumnWarning, TablePreprocessor, did_you_mean, preview
from .values import MAX_UNITS, check_parameter_budget, finite_number, seed

ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "linear")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")

#: ``dest`` of every option that changes the trained model; ``tune`` sets the same ones.
TRAINING_OPTIONS = ("target", "task", "features", "drop", "layers", "activation", "epochs", "batch_size",
                    "optimizer", "lr", "l2", "dropout", "batch_norm", "val_split", "early_stopping", "scale",
                    "seed")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The options that define the model and its training, shared by ``train`` and ``tune``."""
    parser.add_argument("--target", required=True, help="name of the column to predict")
    parser.add_argument("--features", metavar="COL[,COL]",
                        help="use only these columns as inputs (default: every column but the target)")
    parser.add_argument("--drop", metavar="COL[,COL]", help="leave these columns out of the inputs")
    parser.add_argument("--layers", default="64,32",
                        help="hidden layer sizes, comma-separated; none for no hidden layer (default: %(default)s)")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu",
                        help="activation of the hidden layers (default: %(default)s)")
    parser.add_argument("--task", choices=TASKS, default="auto",
                        help="auto: classification for text, boolean or integer targets with <= 20 distinct "
                             "values, else regression (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=50, help="passes over the training rows (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per gradient step (default: %(default)s)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="optimizer (default: %(default)s)")
    parser.add_argument("--lr", type=finite_number, default=1e-3, help="learning rate (default: %(default)s)")
    parser.add_argument("--l2", type=finite_number, default=0.0, help="L2 penalty on kernels (default: %(default)s)")
    parser.add_argument("--dropout", type=finite_number, default=0.0,
                        help="dropout rate after hidden layers (default: %(default)s)")
    parser.add_argument("--batch-norm", action="store_true", help="batch normalization before each activation")
    parser.add_argument("--val-split", type=finite_number, default=0.2,
                        help="fraction of rows held out for validation (shuffled, stratified); 0 for none "
                             "(default: %(default)s)")
    parser.add_argument("--early-stopping", type=int, default=0, metavar="N",
                        help="stop after N epochs without improvement and keep the best epoch's weights; 0 never "
                             "stops early (default: %(default)s)")
    parser.add_argument("--scale", choices=SCALERS, default="standard",
                        help="scaling of numeric columns (default: %(default)s)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed, 0 to 2**32-1 (default: %(default)s)")


def check_training_options(options: argparse.Namespace) -> None:
    """Raise :class:`ConfigError` naming the first option out of range."""
    if not 0.0 <= options.val_split < 1.0:
        raise ConfigError(f"--val-split must be in [0, 1), got {options.val_split}")
    if not 0.0 <= options.dropout < 1.0:
        raise ConfigError(f"--dropout must be in [0, 1), got {options.dropout}")
    for name in ("epochs", "batch_size"):
        if getattr(options, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(options, name)}")
    if options.early_stopping < 0:
        raise ConfigError(f"--early-stopping must be >= 0 epochs, got {options.early_stopping}")
    if not options.lr > 0 or not options.l2 >= 0 or not math.isfinite(options.lr + options.l2):
        raise ConfigError(f"--lr must be > 0 and --l2 >= 0 (finite), got lr={options.lr} and l2={options.l2}")
    parse_layers(options.layers)


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


def parse_columns(text: str | None, flag: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (``None`` -> ``[]``); an empty name is refused."""
    if text is None:
        return []
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise ConfigError(f"{flag} takes column names separated by commas such as a,b; got {text!r}")
    return names


def select_columns(table: Mapping[str, np.ndarray], target: str, features: list[str],
                   drop: list[str]) -> dict[str, np.ndarray]:
    """The target and the input columns: ``features`` (default all), less ``drop``."""
    columns = list(table)
    for flag, names in (("--features", features), ("--drop", drop)):
        unknown = [name for name in names if name not in table]
        if unknown:
            raise DataError(f"{flag} names {preview(unknown)}, which the table lacks{did_you_mean(unknown, columns)}; "
                            f"the columns are {preview(columns, 40)}")
        if target in names:
            raise ConfigError(f"{flag} lists the target column {target!r}; it is never an input")
    if target not in table:
        raise DataError(f"no column named {target!r}{did_you_mean([target], columns)}; the columns are "
                        f"{preview(columns, 40)}")
    inputs = [name for name in (features or columns) if name != target and name not in drop]
    if not inputs:
        raise DataError(f"no input column is left after --features/--drop; the columns are {preview(columns, 40)}")
    return {name: table[name] for name in [*inputs, target]}


def build_model(n_features: int, n_outputs: int, task: str, options: argparse.Namespace) -> Sequential:
    """The network for ``options`` (layers, activation, l2, dropout, batch norm, optimizer, lr), compiled."""
    check_parameter_budget(n_features, parse_layers(options.layers), n_outputs)
    init = "he_normal" if options.activation in ("relu", "leaky_relu", "elu", "gelu") else "glorot_uniform"
    stack: list[layers.Layer] = []
    for i, units in enumerate(parse_layers(options.layers)):
        first = {"input_dim": n_features} if i == 0 else {}
        stack.append(layers.Dense(units, None if options.batch_norm else options.activation, l2=options.l2,
                                  kernel_initializer=init, **first))
        if options.batch_norm:
            stack += [layers.BatchNormalization(), layers.activations.get(options.activation)]
        if options.dropout:
            stack.append(layers.Dropout(options.dropout))
    last = {} if stack else {"input_dim": n_features}
    if task == "classification":
        stack.append(layers.Dense(n_outputs, "softmax", l2=options.l2, **last))
        loss, metrics = "categorical_crossentropy", ["accuracy"]
    else:
        stack.append(layers.Dense(1, None, l2=options.l2, **last))
        loss, metrics = "mean_squared_error", ["r2"]
    model = Sequential(stack, seed=options.seed)
    model.compile(loss=loss, optimizer=optimizers.get(options.optimizer, learning_rate=options.lr), metrics=metrics)
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


def finite_outputs(model: Sequential, X: np.ndarray) -> np.ndarray | None:
    """``model.predict(X)``, or ``None`` when any output is NaN or infinite."""
    with np.errstate(all="ignore"):
        outputs = model.predict(X)
    return outputs if np.isfinite(outputs).all() else None


def prediction_targets(outputs: np.ndarray, prep: TablePreprocessor, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` for the report from network ``outputs`` and encoded targets ``y``: class
    indices, or values in the target's units."""
    if prep.classes is not None:
        return y, outputs.argmax(axis=1)
    return y * prep.target_scale + prep.target_center, prep.decode_target(outputs)


# ----------------------------------------------------------------- preparing the data
@dataclass(frozen=True)
class Prepared:
    """A table made ready for training: ``X : (rows, features)`` float32, ``y : (rows,)`` (class indices
    or the standardized target), the training and validation row indices, and the column warnings."""

    prep: TablePreprocessor
    X: np.ndarray
    y: np.ndarray
    train: np.ndarray
    val: np.ndarray
    notes: list[ColumnWarning]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def has_validation(self) -> bool:
        return len(self.val) > 0

    @property
    def train_rows(self) -> int:
        return len(self.train)

    @property
    def val_rows(self) -> int:
        return len(self.val)

    def close(self) -> None:
        """Nothing to release (a streamed table's counterpart deletes its temporary files)."""

    def fit_data(self) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """``(x, y, validation_data)`` for ``model.fit``."""
        validation = (self.X[self.val], self.y[self.val]) if len(self.val) else None
        return self.X[self.train], self.y[self.train], validation

    def outputs(self, model: Sequential) -> dict[str, np.ndarray] | None:
        """The network's outputs on each split; ``None`` when any is NaN or infinite."""
        outputs = {}
        for name, rows in (("train", self.train), ("validation", self.val)):
            if len(rows):
                out = finite_outputs(model, self.X[rows])
                if out is None:
                    return None
                outputs[name] = out
        return outputs

    def report_splits(self, outputs: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{split: (y_true, y_pred)}`` for the report."""
        rows = {"train": self.train, "validation": self.val}
        return {name: prediction_targets(out, self.prep, self.y[rows[name]]) for name, out in outputs.items()}


def prepare(table: Mapping[str, np.ndarray], options: argparse.Namespace) -> Prepared:
    """Select the columns, fit the preprocessing on ``table`` and split its rows, as ``options`` say."""
    selected = select_columns(table, options.target, parse_columns(options.features, "--features"),
                              parse_columns(options.drop, "--drop"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ColumnWarning)
        prep = TablePreprocessor(options.target, task=options.task, scale=options.scale).fit(selected)
    notes = [w.message for w in caught if isinstance(w.message, ColumnWarning)]
    X = prep.transform(selected)
    y = prep.encode_target(selected[options.target])
    train, val = split_indices(y, options.val_split, options.seed, stratify=prep.classes is not None)
    return Prepared(prep, X, y, train, val, notes)


# ----------------------------------------------------------------- watching the training
@dataclass(frozen=True)
class EpochState:
    """The model after one epoch: ``epoch`` (0-based), its figures, copies of its weights and optimizer state."""

    epoch: int
    logs: dict[str, float]
    weights: list[np.ndarray]
    optimizer_state: dict[str, np.ndarray]


@dataclass(frozen=True)
class Snapshot:
    """What training has produced so far; replaced whole after each epoch, never changed in place."""

    history: tuple[dict[str, float], ...] = ()
    best: EpochState | None = None
    last: EpochState | None = None
    diverged_at: int | None = None

    def history_columns(self) -> dict[str, list[float]]:
        """``{name: [value per epoch]}``, NaN where an epoch lacks the value (a diverged epoch has no ``val_``)."""
        names = list(dict.fromkeys(name for logs in self.history for name in logs))
        return {name: [logs.get(name, math.nan) for logs in self.history] for name in names}


class SnapshotCallback(Callback):
    """Keeps the :class:`Snapshot` of the run: every epoch's figures, the last finite epoch and the best
    one (lowest ``monitor``), and the first epoch whose figures or weights were not finite.

    The new snapshot is built aside and stored with one assignment, so a Ctrl-C (which Python raises
    between two bytecodes) finds either the old or the new one, never a mix. Give it first in the
    callback list, before anything that prints the epoch, so that an epoch the user has seen is in it.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.snapshot = Snapshot()

    def on_epoch_end(self, epoch, logs=None):
        old = self.snapshot
        figures = {name: float(value) for name, value in (logs or {}).items()}
        weights = self.model.get_weights()
        finite = (all(math.isfinite(v) for v in figures.values())
                  and all(np.isfinite(w).all() for w in weights))
        history = (*old.history, figures)
        if not finite:
            diverged = epoch if old.diverged_at is None else old.diverged_at
            new = replace(old, history=history, diverged_at=diverged)
        else:
            optimizer_state = {k: np.array(v, copy=True) for k, v in self.model.optimizer.get_state().items()}
            state = EpochState(epoch, figures, weights, optimizer_state)
            value = figures.get(self.monitor, math.nan)
            better = old.best is None or value < old.best.logs.get(self.monitor, math.inf)
            new = Snapshot(history, state if better else old.best, state, old.diverged_at)
        self.snapshot = new


@dataclass
class Fitted:
    """The outcome of :func:`fit_network`.

    ``kept`` is the epoch whose weights ``model`` now holds (``None``: no epoch is usable and the
    model must not be saved); ``reason`` is how training ended: ``"completed"``, ``"early_stopping"``,
    ``"interrupted"`` or ``"diverged"``; ``diverged_at`` the 0-based epoch where it diverged.
    """

    model: Sequential
    prepared: Any  # Prepared, or barenet.cli.streaming.StreamPrepared
    snapshot: Snapshot
    monitor: str
    reason: str
    kept: EpochState | None
    diverged_at: int | None = None
    divergence: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


def _divergence(snapshot: Snapshot, model: Sequential, terminate: TerminateOnNaN) -> tuple[int | None, str]:
    """The 0-based epoch where training diverged (or ``None``) and what was seen there."""
    candidates = [snapshot.diverged_at, getattr(getattr(model, "history", None), "diverged_at", None)]
    stopped = getattr(terminate, "terminated_at", None)
    if stopped is not None:
        candidates.append(stopped[0])
    epochs = [int(e) for e in candidates if e is not None]
    if not epochs:
        return None, ""
    epoch = min(epochs)
    if epoch < len(snapshot.history):
        bad = {k: v for k, v in snapshot.history[epoch].items() if not math.isfinite(v)}
        if bad:
            return epoch, ", ".join(f"{k} {v}" for k, v in bad.items())
        return epoch, "weights not finite"
    return epoch, "loss not finite" if stopped is not None else "loss out of bounds"


def fit_network(prepared: Any, options: argparse.Namespace, *, verbose: bool,
                callbacks: Sequence[Callback] = ()) -> Fitted:
    """Build, compile and train the network for ``options`` on ``prepared`` (a :class:`Prepared` table, or a
    :class:`barenet.cli.streaming.StreamPrepared` one read block by block); the returned model holds
    the weights of the kept epoch (see the module docstring). ``callbacks`` run first, before the
    snapshot; a Ctrl-C during training ends it and is reported as ``reason="interrupted"``."""
    model = build_model(prepared.n_features, prepared.prep.n_outputs, prepared.prep.task, options)
    monitor = "val_loss" if prepared.has_validation else "loss"
    watch = SnapshotCallback(monitor)
    # The run's own TerminateOnNaN, silent: the command words the divergence itself, once.
    terminate = TerminateOnNaN(stream=io.StringIO())
    chain: list[Callback] = [*callbacks, watch, terminate]
    if options.early_stopping:
        chain.append(EarlyStopping(monitor=monitor, patience=options.early_stopping, restore_best_weights=True))
    if verbose:
        chain.append(ProgressBar(verbose=1))  # after the snapshot: an epoch printed is an epoch recorded
    x, y, validation = prepared.fit_data()
    interrupted = False
    try:
        model.fit(x, y, epochs=options.epochs, batch_size=options.batch_size,
                  validation_data=validation, callbacks=chain, verbose=0)
        interrupted = bool(getattr(model, "interrupted", False))
    except KeyboardInterrupt:
        interrupted = True
    snapshot = watch.snapshot
    diverged_at, divergence = _divergence(snapshot, model, terminate)
    if interrupted:
        reason = "interrupted"
    elif diverged_at is not None:
        reason = "diverged"
    elif options.early_stopping:
        reason = "early_stopping" if len(snapshot.history) < options.epochs else "completed"
    else:
        reason = "completed"
    best_rule = options.early_stopping or reason in ("interrupted", "diverged")
    kept = snapshot.best if best_rule else snapshot.last
    if kept is not None and diverged_at is not None and kept.epoch >= diverged_at:
        kept = None  # the training loop judged that epoch diverged although its figures were finite
    fitted = Fitted(model, prepared, snapshot, monitor, reason, kept, diverged_at, divergence)
    if kept is not None:
        model.set_weights(kept.weights)
        model.optimizer.set_state(kept.optimizer_state)
        outputs = prepared.outputs(model)
        if outputs is None:
            fitted.kept = None
        else:
            fitted.outputs = outputs
    return fitted


def figures(logs: Mapping[str, float]) -> str:
    """``"loss 0.1234, val_loss 0.2345"``."""
    return ", ".join(f"{name} {value:.4f}" for name, value in logs.items())


def finite_or_none(values: Sequence[float]) -> list[float | None]:
    """JSON-ready values: NaN and infinities become ``None``."""
    return [float(v) if math.isfinite(v) else None for v in values]


def describe(fitted: Fitted) -> dict[str, Any]:
    """The record of how training ended, for the model's metadata and ``metrics.json`` (epochs 1-based)."""
    kept = fitted.kept
    return {
        "epochs_run": len(fitted.snapshot.history),
        "stopped": fitted.reason,
        "kept_epoch": None if kept is None else kept.epoch + 1,
        "kept_logs": None if kept is None else dict(kept.logs),
        "monitor": fitted.monitor,
        "diverged_at_epoch": None if fitted.diverged_at is None else fitted.diverged_at + 1,
    }
