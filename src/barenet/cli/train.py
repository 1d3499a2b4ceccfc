"""``barenet train``: fit a network to a table and save it with its preprocessing and a report.

The network is ``Dense(units) [-> BatchNormalization] -> activation [-> Dropout]`` per hidden
layer, then ``Dense(classes, softmax)`` trained with categorical cross-entropy (classification)
or ``Dense(1)`` trained with mean squared error on the standardized target (regression); it is
built and trained by :mod:`barenet.cli.fitting`, the code path ``barenet tune`` uses too.

Which epoch's weights are saved, and what is said about it:

* all epochs ran: the last epoch's, ``saved model to MODEL``;
* ``--early-stopping N``: the best epoch's (lowest ``val_loss``, or ``loss`` without a validation
  split), with a line naming that epoch and its figures;
* Ctrl-C (SIGINT): training ends after the current step and the best epoch so far is saved, with
  the report of the epochs done; exit status 130 (nothing is written when no epoch had ended);
* training diverged (a NaN or infinite loss, metric or weight): the best epoch before it is saved,
  with a line saying at which epoch training diverged; when no epoch ended with finite values,
  nothing is written and the command exits with status 1 after one ``barenet: error:`` line.

Which epoch was kept, its figures and how training ended are recorded in the model's metadata
(``"fit"``) and in the report's ``metrics.json``; the report's curves mark the kept epoch. The epoch an
announcement names, the saved weights, the metadata and the report all come from one record of the run,
so they agree wherever a Ctrl-C lands.

Every run is watched by a :class:`~barenet.callbacks.GradientMonitor`: the report draws each layer's
gradient norm and update-to-weight ratio per epoch, and a layer whose gradients vanished or exploded is
named in a ``barenet: warning:`` line and in ``metrics.json`` (``"gradient_warnings"``). With
``--tensorboard DIR`` the run is also written as TensorBoard event files (the ``tensorboard`` extra).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from ..gradient_monitor import GradientMonitor
from ..models.callbacks import Callback
from .data import read_table
from .fitting import (
    Fitted,
    check_training_options,
    describe,
    figures,
    finite_or_none,
    fit_network,
    prepare,
)
from .paths import check_output_file, check_report_folder, output_errors
from .report import REPORT_FILES, write_report
from .streaming import open_training, prepare_stream, wants_stream

INTERRUPTED = 130  # the shell's status for a process ended by SIGINT
DIVERGED = 1


class DeferInterrupts(Callback):
    """From the end of training on, a Ctrl-C is noted instead of raised, so the model and report are
    written whole; :meth:`restore` puts the previous handler back."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def on_train_end(self, logs=None):
        self.defer()

    def defer(self) -> None:
        if self._previous is None:
            self._previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame) -> None:
        self.requested = True

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _announce(fitted: Fitted, out: Path) -> str:
    """The line that says which epoch's model was saved, and why that one."""
    kept = fitted.kept
    epoch = f"epoch {kept.epoch + 1} ({figures(kept.logs)})"
    if fitted.reason == "interrupted":
        return f"barenet: training interrupted; saved the model of {epoch} to {out}"
    if fitted.reason == "diverged":
        return (f"barenet: training diverged at epoch {fitted.diverged_at + 1} ({fitted.divergence}); saved the "
                f"model of {epoch}, the best before it, to {out}")
    if fitted.kept is not fitted.snapshot.last or fitted.reason == "early_stopping":
        ran = len(fitted.snapshot.history)
        return (f"early stopping: kept {epoch}, the lowest {fitted.monitor} of the {ran} epochs run; "
                f"saved model to {out}")
    return f"saved model to {out}"


def _failure(fitted: Fitted) -> str:
    """One line for a run that left no usable epoch."""
    if fitted.reason == "interrupted" and fitted.diverged_at is None:
        return "barenet: training interrupted before the first epoch ended; nothing was saved"
    where = (f"at epoch {fitted.diverged_at + 1} ({fitted.divergence})" if fitted.diverged_at is not None
             else "(the kept weights give NaN or infinite outputs)")
    return (f"barenet: error: training diverged {where} before any epoch ended with finite values; nothing "
            "was written. Try a smaller --lr, --optimizer adam or --scale standard")


def run(args: argparse.Namespace) -> int:
    from ..io import check_save_path, save

    check_training_options(args)
    # the data's errors come before the outputs'; a streamed table's header is checked before its first pass
    stream = wants_stream(args.data, args.stream)
    table = open_training(args) if stream else None
    prepared = None if stream else prepare(read_table(args.data), args)
    out = check_output_file(args.out, args.force, "model file")
    check_save_path(out)  # before training: a ".keras" name is refused now, not after the last epoch
    report = check_report_folder(args.report or f"{out}.report", args.force, REPORT_FILES,
                                 default=args.report is None)
    monitor = GradientMonitor(warn=False)
    watchers: list[Callback] = [monitor]
    if args.tensorboard is not None:
        from ..tensorboard import TensorBoard

        board = TensorBoard(args.tensorboard)  # says which extra to install when tensorboardX is missing
        board.check_log_dir()
        watchers.append(board)
    if prepared is None:
        prepared = prepare_stream(table, args)
    for note in prepared.notes:
        print(f"barenet: warning: {note} (--drop {note.column})", file=sys.stderr)
    prep = prepared.prep
    print(f"{prep.task}: {prepared.train_rows} training rows, {prepared.val_rows} validation rows, "
          f"{prepared.n_features} input features" + (f", {len(prep.classes)} classes" if prep.classes else "")
          + (" (read block by block)" if stream else ""), flush=True)

    deferral = DeferInterrupts()
    try:
        fitted = fit_network(prepared, args, verbose=True, callbacks=[deferral, *watchers])
        deferral.defer()
        if fitted.reason == "interrupted" and sys.stdout.isatty():
            print(flush=True)  # end the progress bar's line, which Ctrl-C left open
        if fitted.kept is None:
            print(_failure(fitted), file=sys.stderr)
            return INTERRUPTED if fitted.reason == "interrupted" else DIVERGED
        outcome = describe(fitted)
        history = fitted.snapshot.history_columns()
        model = fitted.model
        model.metadata = {
            "preprocessing": prep.to_json(),
            "history": {name: finite_or_none(values) for name, values in history.items()},
            "training": {key: value for key, value in vars(args).items()
                         if key not in ("func", "command", "force", "out", "report", "tensorboard")},
            "fit": outcome,
        }
        splits: dict[str, Any] = prepared.report_splits(fitted.outputs)
        with output_errors("model file", out):
            save(model, out)
        for warning in monitor.warnings:
            print(f"barenet: warning: {warning}", file=sys.stderr)
        header = {"task": prep.task, "target": prep.target, "data": str(args.data),
                  "interrupted": fitted.reason == "interrupted", **outcome, "gradient_warnings": monitor.warnings}
        write_report(report, history=history, splits=splits,
                     plot_split="validation" if prepared.has_validation else "train",
                     classes=prep.classes, target=prep.target, header=header, kept_epoch=outcome["kept_epoch"],
                     gradients=monitor.records())
        print(_announce(fitted, out), flush=True)
        print(f"report: {report}/")
        if fitted.reason == "interrupted" or deferral.requested:
            return INTERRUPTED
        return 0
    finally:
        deferral.restore()
        prepared.close()
