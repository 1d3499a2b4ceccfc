"""bn.import_onnx on files Keras 3 writes (``model.export(path, format="onnx")`` on the torch backend).

Keras's exports hold float32-to-float32 ``Cast`` nodes on the data path (identities), convolution biases as an
``Add`` after a bias-free ``Conv``, and batch normalization at inference as ``Sub`` (moving mean), ``Mul``
(gamma over the deviation) and ``Add`` (beta) of per-channel constants, which import as BatchNormalization.
Reference: onnxruntime on the file and Keras's own predictions, within 1e-5 of the output's scale. Keras's
LSTM and GRU export unrolled into per-step MatMuls (a Bidirectional as two of them, one on the reversed
sequence); each imports as one barenet layer holding Keras's weights exactly, and one that computes something
barenet's layer does not is refused, saying what differs.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barenet as bn
from barenet.errors import ModelFileError

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
if keras.backend.backend() != "torch":
    pytest.skip("these exports are made with Keras's torch backend", allow_module_level=True)
import onnx_mutations as om  # noqa: E402

TOLERANCE = 1e-5


def _randomize_batchnorm(model) -> None:
    """Statistics, scale and shift away from their initial values, so that each of Sub, Mul, Add matters."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                               rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 1.5, var.shape)])


def _export(model, x, path):
    model.predict(x, verbose=0)  # Keras exports only a model that has been called
    model.export(str(path), format="onnx", verbose=False)
    return path


def _mlp():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5,))
    h = keras.layers.Dense(16, activation="relu")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Dropout(0.2)(h)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(h))
    _randomize_batchnorm(model)
    return model, np.random.default_rng(2).standard_normal((9, 5)).astype(np.float32)


def _cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Flatten()(keras.layers.MaxPooling2D()(h))
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    _randomize_batchnorm(model)
    return model, np.random.default_rng(2).random((9, 8, 8, 3), dtype=np.float32)


@pytest.mark.parametrize(("make", "layers"), [
    (_mlp, ["Dense", "BatchNormalization", "Dense"]),
    (_cnn, ["Conv2D", "BatchNormalization", "MaxPooling2D", "Flatten", "Dense"]),
], ids=["mlp", "cnn"])
def test_keras_exports_predict_what_onnxruntime_and_keras_predict(tmp_path, make, layers):
    model, x = make()
    path = _export(model, x, tmp_path / "keras.onnx")
    imported = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in imported.layers] == layers
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    got = imported.predict(x)
    scale = max(1.0, float(np.abs(want).max()))
    print(f"\n{make.__name__}: largest difference from onnxruntime {np.abs(got - want).max():.1e}")
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE * scale)
    np.testing.assert_allclose(got, np.asarray(model.predict(x, verbose=0)), rtol=0, atol=TOLERANCE * scale)


def test_the_imported_batch_normalization_keeps_keras_moving_mean_and_shift_and_fine_tunes(tmp_path):
    model, x = _mlp()
    imported = bn.import_onnx(_export(model, x, tmp_path / "mlp.onnx"))
    gamma, beta, mean, var = model.layers[2].get_weights()
    layer = imported.layers[1]
    np.testing.assert_allclose(layer.buffers["moving_mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(layer.params["beta"], beta, rtol=1e-6)
    np.testing.assert_allclose(layer.params["gamma"] / np.sqrt(layer.buffers["moving_variance"] + layer.epsilon),
                               gamma / np.sqrt(var + model.layers[2].epsilon), rtol=1e-5)
    X = np.random.default_rng(3).standard_normal((64, 5)).astype(np.float32)
    y = np.random.default_rng(4).integers(0, 3, len(X))
    imported.compile(loss="categorical_crossentropy", optimizer=bn.optimizers.Adam(0.01))
    losses = imported.fit(X, y, epochs=5, batch_size=16, verbose=0).history["loss"]
    assert losses[-1] < losses[0]


def _randomize(model) -> None:
    """Every weight of the recurrent layers drawn afresh, biases included (Keras starts them at zeros and ones)."""
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, (keras.layers.LSTM, keras.layers.GRU, keras.layers.Bidirectional)):
            layer.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in layer.get_weights()])


