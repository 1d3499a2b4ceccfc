"""The TensorBoard callback: event files read back with TensorBoard's own reader and checked against History.

Scalars are stored as float32 (TensorBoard's ``simple_value``), so each is compared with ``np.float32`` of the
value barenet computed: exactly, not within a tolerance.
"""

import subprocess
import sys

import numpy as np
import pytest

import barenet as bn
from barenet.callbacks import Callback, GradientMonitor, LearningRateScheduler, TensorBoard
from barenet.errors import ConfigError, OutputError
from barenet.tensorboard import MissingTensorBoardError

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_run(folder):
    """TensorBoard's own reader over one run folder, everything kept."""
    accumulator = event_accumulator.EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def scalars(run, tag):
    return [(event.step, event.value) for event in run.Scalars(tag)]


def as_float32(values):
    return [float(np.float32(v)) for v in values]


def _data(seed=0, n=60):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    return X, (X[:, 0] + X[:, 3] > 0).astype(int)


def _model(seed=0):
    model = bn.Sequential([bn.layers.Dense(5, "relu", input_dim=4, name="hidden"), bn.layers.Dense(2, "softmax")],
                          seed=seed, dtype="float64")
    model.compile("categorical_crossentropy", bn.optimizers.SGD(0.1), metrics=["accuracy"])
    return model


class Recorder(Callback):
    """Keeps every batch loss and learning rate, and each epoch's weights and last-batch gradients."""

    def __init__(self):
        self.batch_losses, self.batch_lrs, self.weights, self.grads = [], [], [], []

    def on_batch_end(self, batch, logs=None):
        self.batch_losses.append(logs["loss"])
        self.batch_lrs.append(self.model.optimizer.current_learning_rate())

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.named_weights())
        self.grads.append({k: g.copy() for k, g in self.model.gradients().items()})


def test_epoch_and_batch_scalars_match_history(tmp_path):
    X, y = _data()
    recorder = Recorder()
    schedule = LearningRateScheduler(lambda epoch, lr: 0.2 / (epoch + 1))
    board = TensorBoard(tmp_path / "run", update_freq=2)
    history = _model().fit(X, y, epochs=3, batch_size=8, validation_split=0.2, verbose=0,
                           callbacks=[recorder, schedule, board])
    train, validation = read_run(tmp_path / "run" / "train"), read_run(tmp_path / "run" / "validation")
    for name in ("loss", "accuracy"):
        assert scalars(train, f"epoch_{name}") == list(zip(history.epoch, as_float32(history.history[name]),
                                                           strict=True))
        assert scalars(validation, f"epoch_{name}") == list(zip(history.epoch,
                                                                as_float32(history.history[f"val_{name}"]),
                                                                strict=True))
    assert scalars(train, "epoch_learning_rate") == list(zip(history.epoch, as_float32(history.history["lr"]),
                                                             strict=True))
    steps = len(recorder.batch_losses)
    assert steps == 3 * 6
    assert scalars(train, "batch_loss") == [(k, v) for k, v in zip(range(1, steps + 1),
                                                                    as_float32(recorder.batch_losses), strict=True)
                                            if k % 2 == 0]
    assert scalars(train, "batch_learning_rate") == [(k, v) for k, v in zip(range(1, steps + 1),
                                                                            as_float32(recorder.batch_lrs),
                                                                            strict=True) if k % 2 == 0]
    assert "histograms" not in {tag for tag, values in train.Tags().items() if values}  # histogram_freq=0


