"""``barenet tune``: cross-validated grid search over the options of ``barenet train``.

The grid is one string of ``key=value|value`` words, e.g. ``"layers=64|128,64 lr=0.001|0.01"``.
The keys are the training options of ``barenet train`` without their dashes (``layers``, ``lr``,
``l2`` (or ``alpha``), ``activation``, ``batch-size``, ``dropout``, ``batch-norm`` (``true``/``false``),
``epochs``, ``optimizer``, ``early-stopping``, ``val-split``, ``scale``); the options given on the
command line are the fixed ones, and a grid value overrides its option.

Each candidate is scored by cross-validation: the rows are cut into ``--cv`` folds (scikit-learn's
``StratifiedKFold`` for classification, ``KFold`` for regression, both shuffled with ``--seed``), and
for each fold the candidate is trained on the other folds exactly as ``barenet train`` trains a model
on a table of those rows (:mod:`barenet.cli.fitting`: the same preprocessing fitted on those rows
only, the same validation split, target standardization, batch size and kept epoch), then scored on
the fold: accuracy for classification, R2 in the target's units for regression. With
``--scheduler`` the folds run on that dask.distributed scheduler through joblib's ``dask`` backend.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shlex
import sys
from collections.abc import Collection
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ..errors import ConfigError, DataError
from .data import read_table
from .fitting import (
    ACTIVATIONS,
    OPTIMIZERS,
    TRAINING_OPTIONS,
    add_training_options,
    check_training_options,
    finite_outputs,
    fit_network,
    parse_layers,
    prediction_targets,
    prepare,
)


def _layers(text: str) -> str:
    sizes = parse_layers(text)
    return ",".join(map(str, sizes)) if sizes else "none"


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise ValueError(text)


def _choice(choices: tuple[str, ...]):
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(text)
        return text

    return parse


#: grid key -> (option it sets, parser of one value)
GRID_KEYS: dict[str, tuple[str, Any]] = {
    "layers": ("layers", _layers),
    "lr": ("lr", float),
    "l2": ("l2", float),
    "alpha": ("l2", float),
    "activation": ("activation", _choice(ACTIVATIONS)),
    "batch-size": ("batch_size", int),
    "dropout": ("dropout", float),
    "batch-norm": ("batch_norm", _bool),
    "epochs": ("epochs", int),
    "optimizer": ("optimizer", _choice(OPTIMIZERS)),
    "early-stopping": ("early_stopping", int),
    "val-split": ("val_split", float),
    "scale": ("scale", _choice(("standard", "minmax", "none"))),
}


def parse_grid(text: str) -> dict[str, list[Any]]:
    """``"layers=64|128,64 lr=0.001|0.01"`` -> ``{"layers": ["64", "128,64"], "lr": [0.001, 0.01]}``
    (keyed by grid key, in the order given)."""
    grid: dict[str, list[Any]] = {}
    for word in text.split():
        key, sep, values = word.partition("=")
        if not sep or not values:
            raise ConfigError(f"--grid word {word!r} is not key=value|value; e.g. \"layers=64|128,64 lr=0.001|0.01\"")
        if key not in GRID_KEYS:
            raise ConfigError(f"--grid key {key!r} is unknown; expected one of {sorted(GRID_KEYS)}")
        parse = GRID_KEYS[key][1]
        try:
            grid[key] = [parse(v) for v in values.split("|")]
        except (ValueError, ConfigError):
            raise ConfigError(f"--grid values {values!r} for {key!r} do not parse; "
                              f"expected values separated by '|' such as {key}=a|b") from None
    if not grid:
        raise ConfigError("--grid is empty; expected words like \"layers=64|128,64 lr=0.001|0.01\"")
    return grid


def candidates(grid: dict[str, list[Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The training options of every grid point: ``args``' options with the point's values put in."""
    base = {name: getattr(args, name) for name in TRAINING_OPTIONS}
    points = []
    for values in itertools.product(*grid.values()):
        options = dict(base)
        for key, value in zip(grid, values, strict=True):
            options[GRID_KEYS[key][0]] = value
        check_training_options(argparse.Namespace(**options))
        points.append(options)
    return points


class Candidate(BaseEstimator):
    """One set of training options as a scikit-learn estimator, so ``GridSearchCV`` can run its folds.

    ``fit(X)`` takes a DataFrame of the table's rows (target column included) and trains with
    :func:`~barenet.cli.fitting.prepare` and :func:`~barenet.cli.fitting.fit_network`, as
    ``barenet train`` would on a file of those rows; ``score(X)`` is the accuracy or the R2 (in the
    target's units) of the kept model on other rows, NaN when training left no usable model.
    """

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = options

    @staticmethod
    def _table(frame) -> dict[str, np.ndarray]:
        return {str(name): frame[name].to_numpy() for name in frame.columns}

    def fit(self, X, y=None) -> Candidate:
        options = argparse.Namespace(**self.options)
        fitted = fit_network(prepare(self._table(X), options), options, verbose=False)
        self.prep_ = fitted.prepared.prep
        self.model_ = fitted.model if fitted.kept is not None else None
        return self

    def score(self, X, y=None) -> float:
        if self.model_ is None:
            return math.nan
        table = self._table(X)
        target = self.options["target"]
        outputs = finite_outputs(self.model_, self.prep_.transform(table, dtype=self.model_.dtype))
        if outputs is None:
            return math.nan
        y_true, y_pred = prediction_targets(outputs, self.prep_, self.prep_.encode_target(table[target]))
        if self.prep_.classes is not None:
            return float(np.mean(y_true == y_pred))
        from sklearn.metrics import r2_score

        return float(r2_score(y_true, y_pred))