def _recurrent(make_layers):
    """``Input((5, 3))`` -> the layers -> ``Dense(2)``, weights randomized, and a batch of sequences."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 3))
    h = inputs
    for layer in make_layers():
        h = layer(h)
    model = keras.Model(inputs, keras.layers.Dense(2)(h))
    _randomize(model)
    return model, np.random.default_rng(2).standard_normal((7, 5, 3)).astype(np.float32)


K = keras.layers
RECURRENT = {
    "lstm": (lambda: [K.LSTM(4)], ["LSTM", "Dense"]),
    "lstm_sequences": (lambda: [K.LSTM(4, return_sequences=True)], ["LSTM", "Dense"]),
    "gru": (lambda: [K.GRU(4)], ["GRU", "Dense"]),
    "gru_sequences": (lambda: [K.GRU(4, return_sequences=True)], ["GRU", "Dense"]),
    "bidirectional_lstm": (lambda: [K.Bidirectional(K.LSTM(4, return_sequences=True))], ["Bidirectional", "Dense"]),
    "bidirectional_gru_ave": (lambda: [K.Bidirectional(K.GRU(4), merge_mode="ave")], ["Bidirectional", "Dense"]),
    # no Softmax is evaluated while the steps are recognized: these two are checked on random sequences
    "softmax_gru_lstm": (lambda: [K.Dense(6, activation="softmax"), K.GRU(4, return_sequences=True), K.LSTM(3)],
                         ["Dense", "GRU", "LSTM", "Dense"]),
}


@pytest.mark.parametrize("name", list(RECURRENT))
def test_keras_recurrent_exports_import_as_barenet_layers_and_predict_alike(tmp_path, name):
    """Keras writes LSTM and GRU unrolled, step by step; they import as one barenet layer each."""
    make_layers, layers = RECURRENT[name]
    model, x = _recurrent(make_layers)
    path = _export(model, x, tmp_path / f"{name}.onnx")
    imported = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in imported.layers] == layers
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: x})[0]
    got = imported.predict(x)
    theirs = np.asarray(model.predict(x, verbose=0))
    scale = max(1.0, float(np.abs(want).max()))
    print(f"\n{name}: largest difference from onnxruntime {np.abs(got - want).max():.1e}, "
          f"from Keras {np.abs(got - theirs).max():.1e}")
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE * scale)
    np.testing.assert_allclose(got, theirs, rtol=0, atol=TOLERANCE * scale)


def _weights(layer) -> dict[str, np.ndarray]:
    """A Keras recurrent layer's weights under barenet's names (a Bidirectional's prefixed by direction)."""
    if isinstance(layer, keras.layers.Bidirectional):
        return {f"{side}_{k}": v for side, sub in (("forward", layer.forward_layer), ("backward", layer.backward_layer))
                for k, v in _weights(sub).items()}
    return dict(zip(["kernel", "recurrent_kernel", "bias"], layer.get_weights(), strict=True))


@pytest.mark.parametrize("name", ["lstm", "gru_sequences", "bidirectional_lstm"])
def test_imported_recurrent_layers_hold_keras_weights_and_take_the_same_training_step(tmp_path, name):
    """Imported in float64, each array equals Keras's; one SGD step on mean squared error then moves both
    models' weights alike."""
    model, x = _recurrent(RECURRENT[name][0])
    imported = bn.import_onnx(_export(model, x, tmp_path / f"{name}.onnx"), dtype="float64")
    pairs = list(zip(model.layers[1:], imported.layers, strict=True))
    for theirs, ours in pairs[:-1]:
        for key, value in _weights(theirs).items():
            np.testing.assert_array_equal(ours.params[key], value.astype(np.float64), err_msg=key)
    before = {(id(ours), key): value.copy() for _, ours in pairs for key, value in ours.params.items()}
    y = np.random.default_rng(4).standard_normal(imported.predict(x).shape)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.train_on_batch(x, y.astype(np.float32))
    imported.compile(loss="mse", optimizer=bn.optimizers.SGD(0.5))
    imported.fit(x.astype(np.float64), y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
    moved, apart = 0.0, 0.0
    for theirs, ours in pairs:
        after = _weights(theirs) if theirs is not model.layers[-1] else dict(
            zip(["kernel", "bias"], theirs.get_weights(), strict=True))
        for key, value in after.items():
            np.testing.assert_allclose(ours.params[key], value, rtol=0, atol=1e-6, err_msg=key)
            apart = max(apart, float(np.abs(ours.params[key] - value).max()))
            moved = max(moved, float(np.abs(ours.params[key] - before[id(ours), key]).max()))
    print(f"\n{name}: the step moved weights by up to {moved:.1e}; barenet's and Keras's differ by {apart:.1e}")
    assert moved > 1e-2


class _WithCellState(keras.layers.Layer):
    """An LSTM whose output is joined with its last cell state (``return_state=True``)."""

    def __init__(self):
        super().__init__()
        self.lstm = K.LSTM(4, return_state=True)

    def call(self, x):
        out, _, cell = self.lstm(x)
        return keras.ops.concatenate([out, cell], axis=-1)


@pytest.mark.parametrize(("layer", "message"), [
    (lambda: K.LSTM(4, activation="relu"), r"LSTM .* computes Relu in its steps; barenet's LSTM computes its gates "
                                           r"with sigmoid and its candidate with tanh"),
    (lambda: K.GRU(4, go_backwards=True), r"GRU .* reads the sequence backwards \(go_backwards=True\) on its own"),
    (_WithCellState, r"LSTM .* computes barenet's LSTM \(its last output is '[^']+'\), but operators outside it "
                     r"also read its steps or its states"),
], ids=["relu_lstm", "backwards_gru", "lstm_cell_state"])
def test_keras_recurrent_exports_barenet_does_not_compute_are_refused_saying_why(tmp_path, layer, message):
    model, x = _recurrent(lambda: [layer()])
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(_export(model, x, tmp_path / "refused.onnx"))


@pytest.fixture(scope="module")
def recurrent_seeds(tmp_path_factory):
    """Keras exports of an LSTM returning sequences and of a Bidirectional GRU, as the bytes to mutate."""
    folder = tmp_path_factory.mktemp("keras_recurrent")
    seeds = []
    for name in ("lstm_sequences", "bidirectional_gru_ave"):
        model, x = _recurrent(RECURRENT[name][0])
        path = _export(model, x, folder / f"{name}.onnx")
        imported = bn.import_onnx(path)  # compiles the kernels imports and predictions use, before the timed cases
        imported.predict(x)
        seeds.append(om.Case(path.read_bytes()))
    return seeds


@settings(max_examples=60, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_keras_recurrent_exports_end_in_barenet_errors(recurrent_seeds, tmp_path, data):
    """Recognizing the unrolled steps reads untrusted graphs: a mutated file imports or raises a barenet error,
    in bounded time and memory."""
    choices = om.Choices(lambda n: data.draw(st.integers(0, max(n - 1, 0))),
                         lambda n: data.draw(st.binary(min_size=n, max_size=n)))
    case, _ = om.mutate_case(recurrent_seeds[choices.pick(len(recurrent_seeds))], choices)
    om.check_import(om.write_case(tmp_path / "case", case))