def test_layer_histograms_gradient_norms_and_update_ratios(tmp_path):
    X, y = _data()
    recorder, monitor = Recorder(), GradientMonitor()
    _model().fit(X, y, epochs=3, batch_size=20, verbose=0,
                 callbacks=[recorder, monitor, TensorBoard(tmp_path, histogram_freq=2)])
    train = read_run(tmp_path / "train")
    layers = {"hidden": 0, "dense_1": 1}
    assert sorted(train.Tags()["histograms"]) == sorted(
        f"{kind}/{layer}/{p}" for kind in ("weights", "gradients") for layer in layers for p in ("kernel", "bias"))
    for layer, i in layers.items():
        for p in ("kernel", "bias"):
            for kind, arrays in (("weights", recorder.weights), ("gradients", recorder.grads)):
                events = train.Histograms(f"{kind}/{layer}/{p}")
                assert [e.step for e in events] == [0, 2]  # every second epoch, the first included
                for event in events:
                    values = arrays[event.step][f"layers.{i}.{p}"]
                    h = event.histogram_value
                    assert (h.num, h.min, h.max) == (values.size, values.min(), values.max())
                    assert h.sum == pytest.approx(values.sum(), abs=1e-12)
        for key in ("gradient_norm", "update_ratio"):
            expected = getattr(monitor, key)[layer]
            assert scalars(train, f"{key}/{layer}") == [(0, float(np.float32(expected[0]))),
                                                        (2, float(np.float32(expected[2])))]


def test_the_graph_and_summary_of_a_sequential_and_a_functional_model(tmp_path):
    X, y = _data()
    _model().fit(X, y, epochs=1, verbose=0, callbacks=[TensorBoard(tmp_path / "seq")])
    run = read_run(tmp_path / "seq" / "train")
    nodes = [(n.name, n.op, list(n.input)) for n in run.Graph().node]
    assert nodes == [("input", "Input", []), ("hidden", "Dense", ["input"]), ("dense_1", "Dense", ["hidden"])]
    hidden = run.Graph().node[1]
    assert hidden.attr["parameters"].s == b"25" and hidden.attr["output_shape"].s == b"(None, 5)"
    (summary,) = run.Tensors("model/summary/text_summary")
    assert "    hidden (Dense(5, activation='relu'))" in summary.tensor_proto.string_val[0].decode()

    inputs = bn.Input((4,), name="features")
    shared = bn.layers.Dense(3, "tanh", name="shared")
    left, right = shared(inputs), bn.layers.Dense(4, name="side")(inputs)
    outputs = bn.layers.Dense(2, "softmax", name="out")(bn.layers.Add(name="join")([left, shared(right)]))
    model = bn.Model(inputs, outputs, seed=0)
    model.compile("categorical_crossentropy", "sgd")
    model.fit(X, y, epochs=1, verbose=0, callbacks=[TensorBoard(tmp_path / "graph")])
    graph = read_run(tmp_path / "graph" / "train").Graph()
    edges = {n.name: (n.op, sorted(n.input)) for n in graph.node}
    assert edges == {"features": ("Input", []), "shared": ("Dense", ["features"]), "side": ("Dense", ["features"]),
                     "shared_call2": ("Dense", ["side"]), "join": ("Add", ["shared", "shared_call2"]),
                     "out": ("Dense", ["join"])}


def test_arguments_and_log_folder_are_checked(tmp_path):
    for kwargs, fragment in (({"histogram_freq": -1}, "histogram_freq must be an integer >= 0"),
                             ({"histogram_freq": 1.5}, "histogram_freq must be an integer >= 0"),
                             ({"update_freq": 0}, "update_freq must be 'epoch', 'batch' or an integer >= 1"),
                             ({"update_freq": "step"}, "update_freq must be 'epoch', 'batch' or an integer >= 1")):
        with pytest.raises(ConfigError, match=fragment):
            TensorBoard(tmp_path, **kwargs)
    assert TensorBoard(tmp_path, update_freq="batch").update_freq == 1
    X, y = _data()
    with pytest.raises(OutputError, match="does not exist"):
        _model().fit(X, y, epochs=1, verbose=0, callbacks=[TensorBoard(tmp_path / "missing" / "run")])
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        _model().fit(X, y, epochs=1, verbose=0, callbacks=[TensorBoard(tmp_path / "file")])


def test_without_tensorboardx_barenet_imports_and_the_callback_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # `import tensorboardX` now raises ImportError
    with pytest.raises(MissingTensorBoardError, match=r'pip install "barenet\[tensorboard\]"'):
        TensorBoard("logs")
    code = ("import sys; sys.modules['tensorboardX'] = None\n"
            "import barenet, barenet.callbacks\n"
            "try:\n    barenet.callbacks.TensorBoard('logs')\n"
            "except ImportError as exc:\n    print(type(exc).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "MissingTensorBoardError"