def format_results(cv_results: dict[str, Any], grid: dict[str, list[Any]], score_name: str) -> str:
    """A table of candidates, best first: rank, mean and std of the fold scores, fit time, grid values."""
    order = np.argsort(cv_results["rank_test_score"], kind="stable")
    keys = list(grid)
    header = ["rank", f"mean {score_name}", "std", "fit s"] + keys
    rows = [header]
    for i in order:
        options = cv_results["params"][i]["options"]
        cells = [str(cv_results["rank_test_score"][i]), f"{cv_results['mean_test_score'][i]:.4f}",
                 f"{cv_results['std_test_score'][i]:.4f}", f"{cv_results['mean_fit_time'][i]:.2f}"]
        cells += [str(options[GRID_KEYS[key][0]]).lower() if isinstance(options[GRID_KEYS[key][0]], bool)
                  else str(options[GRID_KEYS[key][0]]) for key in keys]
        rows.append(cells)
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def as_flags(options: dict[str, Any], grid: dict[str, list[Any]]) -> str:
    """The grid values of one candidate as ``barenet train`` flags: ``--layers 8,4 --lr 0.01``."""
    words = []
    for key in grid:
        value = options[GRID_KEYS[key][0]]
        flag = "l2" if key == "alpha" else key
        if isinstance(value, bool):
            words.append(f"--{flag}" if value else "")
        else:
            words.append(f"--{flag} {value}")
    return " ".join(word for word in words if word)


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold

    if args.cv < 2:
        raise ConfigError(f"--cv must be at least 2 folds, got {args.cv}")
    check_training_options(args)
    grid = parse_grid(args.grid)
    table = read_table(args.data)
    whole = prepare(table, args)  # checks the columns and fixes the task for every fold
    for note in whole.notes:
        print(f"barenet: warning: {note} (--drop {note.column})", file=sys.stderr, flush=True)
    args.task = whole.prep.task
    points = candidates(grid, args)
    y = whole.y
    if whole.prep.classes is not None:
        counts = np.bincount(y)
        if counts.min() < args.cv:
            raise DataError(f"the smallest class has {counts.min()} rows, fewer than --cv {args.cv} folds; "
                            "use fewer folds or more data")
        folds = StratifiedKFold(args.cv, shuffle=True, random_state=args.seed)
    else:
        if len(y) < 2 * args.cv:
            raise DataError(f"{len(y)} rows are too few for --cv {args.cv} folds")
        folds = KFold(args.cv, shuffle=True, random_state=args.seed)
    frame = pd.DataFrame(table)
    where = f"the dask scheduler at {args.scheduler}" if args.scheduler else "this process"
    print(f"{whole.prep.task}: {len(points)} candidates x {args.cv} folds on {len(y)} rows, running in {where}",
          flush=True)
    search = GridSearchCV(Candidate(), {"options": points}, cv=folds, refit=False, error_score="raise",
                          n_jobs=-1 if args.scheduler else 1)
    if args.scheduler:
        import joblib
        from dask.distributed import Client

        try:
            client = Client(args.scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot connect to the dask scheduler at {args.scheduler!r}: {exc}") from None
        with client, joblib.parallel_backend("dask"):
            search.fit(frame, y)
    else:
        search.fit(frame, y)
    score_name = "accuracy" if whole.prep.classes is not None else "R2"
    print(format_results(search.cv_results_, grid, score_name))
    best = search.cv_results_["params"][search.best_index_]["options"]
    print(f"best: {as_flags(best, grid)} ({score_name} {search.best_score_:.4f})")
    print("train it on the whole table with:")
    print("  " + train_command(args.data, best, shown={GRID_KEYS[key][0] for key in grid}))
    return 0


def train_command(data: str, options: dict[str, Any], out: str = "model.barenet", *,
                  shown: Collection[str] = ()) -> str:
    """A shell-quoted ``barenet train`` line that trains the model of ``options`` (every training option of
    one candidate) on the whole table: ``--seed``, the options in ``shown`` (the grid's, which the ``best:``
    line lists; a false ``--batch-norm`` has no flag), and every other option that differs from train's
    defaults."""
    parser = argparse.ArgumentParser()
    add_training_options(parser)
    defaults = vars(parser.parse_args(["--target", str(options["target"])]))
    words = ["barenet", "train", str(data)]
    for name in TRAINING_OPTIONS:
        value, flag = options[name], "--" + name.replace("_", "-")
        if name not in ("target", "seed", *shown) and value == defaults[name]:
            continue
        if isinstance(value, bool):
            words += [flag] if value else []
        else:
            words += [flag, str(value)]
    return shlex.join([*words, "--out", out])
