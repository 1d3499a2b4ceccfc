"""bn.import_onnx on files Keras 3 writes (``model.export(path, format="onnx")`` on the torch backend).

Keras's exports hold float32-to-float32 ``Cast`` nodes on the data path (identities), convolution biases as an
``Add`` after a bias-free ``Conv``, and batch normalization at inference as ``Sub`` (moving mean), ``Mul``
(gamma over the deviation) and ``Add`` (beta) of per-channel constants, which import as BatchNormalization.
Reference: onnxruntime on the file and Keras's own predictions, within 1e-5 of the output's scale. Keras's
recurrent layers export unrolled into per-step MatMuls; those files are refused, naming the node.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ModelFileError

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("torch")
if keras.backend.backend() != "torch":
    pytest.skip("these exports are made with Keras's torch backend", allow_module_level=True)

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


def test_keras_recurrent_exports_are_refused_naming_the_node(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.LSTM(4)(inputs)))
    x = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(ModelFileError, match=r"'\w+' node '[^']+'"):
        bn.import_onnx(_export(model, x, tmp_path / "lstm.onnx"))
