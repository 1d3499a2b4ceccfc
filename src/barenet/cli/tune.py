"""``barenet tune``: cross-validated grid search over :mod:`barenet.sklearn` estimators.

The grid is one string of ``key=value|value`` words, e.g. ``"layers=64|128,64 lr=0.001|0.01"``.
Keys (and the estimator parameter each sets): ``layers`` (``hidden_layer_sizes``; ``128,64`` is two
layers, ``none`` is no hidden layer), ``lr`` (``learning_rate_init``), ``alpha``/``l2``,
``activation``, ``batch-size``, ``dropout``, ``batch-norm`` (``true``/``false``), ``epochs``
(``max_iter``), ``optimizer`` (``solver``).

Each candidate is a scikit-learn ``Pipeline`` of the column encoding (numeric columns scaled,
text columns one-hot encoded, unknown categories as zeros), fitted inside each fold so no
statistic of a validation fold leaks into training, and the estimator. With ``--scheduler``
the folds run on that dask.distributed scheduler through joblib's ``dask`` backend.
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..preprocessing import TablePreprocessor, numeric_values
from .data import read_table
from .suggest import train_command
from .values import check_parameter_budget


def _sizes(text: str) -> tuple[int, ...]:
    from .train import parse_layers

    return tuple(parse_layers(text))


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise ValueError(text)


#: grid key -> (estimator parameter, parser of one value)
GRID_KEYS: dict[str, tuple[str, Any]] = {
    "layers": ("hidden_layer_sizes", _sizes),
    "lr": ("learning_rate_init", float),
    "alpha": ("alpha", float),
    "l2": ("alpha", float),
    "activation": ("activation", str),
    "batch-size": ("batch_size", int),
    "dropout": ("dropout", float),
    "batch-norm": ("batch_norm", _bool),
    "epochs": ("max_iter", int),
    "optimizer": ("solver", str),
}


def parse_grid(text: str) -> dict[str, list[Any]]:
    """``"layers=64|128,64 lr=0.001|0.01"`` -> ``{"hidden_layer_sizes": [(64,), (128, 64)], ...}``."""
    grid: dict[str, list[Any]] = {}
    for word in text.split():
        key, sep, values = word.partition("=")
        if not sep or not values:
            raise ConfigError(f"--grid word {word!r} is not key=value|value; e.g. \"layers=64|128,64 lr=0.001|0.01\"")
        if key not in GRID_KEYS:
            raise ConfigError(f"--grid key {key!r} is unknown; expected one of {sorted(GRID_KEYS)}")
        param, parse = GRID_KEYS[key]
        try:
            grid[param] = [parse(v) for v in values.split("|")]
        except (ValueError, ConfigError):
            raise ConfigError(f"--grid values {values!r} for {key!r} do not parse; "
                              f"expected values separated by '|' such as {key}=a|b") from None
    if not grid:
        raise ConfigError("--grid is empty; expected words like \"layers=64|128,64 lr=0.001|0.01\"")
    return grid


def _frame_and_target(args: argparse.Namespace):
    """The feature frame (numeric columns float, text columns str), the target and the column kinds."""
    import pandas as pd

    table = read_table(args.data)
    prep = TablePreprocessor(args.target, task=args.task, scale="none").fit(table)
    numeric = [c["name"] for c in prep.columns if c["kind"] == "numeric"]
    categorical = [c["name"] for c in prep.columns if c["kind"] == "categorical"]
    frame = pd.DataFrame({name: numeric_values(name, table[name]) for name in numeric})
    for name in categorical:
        frame[name] = ["" if v is None else str(v) for v in table[name].tolist()]
    frame = frame[[c["name"] for c in prep.columns]]
    if prep.classes is not None:
        y = np.array(prep.classes, dtype=object)[prep.encode_target(table[args.target])]
        y = y.astype(type(prep.classes[0]) if len({type(c) for c in prep.classes}) == 1 else str)
    else:
        y = numeric_values(args.target, table[args.target])
    return frame, y, prep, numeric, categorical


def build_search(prep: TablePreprocessor, numeric: list[str], categorical: list[str], grid: dict[str, list[Any]],
                 args: argparse.Namespace, n_jobs: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

    from ..sklearn import NeuralNetClassifier, NeuralNetRegressor

    scaler = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "none": "passthrough"}[args.scale]
    encode = ColumnTransformer([("numeric", scaler, numeric),
                                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)],
                               sparse_threshold=0.0)
    estimator_class = NeuralNetClassifier if prep.classes is not None else NeuralNetRegressor
    estimator = estimator_class(max_iter=args.epochs, random_state=args.seed)
    pipeline = Pipeline([("encode", encode), ("net", estimator)])
    param_grid = {f"net__{k}": v for k, v in grid.items()}
    return GridSearchCV(pipeline, param_grid, cv=args.cv, n_jobs=n_jobs, error_score="raise")


def format_results(cv_results: dict[str, Any], grid_keys: list[str], score_name: str) -> str:
    """A table of candidates, best first: rank, mean and std of the fold scores, fit time, parameters."""
    order = np.argsort(cv_results["rank_test_score"], kind="stable")
    reverse = {param: key for key, (param, _) in GRID_KEYS.items() if key not in ("l2",)}
    header = ["rank", f"mean {score_name}", "std", "fit s"] + [reverse.get(k, k) for k in grid_keys]
    rows = [header]
    for i in order:
        params = cv_results["params"][i]
        cells = [str(cv_results["rank_test_score"][i]), f"{cv_results['mean_test_score'][i]:.4f}",
                 f"{cv_results['std_test_score'][i]:.4f}", f"{cv_results['mean_fit_time'][i]:.2f}"]
        for key in grid_keys:
            value = params[f"net__{key}"]
            cells.append(",".join(map(str, value)) or "none" if isinstance(value, tuple) else str(value))
        rows.append(cells)
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.cv < 2:
        raise ConfigError(f"--cv must be at least 2 folds, got {args.cv}")
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be a positive integer, got {args.epochs}")
    grid = parse_grid(args.grid)
    frame, y, prep, numeric, categorical = _frame_and_target(args)
    if prep.classes is not None:
        counts = np.unique(y, return_counts=True)[1]
        if counts.min() < args.cv:
            raise DataError(f"the smallest class has {counts.min()} rows, fewer than --cv {args.cv} folds; "
                            "use fewer folds or more data")
    elif len(y) < 2 * args.cv:
        raise DataError(f"{len(y)} rows are too few for --cv {args.cv} folds")
    for sizes in grid.get("hidden_layer_sizes", [(100,)]):  # (100,): the estimators' default
        check_parameter_budget(len(prep.feature_names), list(sizes), prep.n_outputs)
    candidates = len(list(itertools.product(*grid.values())))
    where = f"the dask scheduler at {args.scheduler}" if args.scheduler else "this process"
    print(f"{prep.task}: {candidates} candidates x {args.cv} folds on {len(y)} rows, running in {where}", flush=True)
    from sklearn.exceptions import ConvergenceWarning

    # every candidate trains for exactly --epochs; not converging by then is the expected case
    warnings.simplefilter("ignore", ConvergenceWarning)
    if args.scheduler:
        import joblib
        from dask.distributed import Client

        search = build_search(prep, numeric, categorical, grid, args, n_jobs=-1)
        try:
            client = Client(args.scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"cannot connect to the dask scheduler at {args.scheduler!r}: {exc}") from None
        with client, joblib.parallel_backend("dask"):
            search.fit(frame, y)
    else:
        search = build_search(prep, numeric, categorical, grid, args, n_jobs=1)
        search.fit(frame, y)
    score_name = "accuracy" if prep.classes is not None else "R2"
    print(format_results(search.cv_results_, list(grid), score_name))
    best = {k.removeprefix("net__"): v for k, v in search.best_params_.items()}
    print(f"best: {best} ({score_name} {search.best_score_:.4f})")
    keys = {param: key for key, (param, _) in GRID_KEYS.items() if key not in ("l2",)}
    setting = {keys[param]: best[param] for param in grid}  # in the order of --grid
    print("train it on the whole table with:")
    print("  " + train_command(args.data, args.target, setting, epochs=args.epochs, scale=args.scale,
                               task=args.task, seed=args.seed))
    return 0
