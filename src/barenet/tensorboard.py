"""``TensorBoard``: write a training run as TensorBoard event files, to watch it live with ``tensorboard --logdir``.

The files are written by `tensorboardX <https://github.com/lanpa/tensorboardX>`_, a maintained writer of
TensorBoard's standard event format that needs neither TensorFlow nor PyTorch (``pip install
"barenet[tensorboard]"``). barenet imports without it; making a :class:`TensorBoard` without it raises
``MissingTensorBoardError`` saying what to install.

Layout, as Keras writes it, so that TensorBoard draws training and validation in one chart:

``LOG_DIR/train``
    ``epoch_loss``, ``epoch_<metric>``, ``epoch_learning_rate`` (step: the 0-based epoch);
    ``batch_loss`` and ``batch_learning_rate`` every ``update_freq`` batches (step: batches seen);
    every ``histogram_freq`` epochs, per layer: histograms ``weights/<layer>/<parameter>`` and
    ``gradients/<layer>/<parameter>`` (the epoch's last batch), scalars ``gradient_norm/<layer>`` and
    ``update_ratio/<layer>`` (means over the epoch's steps, see :mod:`barenet.gradient_monitor`);
    the model graph (Graphs tab) and its summary table (Text tab, ``model/summary``).
``LOG_DIR/validation``
    ``epoch_loss``, ``epoch_<metric>`` of the validation data.

The graph is barenet's own layer graph written as a TensorBoard ``GraphDef``: one node per layer call, named
as the layer, its type as the node's operation, with its output shape, parameter count and configuration as
attributes. tensorboardX's ``add_graph`` traces PyTorch modules and is not used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._output import check_folder, output_errors
from .errors import BarenetError, ConfigError, OutputError
from .gradient_monitor import LayerStepStatistics
from .models.callbacks import Callback


class MissingTensorBoardError(BarenetError, ImportError):
    """The optional ``tensorboardX`` package, which writes the event files, is not installed."""


def require_writer() -> Any:
    """tensorboardX's ``SummaryWriter`` class, or ``MissingTensorBoardError`` saying how to install it."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise MissingTensorBoardError('the TensorBoard callback writes its event files with the tensorboardX '
                                      'package; install it with pip install "barenet[tensorboard]"') from None
    return SummaryWriter


