"""The ``barenet`` command: train, predict, evaluate, summary, tune, export and demo.

Exit status: 0 on success; 2 for bad input (a missing or unreadable file, an unknown column or
option value, unusable data, a file that is not a barenet model, an output that exists without
``--force`` or cannot be written, a package of the ``cli`` extra that is not installed), reported as
one ``barenet: error: ...`` line on stderr; 130 when ``train`` was interrupted with Ctrl-C (the best
model so far is saved); 1 when ``train`` diverged before any epoch ended with finite values (nothing is
written).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import BarenetError
from .values import seed

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"barenet: error: {message} (see '{self.prog} --help')\n")
        sys.exit(USAGE_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from .fitting import add_training_options
    from .streaming import add_stream_option

    parser = _Parser(prog="barenet", description="Neural networks from scratch on NumPy.")
    parser.add_argument("--version", action="version", version=f"barenet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a network on a CSV, Parquet or .npz table and save it")
    train.add_argument("data", help="training table: .csv, .parquet, .npz, or a folder of Parquet or CSV files")
    train.add_argument("--out", required=True, help="model file to write")
    add_training_options(train)
    train.add_argument("--report", help="report folder (default: MODEL.report, replaced on every run)")
    train.add_argument("--tensorboard", metavar="DIR",
                       help="also write the run as TensorBoard event files into DIR (created; its parent must exist), "
                            "to watch with: tensorboard --logdir DIR")
    train.add_argument("--force", action="store_true", help="overwrite the model file and the --report folder")
    add_stream_option(train)

    predict = sub.add_parser("predict", help="predict the target of each row of a table (CSV on stdout)")
    predict.add_argument("model")
    predict.add_argument("data")
    predict.add_argument("--proba", action="store_true", help="add one probability column per class")
    predict.add_argument("--out", help="write the predictions here (.csv or .parquet) instead of stdout")
    predict.add_argument("--force", action="store_true", help="overwrite --out")
    predict.add_argument("--keep", metavar="COL[,COL]",
                         help="copy these input columns into the predictions, before them, row for row")
    add_stream_option(predict)

    evaluate = sub.add_parser("evaluate", help="score a model on a labelled table and write a report")
    evaluate.add_argument("model")
    evaluate.add_argument("data")
    evaluate.add_argument("--target", help="column of true values (default: the column the model was trained on)")
    evaluate.add_argument("--allow-other-target", action="store_true",
                          help="score against --target although the model was trained on another column")
    evaluate.add_argument("--report", help="report folder (default: MODEL.evaluation, replaced on every run)")
    evaluate.add_argument("--force", action="store_true", help="overwrite the --report folder")
    add_stream_option(evaluate)

    summary = sub.add_parser("summary", help="print the layers, output shapes and parameter counts of a model")
    summary.add_argument("model")

    tune = sub.add_parser("tune", help="grid search with cross-validation over the training options")
    tune.add_argument("data")
    tune.add_argument("--grid", required=True, help='e.g. "layers=64|128,64 lr=0.001|0.01"; keys are the '
                      "training options below, each candidate is trained as 'barenet train' trains it")
    tune.add_argument("--cv", type=int, default=3, help="cross-validation folds (default: %(default)s)")
    add_training_options(tune)
    tune.add_argument("--scheduler", help="address of a dask.distributed scheduler to run the folds on")

    from .export import add_parser as add_export

    add_export(sub)

    demo = sub.add_parser("demo", help="train a small network on scikit-learn's digits and report test accuracy")
    demo.add_argument("--epochs", type=int, default=30, help="passes over the training images (default: %(default)s)")
    demo.add_argument("--seed", type=seed, default=0, help="random seed (default: %(default)s)")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    from .extras import require

    require(args.command, scheduler=bool(getattr(args, "scheduler", None)))
    if args.command == "train":
        from .train import run

        return run(args)
    if args.command == "predict":
        from .inference import run_predict

        return run_predict(args)
    if args.command == "evaluate":
        from .inference import run_evaluate

        return run_evaluate(args)
    if args.command == "summary":
        from .inference import run_summary

        return run_summary(args)
    if args.command == "tune":
        from .tune import run

        return run(args)
    if args.command == "export":
        from .export import run

        return run(args)
    from ..demo import run

    run(epochs=args.epochs, seed=args.seed)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except BarenetError as exc:
        print(f"barenet: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:  # the reader of stdout went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("\nbarenet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
