"""``barenet predict``, ``barenet evaluate`` and ``barenet summary``: using a saved model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, ModelFileError
from ..models import Sequential
from ..preprocessing import TablePreprocessor, did_you_mean, preview
from .data import read_table, write_table
from .fitting import finite_outputs, prediction_targets
from .paths import check_output_file, check_report_folder
from .report import REPORT_FILES, SplitTotals, split_metrics, write_report


def load_model(path: str) -> Sequential:
    """Load a model file; a missing path or anything but a barenet model raises :class:`ModelFileError`."""
    from ..io import load

    if not Path(path).exists():
        raise ModelFileError(f"model file {path!r} does not exist")
    if Path(path).is_dir():
        raise ModelFileError(f"{path!r} is a directory; expected a model file written by 'barenet train'")
    return load(path)


def load_with_preprocessing(path: str) -> tuple[Sequential, TablePreprocessor]:
    """A model written by ``barenet train`` and the preprocessing stored in its metadata."""
    model = load_model(path)
    data = model.metadata.get("preprocessing")
    if data is None:
        raise ModelFileError(f"model file {path!r} holds no table preprocessing in its metadata; predict and "
                             "evaluate need a model written by 'barenet train'")
    try:
        return model, TablePreprocessor.from_json(data)
    except (ConfigError, KeyError, TypeError) as exc:
        raise ModelFileError(f"model file {path!r} has unreadable preprocessing metadata: {exc}") from None


def checked_outputs(model: Sequential, X: np.ndarray, path: str) -> np.ndarray:
    """``model.predict(X)``; a model whose outputs are NaN or infinite raises :class:`ModelFileError`."""
    outputs = finite_outputs(model, X)
    if outputs is None:
        with np.errstate(all="ignore"):
            bad = ~np.isfinite(model.predict(X)).reshape(len(X), -1).all(axis=1)
        raise ModelFileError(f"model file {path!r} gives NaN or infinite outputs for {int(bad.sum())} of {len(X)} "
                             f"rows (first: row {int(np.flatnonzero(bad)[0])}); its weights are unusable (training "
                             "diverged?): train it again, e.g. with a smaller --lr")
    return outputs


def target_column(args: argparse.Namespace, prep: TablePreprocessor, table: dict) -> str:
    """The column ``evaluate`` scores against: the model's target, or ``--target`` when it is allowed."""
    target = prep.target if args.target is None else args.target
    if target != prep.target and not args.allow_other_target:
        raise ConfigError(f"the model was trained to predict column {prep.target!r}, not {target!r}; leave out "
                          "--target to use the model's, or add --allow-other-target to score against "
                          f"{target!r} anyway")
    if target not in table:
        what = "the model's target column" if target == prep.target else "a column"
        raise DataError(f"no column named {target!r} ({what}){did_you_mean([target], list(table))}; the columns "
                        f"are {preview(list(table), 40)}"
                        + ("; pass --target COLUMN --allow-other-target to score against another column"
                           if target == prep.target else ""))
    return target


def keep_columns(args: argparse.Namespace, prep: TablePreprocessor, columns: list[str]) -> list[str]:
    """The ``--keep`` columns, checked against the table's ``columns`` and the output's own column names."""
    from .fitting import parse_columns

    keep = parse_columns(args.keep, "--keep")
    unknown = [name for name in keep if name not in columns]
    if unknown:
        raise DataError(f"--keep names {preview(unknown)}, which the table lacks{did_you_mean(unknown, columns)}; "
                        f"the columns are {preview(columns, 40)}")
    outputs = [prep.target, *(f"proba_{label}" for label in (prep.classes or []) if args.proba)]
    clash = [name for name in keep if name in outputs]
    if clash:
        raise ConfigError(f"--keep names {preview(clash)}, which is a column the predictions file writes; to "
                          "compare predictions with true values use 'barenet evaluate'")
    if len(set(keep)) != len(keep):
        raise ConfigError(f"--keep names a column twice: {args.keep!r}")
    return keep