class TensorBoard(Callback):
    """Write the loss, metrics, learning rate, per-layer weights and gradients and the model graph as
    TensorBoard event files under ``log_dir`` (layout in :mod:`barenet.tensorboard`).

    Parameters
    ----------
    log_dir : str or path
        The run's folder, created if missing (its parent folder must exist). Give each run its own folder
        (``logs/run1``, ``logs/run2``) and point ``tensorboard --logdir logs`` at their parent to compare them.
    histogram_freq : int
        Every this many epochs (the first included), the histograms of each layer's weights and gradients
        and its gradient norm and update ratio; 0 (default) for none. Watching an epoch costs a pass over
        the parameters and gradients after each of its steps.
    update_freq : "epoch", "batch" or int
        ``"epoch"`` (default): scalars once per epoch; an integer N: also the batch loss and learning rate
        every N batches (``"batch"`` is 1).
    write_graph : bool
        Write the model graph and its summary table at the start of training (default True).

    Raises
    ------
    barenet.tensorboard.MissingTensorBoardError
        tensorboardX is not installed (``pip install "barenet[tensorboard]"``).

    Notes
    -----
    The epoch's learning rate is the ``lr`` the epoch's logs hold (put the TensorBoard callback after a
    :class:`~barenet.callbacks.LearningRateScheduler` or :class:`~barenet.callbacks.ReduceLROnPlateau`, which
    log it), else the rate the optimizer's next step will use. Each ``fit`` counts epochs and batches from 0.
    """

    def __init__(self, log_dir: str | os.PathLike = "logs", histogram_freq: int = 0, update_freq: str | int = "epoch",
                 write_graph: bool = True) -> None:
        self._writer_class = require_writer()
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, (int, np.integer)) or histogram_freq < 0:
            raise ConfigError(f"TensorBoard histogram_freq must be an integer >= 0 (epochs), got {histogram_freq!r}")
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and (isinstance(update_freq, bool) or not isinstance(update_freq, (int, np.integer))
                                       or update_freq < 1):
            raise ConfigError(f"TensorBoard update_freq must be 'epoch', 'batch' or an integer >= 1 (batches), got "
                              f"{update_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = int(histogram_freq)
        self.update_freq = update_freq if update_freq == "epoch" else int(update_freq)
        self.write_graph = bool(write_graph)

    def check_log_dir(self) -> None:
        """Raise :class:`~barenet.errors.OutputError` unless ``log_dir`` is a folder or can be made one (its
        parent folder exists and is writable); run at the start of training, and by the command line before it."""
        check_folder(self.log_dir, "TensorBoard log folder")
        root = Path(self.log_dir)
        with output_errors("TensorBoard log folder", root):
            if root.exists() and not root.is_dir():
                raise OutputError(f"TensorBoard log folder {self.log_dir!r} is a file; give a folder")

    # ----------------------------------------------------------------- the callback's hooks
    def on_train_begin(self, logs=None):
        self.check_log_dir()
        self._writers: dict[str, Any] = {}
        self._step = 0
        self._stats: LayerStepStatistics | None = None
        if self.write_graph:
            train = self._writer("train")
            train.file_writer.add_event(_graph_event(self.model))
            train.add_text("model/summary", _markdown_table(self.model.summary(print_fn=None)), 0)

    def on_epoch_begin(self, epoch, logs=None):
        watched = self.histogram_freq and epoch % self.histogram_freq == 0
        self._stats = LayerStepStatistics(self.model) if watched else None

    def on_batch_end(self, batch, logs=None):
        self._step += 1
        if self._stats is not None:
            self._stats.record()
        if self.update_freq != "epoch" and self._step % self.update_freq == 0:
            train = self._writer("train")
            train.add_scalar("batch_loss", float((logs or {}).get("loss", np.nan)), self._step)
            train.add_scalar("batch_learning_rate", self.model.optimizer.current_learning_rate(), self._step)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        train = self._writer("train")
        lr = logs.pop("lr", None)
        for name, value in logs.items():
            run, tag = ("validation", name[4:]) if name.startswith("val_") else ("train", name)
            self._writer(run).add_scalar(f"epoch_{tag}", float(value), epoch)
        train.add_scalar("epoch_learning_rate",
                         float(lr) if lr is not None else self.model.optimizer.current_learning_rate(), epoch)
        if self._stats is not None:
            self._write_layers(train, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # ----------------------------------------------------------------- helpers
    def _writer(self, run: str) -> Any:
        """The writer of ``LOG_DIR/run``, made on first use."""
        if run not in self._writers:
            folder = Path(self.log_dir) / run
            with output_errors("TensorBoard log folder", folder):
                self._writers[run] = self._writer_class(logdir=str(folder))
        return self._writers[run]

    def _write_layers(self, writer: Any, epoch: int) -> None:
        """Histograms of each layer's weights and last gradients, its mean gradient norm and update ratio."""
        norms, ratios = self._stats.means()
        for name, params, grads in self._stats.layers:
            for pname, value in params.items():
                _histogram(writer, f"weights/{name}/{pname}", value, epoch)
            for pname, grad in grads.items():
                _histogram(writer, f"gradients/{name}/{pname}", grad, epoch)
            writer.add_scalar(f"gradient_norm/{name}", norms[name], epoch)
            writer.add_scalar(f"update_ratio/{name}", ratios[name], epoch)


def _histogram(writer: Any, tag: str, values: np.ndarray, step: int) -> None:
    """A histogram of the finite entries of ``values`` (none when no entry is finite: a diverged run)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = values[np.isfinite(values)]
    if finite.size:
        writer.add_histogram(tag, finite, step)


def _markdown_table(text: str) -> str:
    """The summary table as TensorBoard's Text tab shows it (Markdown): kept as preformatted lines."""
    return "\n".join("    " + line for line in text.splitlines())


def _graph_nodes(model: Any) -> list[tuple[str, str, list[str], dict[str, str]]]:
    """``(name, operation, input names, attributes)`` of each input and layer call of ``model``, in call order."""
    names = dict(zip(map(id, model.layers), model.layer_names(), strict=True))
    nodes: list[tuple[str, str, list[str], dict[str, str]]] = []

    def attributes(layer: Any, shape: Any) -> dict[str, str]:
        count = sum(int(p.size) for p in layer.params.values())
        config = {k: v for k, v in layer.get_config().items() if k not in ("name", "input_shape")}
        return {"output_shape": str(shape), "parameters": str(count), "config": json.dumps(config, default=str)}

    if hasattr(model, "nodes"):  # a functional Model: a graph of calls, a layer possibly called twice
        made: dict[int, str] = {}
        calls: dict[int, int] = {}
        for t in model.inputs:
            made[id(t.node)] = t.name
            nodes.append((t.name, "Input", [], {"output_shape": str(t.shape)}))
        for node in model.nodes:
            k = calls.get(id(node.layer), 0)
            calls[id(node.layer)] = k + 1
            name = names[id(node.layer)] + (f"_call{k + 1}" if k else "")
            made[id(node)] = name
            nodes.append((name, type(node.layer).__name__, [made[id(t.node)] for t in node.inputs],
                          attributes(node.layer, node.output.shape)))
        return nodes
    previous = "input"
    nodes.append((previous, "Input", [], {"output_shape": str((None, *model.input_shape))}))
    for layer in model.layers:
        name = names[id(layer)]
        nodes.append((name, type(layer).__name__, [previous], attributes(layer, (None, *layer.output_shape))))
        previous = name
    return nodes


def _graph_event(model: Any) -> Any:
    """An event holding the model's layer graph as a TensorBoard ``GraphDef``."""
    from tensorboardX.proto.attr_value_pb2 import AttrValue
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.graph_pb2 import GraphDef
    from tensorboardX.proto.node_def_pb2 import NodeDef
    from tensorboardX.proto.versions_pb2 import VersionDef

    graph = GraphDef(node=[NodeDef(name=name, op=op, input=inputs,
                                   attr={k: AttrValue(s=v.encode()) for k, v in attrs.items()})
                           for name, op, inputs, attrs in _graph_nodes(model)],
                     versions=VersionDef(producer=22))
    return Event(graph_def=graph.SerializeToString())
