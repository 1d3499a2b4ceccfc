"""ModelCheckpoint: the callback that saves the model during training.

It lives apart from :mod:`barenet.models.callbacks` because it writes model files: it imports
:mod:`barenet.io`, which imports the models, so keeping it beside the other callbacks would make the
models import the file format back.
"""

from __future__ import annotations

import math
import os

from ._output import check_folder
from .io import check_save_path, save
from .models.callbacks import Callback, _better, _monitored, _resolve_mode


class ModelCheckpoint(Callback):
    """Save the model to ``filepath`` after each epoch (or only when ``monitor`` improves).

    ``filepath`` may contain ``{epoch}`` (counted from 1) and log names, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.3f}.barenet"``. A model whose monitored value (or loss) is NaN or
    infinite is never saved, so a diverging run cannot overwrite a good checkpoint. Saving is atomic
    (see :func:`barenet.save`). The folder of ``filepath`` must exist: a missing one is an
    :class:`~barenet.errors.OutputError` when training begins, not after the first epoch.
    """

    def __init__(self, filepath: str | os.PathLike, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto") -> None:
        self.filepath = os.fspath(filepath)
        check_save_path(self.filepath)  # a ".keras" name is refused now, not after the first epoch
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = _resolve_mode(mode, monitor)

    def on_train_begin(self, logs=None):
        if "{" not in os.path.dirname(self.filepath):  # else the folder is known only when an epoch names it
            check_folder(self.filepath, "checkpoint")
        self.best = math.inf if self.mode == "min" else -math.inf
        self._is_better = _better(self.mode, 0.0)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(v) for v in logs.values()):
            return
        if self.save_best_only:
            current = _monitored(logs, self.monitor, "ModelCheckpoint")
            if not self._is_better(current, self.best):
                return
            self.best = current
        save(self.model, self.filepath.format(epoch=epoch + 1, **logs))