def run_predict(args: argparse.Namespace) -> int:
    from .streaming import open_table, predict_blocks, wants_stream, write_stream

    model, prep = load_with_preprocessing(args.model)
    if args.proba and prep.classes is None:
        raise ConfigError("--proba needs a classification model; this model does regression")
    if wants_stream(args.data, args.stream):
        header = list(open_table(args.data).columns)
        keep = keep_columns(args, prep, header)
        needed = [c["name"] for c in prep.columns if c["name"] in header]
        table = open_table(args.data, columns=list(dict.fromkeys([*keep, *needed])))
        out = check_output_file(args.out, args.force, "output file", devices_ok=True) if args.out else None
        write_stream(predict_blocks(model, prep, table, args.model, keep, args.proba), out)
        return 0
    table = read_table(args.data)
    keep = keep_columns(args, prep, list(table))
    outputs = checked_outputs(model, prep.transform(table, dtype=model.dtype), args.model)
    out = check_output_file(args.out, args.force, "output file", devices_ok=True) if args.out else None
    columns: dict[str, np.ndarray] = {name: table[name] for name in keep}
    columns[prep.target] = prep.decode_target(outputs)
    if args.proba:
        for j, label in enumerate(prep.classes):
            columns[f"proba_{label}"] = outputs[:, j]
    write_table(columns, out)
    return 0


def _kept_epoch(metadata: dict[str, Any]) -> int | None:
    """The kept epoch (from 1) that ``train`` recorded in the model's metadata, or ``None`` where the file has
    none that reads as one (the ``"fit"`` record is not part of the checked metadata schema)."""
    fit = metadata.get("fit")
    kept = fit.get("kept_epoch") if isinstance(fit, dict) else None
    return kept if isinstance(kept, int) and not isinstance(kept, bool) and kept >= 1 else None


def run_evaluate(args: argparse.Namespace) -> int:
    from .streaming import evaluate_totals, open_table, wants_stream

    model, prep = load_with_preprocessing(args.model)
    if wants_stream(args.data, args.stream):
        header = list(open_table(args.data).columns)
        target = target_column(args, prep, dict.fromkeys(header))
        needed = [c["name"] for c in prep.columns if c["name"] in header]
        table = open_table(args.data, columns=list(dict.fromkeys([*needed, target])))
        report = check_report_folder(args.report or f"{args.model}.evaluation", args.force, REPORT_FILES,
                                     default=args.report is None)
        split: tuple | SplitTotals = evaluate_totals(model, prep, table, target, args.model)
    else:
        table = read_table(args.data)
        target = target_column(args, prep, table)
        X = prep.transform(table, dtype=model.dtype)
        y = prep.encode_target(table[target], column=target)
        split = prediction_targets(checked_outputs(model, X, args.model), prep, y)
        report = check_report_folder(args.report or f"{args.model}.evaluation", args.force, REPORT_FILES,
                                     default=args.report is None)
    header = {"task": prep.task, "target": target, "data": str(args.data)}
    write_report(report, history=model.metadata.get("history"), splits={"evaluation": split},
                 plot_split="evaluation", classes=prep.classes, target=target, header=header,
                 kept_epoch=_kept_epoch(model.metadata))
    m = split_metrics(split, prep.classes)
    if prep.classes is not None:
        print(f"{m['samples']} samples: accuracy {m['accuracy']:.4f}, macro precision {m['precision_macro']:.4f}, "
              f"recall {m['recall_macro']:.4f}, F1 {m['f1_macro']:.4f}")
    else:
        print(f"{m['samples']} samples: MSE {m['mse']:.6g}, MAE {m['mae']:.6g}, R2 {m['r2']:.4f}")
    print(f"report: {report}/")
    return 0


def run_summary(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    model.summary()
    prep = model.metadata.get("preprocessing")
    if prep:
        kind = f"{len(prep['classes'])} classes" if prep.get("classes") else "regression"
        print(f"Target: {prep['target']} ({kind}); feature columns: {', '.join(c['name'] for c in prep['columns'])}")
    return 0
