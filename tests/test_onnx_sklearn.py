"""skl2onnx converts pipelines with barenet's estimators; onnxruntime agrees with predict/predict_proba."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import barenet.onnx.sklearn  # noqa: E402, F401  (registers the converters)
from barenet.onnx import OnnxExportError  # noqa: E402
from barenet.sklearn import NeuralNetClassifier, NeuralNetRegressor  # noqa: E402


def fitted(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_pipeline(StandardScaler(), estimator).fit(X, y)


def run(onx, X):
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X}), [o.name for o in session.get_outputs()]


@pytest.mark.parametrize("net_dtype", ["float32", "float64"])
@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("loader", [load_breast_cancer, load_digits], ids=["breast_cancer", "digits"])
def test_classifier_pipeline_matches_predict_and_proba(loader, x_dtype, net_dtype):
    X, y = loader(return_X_y=True)
    X = X.astype(x_dtype)
    pipe = fitted(NeuralNetClassifier(hidden_layer_sizes=(12,), max_iter=4, random_state=0, dtype=net_dtype), X, y)
    onx = skl2onnx.to_onnx(pipe, X[:1], options={NeuralNetClassifier: {"zipmap": False}})
    (label, proba), names = run(onx, X)
    assert names == ["label", "probabilities"]
    np.testing.assert_array_equal(label, pipe.predict(X))
    want = pipe.predict_proba(X)
    assert proba.dtype == want.dtype == x_dtype
    exact = net_dtype == "float64" and x_dtype == np.float64  # else float32 rounding bounds the agreement
    assert np.max(np.abs(proba - want)) <= (1e-10 if exact else 1e-5)


def signature(onx):
    return [(v.name, v.type) for v in (*onx.graph.input, *onx.graph.output)]


@pytest.mark.parametrize("zipmap", [True, False, "columns"])
def test_outputs_are_those_of_mlp_classifier(zipmap):
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    ours = fitted(NeuralNetClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0), X[:300], y[:300])
    theirs = fitted(MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0), X[:300], y[:300])
    ours, theirs = (skl2onnx.to_onnx(p, X[:1], options={type(p[-1]): {"zipmap": zipmap}}) for p in (ours, theirs))
    assert signature(ours) == signature(theirs)


def test_zipmap_and_nocl_with_string_labels():
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    names = np.array(["benign", "malignant"])[1 - y]  # string labels
    pipe = fitted(NeuralNetClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0), X, names)
    (label, maps), outputs = run(skl2onnx.to_onnx(pipe, X[:1]), X)
    assert outputs == ["output_label", "output_probability"]
    assert label.tolist() == pipe.predict(X).tolist()
    proba = pipe.predict_proba(X)
    assert [sorted(m) for m in maps[:2]] == [["benign", "malignant"]] * 2
    assert np.allclose([[m["benign"], m["malignant"]] for m in maps], proba, atol=1e-6)
    onx = skl2onnx.to_onnx(pipe, X[:1], options={NeuralNetClassifier: {"zipmap": "columns"}})
    got, outputs = run(onx, X)
    assert outputs == ["output_label", "sbenign", "smalignant"]  # skl2onnx's column names for string classes
    np.testing.assert_allclose(np.column_stack(got[1:]), proba, atol=1e-6)
    onx = skl2onnx.to_onnx(pipe, X[:1], options={NeuralNetClassifier: {"nocl": True, "zipmap": False}})
    (label, _), _ = run(onx, X)
    assert label.tolist() == [pipe[-1].classes_.tolist().index(c) for c in pipe.predict(X)]


@pytest.mark.parametrize("targets", [1, 2])
def test_regressor_pipeline_matches_predict(targets):
    X, y = load_diabetes(return_X_y=True)
    Y = y if targets == 1 else np.column_stack([y, -2 * y])
    pipe = fitted(NeuralNetRegressor(hidden_layer_sizes=(10,), max_iter=5, random_state=0, dtype="float64"), X, Y)
    (pred,), _ = run(skl2onnx.to_onnx(pipe, X[:1]), X)
    want = pipe.predict(X).reshape(len(X), -1)
    assert pred.dtype == np.float64 and pred.shape == want.shape
    assert np.max(np.abs(pred - want)) <= 1e-10 * max(1.0, np.abs(want).max())


def test_target_opset_from_13_and_below_refused():
    """skl2onnx's target_opset reaches the network's graph: opset 13 writes the GELU and BatchNormalization
    forms of that opset; 12 is refused naming the estimator."""
    X, y = load_breast_cancer(return_X_y=True)
    X = X.astype(np.float32)
    pipe = fitted(NeuralNetClassifier(hidden_layer_sizes=(6,), activation="gelu", batch_norm=True, max_iter=2,
                                      random_state=0), X, y)
    onx = skl2onnx.to_onnx(pipe, X[:1], target_opset=13, options={NeuralNetClassifier: {"zipmap": False}})
    assert [o.version for o in onx.opset_import if not o.domain] == [13]
    (label, proba), _ = run(onx, X)
    np.testing.assert_array_equal(label, pipe.predict(X))
    assert np.max(np.abs(proba - pipe.predict_proba(X))) <= 1e-5
    with pytest.raises(OnnxExportError, match="NeuralNetClassifier needs target_opset >= 13, got 12"):
        skl2onnx.to_onnx(pipe, X[:1], target_opset=12, options={NeuralNetClassifier: {"zipmap": False}})


def test_multilabel_classifier_is_refused():
    X, y = load_digits(return_X_y=True)
    Y = np.column_stack([y % 2, y > 4])
    pipe = fitted(NeuralNetClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0), X[:200], Y[:200])
    with pytest.raises(OnnxExportError, match="multi-label"):
        skl2onnx.to_onnx(pipe, X[:1].astype(np.float32), options={NeuralNetClassifier: {"zipmap": False}})
