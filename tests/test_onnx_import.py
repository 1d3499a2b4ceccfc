"""bn.import_onnx: graphs exported by PyTorch (both exporters) predict what PyTorch predicts, save, load and
fine-tune; hand-built graphs check the operator mappings and every refusal.

Reference: the PyTorch module that was exported, run on the same float32 inputs (its outputs must match
barenet's to 1e-5). ``dynamo`` is torch.onnx's default exporter, ``legacy`` the TorchScript one
(``dynamo=False``), ``legacy-unfolded`` the same without constant folding, so that BatchNormalization
nodes stay in the graph instead of being folded into the Conv/Gemm before them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import barenet as bn
from barenet.errors import ModelFileError

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
import onnx_cases as oc  # noqa: E402
import onnx_mutations as om  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TOLERANCE = 1e-5
EXPORTS = [(m, e) for m in ("mlp", "cnn", "lstm", "gru") for e in ("dynamo", "legacy", "legacy-unfolded")]
EXPORTS += [("rnn", "legacy"), ("embedding_gru", "legacy"), ("pooling_cnn", "legacy")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(name, exporter) -> (path, torch module, example input)``, each exported once, on first use."""
    return oc.export_cache(tmp_path_factory.mktemp("onnx"))


def _inputs(x: np.ndarray, n: int = 9) -> np.ndarray:
    """``n`` samples like ``x`` (a batch size the export never saw)."""
    rng = np.random.default_rng(3)
    if x.dtype.kind in "iu":
        return rng.integers(0, int(x.max()) + 1, size=(n, *x.shape[1:])).astype(x.dtype)
    if x.min() >= 0:
        return rng.random((n, *x.shape[1:]), dtype=np.float32)
    return rng.standard_normal((n, *x.shape[1:]), dtype=np.float32)


@pytest.mark.parametrize(("name", "exporter"), EXPORTS, ids=[f"{m}-{e}" for m, e in EXPORTS])
def test_predictions_equal_pytorch(exported, name, exporter):
    path, net, x = exported(name, exporter)
    model = bn.import_onnx(path)
    X = _inputs(x)
    got, want = model.predict(X), oc.torch_predict(net, X)
    assert got.shape == want.shape and got.dtype == np.float32
    diff = float(np.abs(got - want).max())
    print(f"\n{name} ({exporter}): largest difference {diff:.2e}")
    assert diff <= TOLERANCE


def test_layers_of_the_imported_cnn(exported):
    """Batch norm folded into the convolutions; the ReLU after the Linear fused into its Dense."""
    path, _, _ = exported("cnn", "legacy-unfolded")
    kinds = [type(layer).__name__ for layer in bn.import_onnx(path).layers]
    assert kinds == ["Conv2D", "MaxPooling2D", "ReLU", "Conv2D", "MaxPooling2D", "ReLU", "Flatten", "Dense", "Dense"]


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_saved_and_loaded_model_predicts_the_same(exported, tmp_path, name):
    path, _, x = exported(name, "legacy")
    model = bn.import_onnx(path)
    bn.save(model, tmp_path / "m.barenet")
    loaded = bn.load(tmp_path / "m.barenet")
    X = _inputs(x)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.metadata["imported_from"]["format"] == "onnx"


@pytest.mark.parametrize("name", ["cnn", "gru", "mlp"])
def test_imported_model_fine_tunes(exported, name):
    """compile + fit lowers the loss on a small labelled set, and the weights move."""
    path, _, x = exported(name, "legacy-unfolded")
    model = bn.import_onnx(path)
    X = _inputs(x, 48)
    y = np.random.default_rng(5).integers(0, model.output_shape[-1], size=len(X))
    softmax_out = name == "mlp"
    loss = bn.losses.CategoricalCrossentropy(from_logits=not softmax_out)
    model.compile(loss=loss, optimizer=bn.optimizers.Adam(0.01))
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(X, y, epochs=8, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


# --------------------------------------------------------------------- hand-built graphs
def _save(tmp_path, nodes, inits, x_shape, y_shape=None, *, opset=17, name="g.onnx", elem=TensorProto.FLOAT,
          **model_kwargs):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", elem, ["batch", *x_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **model_kwargs)
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_matmul_add_and_activations_match_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((4, 6)).astype(np.float32), "b1": rng.standard_normal(6).astype(np.float32),
             "w2": rng.standard_normal((6, 3)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["b1", "h"], ["hb"]),
             helper.make_node("Elu", ["hb"], ["e"], alpha=0.7), helper.make_node("Identity", ["e"], ["i"]),
             helper.make_node("Sigmoid", ["i"], ["s"]), helper.make_node("MatMul", ["s", "w2"], ["z"]),
             helper.make_node("LeakyRelu", ["z"], ["y"], alpha=0.2)]
    path = _save(tmp_path, nodes, inits, [4])
    model = bn.import_onnx(path)
    X = rng.standard_normal((7, 4)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": X})[0]
    np.testing.assert_allclose(model.predict(X), want, atol=1e-6)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Sigmoid", "Dense"]
    assert model.layers[0].activation.kind == "elu" and model.layers[2].activation.kind == "leaky_relu"


def _matmul_add(tmp_path, bias_shape, *, bias_first=False, rank=2):
    """x (batch, [3,] 4) -> MatMul by (4, 5) -> Add of a constant of ``bias_shape`` (node 'bias')."""
    rng = np.random.default_rng(4)
    inits = {"w": rng.standard_normal((4, 5)).astype(np.float32),
             "b": rng.standard_normal(bias_shape).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["b", "h"] if bias_first else ["h", "b"], ["y"], name="bias")]
    return _save(tmp_path, nodes, inits, [4] if rank == 2 else [3, 4], name=f"add{bias_shape}.onnx")


@pytest.mark.parametrize(("bias_shape", "rank", "bias_first"),
                         [((5,), 2, False), ((1, 5), 2, True), ((), 2, False), ((1,), 2, True), ((1, 1), 2, False),
                          ((5,), 3, False), ((1, 1, 5), 3, True)])
def test_an_add_that_broadcasts_as_a_bias_is_the_dense_bias(tmp_path, bias_shape, rank, bias_first):
    ort = pytest.importorskip("onnxruntime")
    path = _matmul_add(tmp_path, bias_shape, bias_first=bias_first, rank=rank)
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense"] and model.layers[0].use_bias
    for batch in (1, 5, 7):
        X = np.random.default_rng(batch).standard_normal((batch, 4) if rank == 2 else (batch, 3, 4), np.float32)
        want = ort.InferenceSession(str(path)).run(None, {"x": X})[0]
        got = model.predict(X)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(("bias_shape", "rank"), [((5, 1), 2), ((5, 5), 2), ((2, 5), 2), ((3, 5), 3), ((3, 1), 3),
                                                  ((1, 3, 5), 3), ((1, 1, 1, 5), 3), ((1, 1, 5), 2)])
def test_an_add_that_does_not_broadcast_as_a_bias_is_refused(tmp_path, bias_shape, rank):
    """(5, 1) holds one value per unit, but added to (batch, 5) it gives (5, 5) for a batch of 1 or 5 (and
    fails for others): it is no bias, and importing it as one gave other predictions than onnxruntime's."""
    ort = pytest.importorskip("onnxruntime")
    path = _matmul_add(tmp_path, bias_shape, rank=rank)
    if bias_shape == (5, 1):
        assert ort.InferenceSession(str(path)).run(None, {"x": np.ones((1, 4), np.float32)})[0].shape == (5, 5)
    output = "(batch, 5)" if rank == 2 else "(batch, 3, 5)"
    with pytest.raises(ModelFileError) as error:
        bn.import_onnx(path)
    assert str(error.value).endswith(
        f"'Add' node 'bias' adds a constant of shape {bias_shape} to the {output} output of a MatMul; a bias is "
        "one value per unit, of shape (5,) or (1, ..., 5), or one value for all")


def test_reduce_mean_over_height_and_width_is_a_global_average_pool(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(1)
    inits = {"w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "axes": np.array([-1, 2])}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["c", "axes"], ["m"]), helper.make_node("Flatten", ["m"], ["y"])]
    path = _save(tmp_path, nodes, inits, [2, 5, 6], opset=18)
    model = bn.import_onnx(path)
    X = rng.standard_normal((4, 2, 5, 6)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": X})[0]
    np.testing.assert_allclose(model.predict(X), want, atol=1e-6)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "GlobalAveragePooling2D"]


def test_nhwc_graph_transposed_to_nchw_keeps_channels_last_layers(tmp_path):
    """NHWC input -> Transpose -> Conv, BatchNormalization, Relu, MaxPool -> Transpose back -> Flatten -> Gemm:
    the transposes cancel, the layers run channels-last, the batch norm stays a layer."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(2)
    f32 = np.float32
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(f32), "b": rng.standard_normal(4).astype(f32),
             "g": rng.random(4).astype(f32) + 0.5, "beta": rng.standard_normal(4).astype(f32),
             "mean": rng.standard_normal(4).astype(f32), "var": rng.random(4).astype(f32) + 0.5,
             "d": rng.standard_normal((2, 3 * 3 * 4)).astype(f32)}
    nodes = [helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Transpose", ["p"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["nhwc"], ["f"]), helper.make_node("Gemm", ["f", "d"], ["y"], transB=1)]
    path = _save(tmp_path, nodes, inits, [6, 6, 3])
    model = bn.import_onnx(path)
    X = rng.standard_normal((5, 6, 6, 3)).astype(f32)
    want = ort.InferenceSession(str(path)).run(None, {"x": X})[0]
    np.testing.assert_allclose(model.predict(X), want, atol=1e-5)
    kinds = [(type(layer).__name__, getattr(layer, "data_format", None)) for layer in model.layers]
    assert kinds == [("Conv2D", "channels_last"), ("BatchNormalization", None), ("ReLU", None),
                     ("MaxPooling2D", "channels_last"), ("Flatten", None), ("Dense", None)]


def test_lstm_final_state_with_its_direction_axis_gathered_away(tmp_path):
    """Y_h (1, batch, units) -> Gather(axis=0, index 0) -> Gemm: the last state, no sequence kept."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(6)
    f32, units = np.float32, 3
    inits = {"W": rng.standard_normal((1, 4 * units, 2)).astype(f32),
             "R": rng.standard_normal((1, 4 * units, units)).astype(f32),
             "B": rng.standard_normal((1, 8 * units)).astype(f32), "zero": np.array(0),
             "d": rng.standard_normal((units, 2)).astype(f32)}
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node("LSTM", ["t", "W", "R", "B"], ["", "h"], hidden_size=units),
             helper.make_node("Gather", ["h", "zero"], ["last"], axis=0),
             helper.make_node("Gemm", ["last", "d"], ["y"])]
    path = _save(tmp_path, nodes, inits, [5, 2])
    model = bn.import_onnx(path)
    X = rng.standard_normal((4, 5, 2)).astype(f32)
    want = ort.InferenceSession(str(path)).run(None, {"x": X})[0]
    np.testing.assert_allclose(model.predict(X), want, atol=1e-6)
    assert not model.layers[0].return_sequences


def test_float64_graph_gives_a_float64_model(tmp_path):
    w = np.arange(6.0).reshape(2, 3)
    path = _save(tmp_path, [helper.make_node("Gemm", ["x", "w"], ["y"], alpha=0.5)], {"w": w}, [2],
                 elem=TensorProto.DOUBLE)
    model = bn.import_onnx(path)
    assert model.dtype == np.float64
    np.testing.assert_array_equal(model.predict(np.ones((1, 2))), [[1.5, 2.5, 3.5]])


def test_a_constant_reversed_by_slice_folds_to_all_its_entries(tmp_path):
    """Slice with step -1 from the last entry to "before the first" (as PyTorch's pad arithmetic writes it)."""
    inits = {"c": np.array([3, 2, -1]), "s": np.array([-1]), "e": np.array([-2**63]), "a": np.array([0]),
             "st": np.array([-1])}
    nodes = [helper.make_node("Slice", ["c", "s", "e", "a", "st"], ["shape"]),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    model = bn.import_onnx(_save(tmp_path, nodes, inits, [6]))
    assert [(type(layer).__name__, layer.output_shape) for layer in model.layers] == [("Reshape", (2, 3))]
def test_a_float32_graph_imports_in_float64_when_asked(exported):
    """dtype="float64" widens the weights (a batch norm folded into a convolution would be folded in float64);
    predictions agree with the float32 import to float32 accuracy."""
    path, _, x = exported("mlp", "legacy-unfolded")
    model32, model64 = bn.import_onnx(path), bn.import_onnx(path, dtype="float64")
    assert model64.dtype == np.float64 and all(w.dtype == np.float64 for w in model64.get_weights())
    for a, b in zip(model32.get_weights(), model64.get_weights(), strict=True):
        np.testing.assert_array_equal(a.astype(np.float64), b)
    X = _inputs(x)
    np.testing.assert_allclose(model64.predict(X), model32.predict(X), rtol=0, atol=TOLERANCE)
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        bn.import_onnx(path, dtype="float16")


def test_a_graph_exported_for_one_batch_size_predicts_any(tmp_path):
    """torch.onnx.export without dynamic shapes fixes the batch size (here 3) and writes it into the Reshape
    that flattens each sample; the import reads that entry as the batch axis."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(11)
    inits = {"shape": np.array([3, 24]), "w": rng.standard_normal((24, 2)).astype(np.float32)}
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2, 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    path = tmp_path / "fixed.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == ["ReLU", "Flatten", "Dense"]
    X = rng.standard_normal((7, 2, 3, 4)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": X[:3]})[0]
    got = model.predict(X)
    np.testing.assert_allclose(got[:3], want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[3:6], ort.InferenceSession(str(path)).run(None, {"x": X[3:6]})[0], atol=1e-5)


REFUSALS = {
    "unknown operator": ([helper.make_node("Cos", ["x"], ["y"], name="cosine")], {},
                         r"operator 'Cos' \('Cos' node 'cosine'\) has no barenet counterpart"),
    "unknown domain": ([helper.make_node("Relu", ["x"], ["y"], domain="com.example")], {},
                       r"'Relu' node 'y' is in operator domain 'com.example'"),
    "cycle": ([helper.make_node("Add", ["x", "c"], ["a"]), helper.make_node("Relu", ["a"], ["c"]),
               helper.make_node("Relu", ["c"], ["y"])], {}, "the graph has a cycle"),
    "division by a computed tensor": (
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"]),
         helper.make_node("Div", ["a", "b"], ["y"])], {},
        "'Div' node 'y' divides one data-path tensor by another; barenet has no layer"),
    "product of two computed tensors": (
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("MatMul", ["a", "x"], ["y"])], {},
        "'MatMul' node 'y' reads 2 data-path tensors; barenet joins computed tensors only with Add, Concat, Max, "
        "Mean, Mul, Sub, Sum"),
    "a join that broadcasts": (
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Unsqueeze", ["f", "one"], ["u"]),
         helper.make_node("Add", ["x", "u"], ["y"])], {"one": np.array([1])},
        r"'Add' node 'y' joins data-path tensors of ONNX shapes \[\[batch, 3, 4\], \[batch, 1, 12\]\]"),
    "dangling input": ([helper.make_node("Relu", ["nowhere"], ["y"])], {}, "reads value 'nowhere', which no"),
    "too few inputs": ([helper.make_node("Gemm", ["x"], ["y"])], {}, "an ONNX Gemm takes 2 to 3 inputs"),
    "attribute of the wrong type": ([helper.make_node("LeakyRelu", ["x"], ["y"], alpha=[1, 2])], {},
                                    r"attribute 'alpha' of 'LeakyRelu' node 'y' has ONNX attribute type 7; expected 1"),
    "data path as a shape": ([helper.make_node("Reshape", ["s", "x"], ["y"])], {"s": np.ones(12, np.float32)},
                             "takes the data path as input 1, where an ONNX Reshape expects a constant"),
    "softmax over features of a sequence's time axis":
        ([helper.make_node("Softmax", ["x"], ["y"], axis=1)], {}, "barenet's Softmax works over the last axis"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_problem(tmp_path, case):
    nodes, inits, message = REFUSALS[case]
    path = _save(tmp_path, nodes, inits, [3, 4])
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(path)


ATTRIBUTE_REFUSALS = {
    "unknown name": ([helper.make_node("Relu", ["x"], ["y"], name="r", color="red")], {}, 17,
                     "'Relu' node 'r' has attribute 'color', which barenet does not know for a Relu at opset 17 "
                     "(it knows none); ignoring it could change what the node computes"),
    "a name other operators read": (
        [helper.make_node("LeakyRelu", ["x"], ["y"], name="lr", alpha=0.1, beta=2.0)], {}, 17,
        "'LeakyRelu' node 'lr' has attribute 'beta', which barenet does not know for a LeakyRelu at opset 17 "
        "(it knows alpha); ignoring it could change what the node computes"),
    "an attribute of an older opset": (
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="g", broadcast=1)], {"w": np.ones((4, 2), np.float32)}, 17,
        "'Gemm' node 'g' has attribute 'broadcast', which barenet does not know for a Gemm at opset 17 (it knows "
        "alpha, beta, transA, transB); ignoring it could change what the node computes"),
    "an attribute that became an input": (
        [helper.make_node("Unsqueeze", ["x", "one"], ["u"], name="u", axes=[3]),
         helper.make_node("Flatten", ["u"], ["y"])], {"one": np.array([1])}, 13,
        "'Unsqueeze' node 'u' has attribute 'axes', which barenet does not know for a Unsqueeze at opset 13 "
        "(it knows none); ignoring it could change what the node computes"),
    "on a folded constant": (
        [helper.make_node("Cast", ["s32"], ["s"], name="c", to=TensorProto.INT64, future_rounding=1),
         helper.make_node("Reshape", ["x", "s"], ["y"])], {"s32": np.array([-1, 12], np.int32)}, 19,
        "'Cast' node 'c' has attribute 'future_rounding', which barenet does not know for a Cast at opset 19 (it "
        "knows round_mode, saturate, to); ignoring it could change what the node computes"),
}


@pytest.mark.parametrize("case", sorted(ATTRIBUTE_REFUSALS))
def test_an_attribute_the_importer_does_not_know_is_refused(tmp_path, case):
    nodes, inits, opset, message = ATTRIBUTE_REFUSALS[case]
    path = _save(tmp_path, nodes, inits, [3, 4], opset=opset)
    with pytest.raises(ModelFileError) as error:
        bn.import_onnx(path)
    assert str(error.value).endswith(message)


def test_attributes_that_change_nothing_here_still_import(tmp_path):
    """Cast's saturate and round_mode (float8 targets only), Dropout's seed (inference) and ReduceMean's
    noop_with_empty_axes (axes given) are known and ignored: the graph imports and matches onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(8)
    f32 = np.float32
    inits = {"w": rng.standard_normal((3, 2, 3, 3)).astype(f32), "axes": np.array([2, 3]),
             "s32": np.array([-1, 3], np.int32), "d": rng.standard_normal((3, 2)).astype(f32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["c", "axes"], ["m"], keepdims=1, noop_with_empty_axes=0),
             helper.make_node("Cast", ["s32"], ["s"], to=TensorProto.INT64, saturate=1),
             helper.make_node("Reshape", ["m", "s"], ["f"]),
             helper.make_node("Dropout", ["f"], ["o"], seed=7),
             helper.make_node("Gemm", ["o", "d"], ["y"])]
    path = _save(tmp_path, nodes, inits, [2, 5, 5], opset=19)
    model = bn.import_onnx(path)
    X = rng.standard_normal((4, 2, 5, 5)).astype(f32)
    want = ort.InferenceSession(str(path)).run(None, {"x": X})[0]
    np.testing.assert_allclose(model.predict(X), want, atol=1e-5)
    nodes[2] = helper.make_node("Cast", ["s32"], ["s"], to=TensorProto.INT64, saturate=1, round_mode="up")
    np.testing.assert_allclose(bn.import_onnx(_save(tmp_path, nodes, inits, [2, 5, 5], opset=24)).predict(X), want,
                               atol=1e-5)


def test_the_attribute_table_covers_every_operator_with_onnx_names():
    """Every operator the importer takes has a list of known attributes; each name in it is one ONNX defines
    for that operator, and every attribute the importer reads has a checked type."""
    from barenet.onnx import _fold, importer

    assert set(_fold.KNOWN_ATTRIBUTES) == importer.SUPPORTED_OPS
    for op, known in _fold.KNOWN_ATTRIBUTES.items():
        defined = {name for schema in onnx.defs.get_all_schemas_with_history() if schema.name == op
                   and schema.domain == "" for name in schema.attributes}
        assert set(known) <= defined, op
        assert set(known) - set(_fold.IGNORED_ATTRIBUTES.get(op, {})) <= set(_fold.ATTRIBUTE_TYPES), op


def _tensor_model(tmp_path, edit):
    """A one-Gemm model whose weight initializer is changed by ``edit(tensor)`` before saving."""
    w = np.ones((4, 2), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(w, "w")])
    edit(graph.initializer[0])
    path = tmp_path / "t.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def _external(tensor):
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/passwd")


def _external_entry_only(tensor):
    tensor.external_data.add(key="location", value="../../secret.bin")


def _huge_dims(tensor):
    tensor.ClearField("dims")
    tensor.dims.extend([2**31, 2**31])


def _short_data(tensor):
    tensor.raw_data = tensor.raw_data[:-4]


@pytest.mark.parametrize(("edit", "message"), [
    (_external, "names external data '/etc/passwd', an absolute path"),
    (_external_entry_only, "names external data without data_location EXTERNAL"),
    (_huge_dims, "declares dims .* more than the"), (_short_data, r"declares dims \[4, 2\] \(32 bytes"),
], ids=["external-etc-passwd", "external-entry", "huge-dims", "short-data"])
def test_hostile_initializers_are_refused_before_allocation(tmp_path, edit, message):
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(_tensor_model(tmp_path, edit))


def test_unreadable_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        bn.import_onnx(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\x00 not protobuf \x08" * 10)
    with pytest.raises(ModelFileError, match="not a valid ONNX file|holds no ONNX graph"):
        bn.import_onnx(tmp_path / "junk.onnx")
    big = _tensor_model(tmp_path, lambda t: None)
    with pytest.raises(ModelFileError, match="more than the 10-byte limit"):
        bn.import_onnx(big, max_bytes=10)


def test_unknown_opset_and_functions_are_refused(tmp_path):
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], {}, [3], opset=10_000)
    with pytest.raises(ModelFileError, match="opset 10000"):
        bn.import_onnx(path)
    model = onnx.load(str(_save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], {}, [3])))
    model.functions.append(helper.make_function("local", "f", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])],
                                                [helper.make_opsetid("", 17)]))
    (tmp_path / "f.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(ModelFileError, match="local function"):
        bn.import_onnx(tmp_path / "f.onnx")


def test_error_when_onnx_is_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(bn.onnx.MissingOnnxError, match=r'ONNX import needs .* pip install "barenet\[onnx\]"'):
        bn.import_onnx("whatever.onnx")


def test_huge_input_shapes_are_refused_before_building(tmp_path):
    """64 M values per sample would make pooling layers allocate hundreds of MB at build time."""
    path = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], {}, [1, 8192, 8192])
    with pytest.raises(ModelFileError, match=r"per-sample shape \(1, 8192, 8192\) is outside barenet's limits"):
        bn.import_onnx(path)


def test_many_folded_constants_cannot_add_up_to_a_huge_allocation(tmp_path):
    """Each ConstantOfShape makes 2**20 values (within the per-tensor budget of a small file); five of them
    exceed the total budget and are refused before the fifth is kept."""
    shape = np.array([1024, 1024])
    nodes = [helper.make_node("ConstantOfShape", ["s"], [f"c{k}"]) for k in range(5)]
    nodes.append(helper.make_node("Relu", ["x"], ["y"]))
    path = _save(tmp_path, nodes, {"s": shape}, [3])
    with pytest.raises(ModelFileError, match="brings the folded constants to 5242880 elements"):
        bn.import_onnx(path)


def test_tensor_attribute_without_its_tensor_is_refused(tmp_path):
    constant = helper.make_node("Constant", [], ["c"])
    constant.attribute.add(name="value", type=onnx.AttributeProto.TENSOR)  # type says tensor, none stored
    path = _save(tmp_path, [constant, helper.make_node("Relu", ["x"], ["y"])], {}, [3])
    with pytest.raises(ModelFileError, match="attribute 'value' of 'Constant' node 'c' has ONNX data type 0"):
        bn.import_onnx(path)


# --------------------------------------------------------------------- barenet -> ONNX -> barenet
def _roundtrip_models():
    L = bn.layers
    return {
        "mlp": lambda: bn.Sequential([L.Dense(12, activation="relu", input_dim=5), L.BatchNormalization(),
                                      L.Dropout(0.2), L.Dense(6, activation="tanh"), L.Dense(3, activation="softmax")],
                                     seed=1),
        "cnn": lambda: bn.Sequential([L.Conv2D(4, 3, padding="same", use_bias=False, input_shape=(12, 12, 1)),
                                      L.BatchNormalization(), L.MaxPooling2D(2), L.ReLU(),
                                      L.Conv2D(6, 3, activation="relu"), L.AveragePooling2D(2), L.Flatten(),
                                      L.Dense(10)], seed=1),
        "lstm": lambda: bn.Sequential([L.LSTM(6, input_shape=(7, 4)), L.Dense(3, activation="softmax")], seed=1),
        "gru": lambda: bn.Sequential([L.GRU(5, return_sequences=True, input_shape=(7, 4)), L.GRU(4, reset_after=False),
                                      L.Dense(2)], seed=1),
        "embedding-gru": lambda: bn.Sequential([L.Embedding(20, 4, input_length=6), L.GRU(5), L.Dense(3)], seed=1),
    }


@pytest.mark.parametrize("name", sorted(_roundtrip_models()))
def test_barenet_to_onnx_to_barenet_keeps_weights_and_predictions(tmp_path, name):
    model = _roundtrip_models()[name]()
    model.build()
    rng = np.random.default_rng(4)
    for layer in model.layers:  # move every weight and statistic away from its initial value
        for arrays in (layer.params, layer.buffers):
            for key, value in arrays.items():
                value[...] = rng.uniform(0.5, 1.5, value.shape) if "variance" in key else \
                    rng.normal(0, 0.5, value.shape)
    bn.export_onnx(model, tmp_path / "m.onnx")
    back = bn.import_onnx(tmp_path / "m.onnx")
    for a, b in zip(model.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    if name == "embedding-gru":
        X = rng.integers(0, 20, size=(9, 6)).astype(np.float32)
    else:
        X = rng.normal(size=(9, *model.input_shape)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


# --------------------------------------------------------------------- layer norm, newer activations, pools, resize
NEWER = [("activations_mlp", "legacy"), ("activations_mlp", "legacy-opset21"), ("activations_mlp", "dynamo"),
         ("layernorm_sequence", "legacy"), ("upsampling_cnn", "legacy"),
         ("upsampling_cnn", "dynamo"), ("sequence_pools", "legacy"), ("sequence_pools", "dynamo")]
NEWER_LAYERS = {
    "activations_mlp": ["Dense"] * 9,
    "layernorm_sequence": ["Dense", "LayerNormalization", "GELU", "Dense", "LayerNormalization", "Dense"],
    "upsampling_cnn": ["Conv2D", "ZeroPadding2D", "UpSampling2D", "Conv2D", "UpSampling2D", "ReLU6",
                       "GlobalMaxPooling2D", "Dense"],
    "sequence_pools": ["MaxPooling1D", "AveragePooling1D", "HardSwish", "GlobalAveragePooling1D", "Dense"],
}


@pytest.mark.parametrize(("name", "exporter"), NEWER, ids=[f"{m}-{e}" for m, e in NEWER])
def test_newer_layers_exported_by_pytorch_match_onnxruntime(exported, name, exporter):
    """GELU as Erf or Tanh arithmetic (opset 18) or one Gelu node (21), x * Sigmoid(x), x * Tanh(Softplus(x)),
    HardSwish, HardSigmoid, Clip(0, 6), Softplus, LayerNormalization, 1-d pools, Resize and Pad become barenet's
    layers; predictions agree with onnxruntime's to 1e-5 (relative) and with PyTorch's."""
    ort = pytest.importorskip("onnxruntime")
    path, net, x = exported(name, exporter)
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == NEWER_LAYERS[name]
    if name == "activations_mlp":
        acts = [layer.activation for layer in model.layers]
        assert [a.kind for a in acts] == ["gelu", "silu", "mish", "hard_swish", "hard_sigmoid", "relu6", "softplus",
                                          "gelu", "linear"]
        assert (acts[0].approximate, acts[7].approximate) == (False, True)
    X = _inputs(x)
    got = model.predict(X)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (want,) = session.run(None, {session.get_inputs()[0].name: X})
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1)) <= TOLERANCE
    assert np.max(np.abs(got - oc.torch_predict(net, X))) <= TOLERANCE


def test_global_max_pool_clip_and_pad_of_a_hand_built_graph(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(7)
    inits = {"w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "pads": np.array([0, 0, 1, 0, 0, 0, 0, 2]),
             "low": np.array(0.0, np.float32), "high": np.array(6.0, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Pad", ["c", "pads"], ["p"]),
             helper.make_node("Clip", ["p", "low", "high"], ["r"]), helper.make_node("GlobalMaxPool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["y"])]
    path = _save(tmp_path, nodes, inits, [2, 6, 5], opset=18)
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "ZeroPadding2D", "ReLU6",
                                                                "GlobalMaxPooling2D"]
    assert model.layers[1].padding == ((1, 0), (0, 2)) and model.layers[1].data_format == "channels_first"
    X = rng.standard_normal((4, 2, 6, 5)).astype(np.float32) * 3
    want = ort.InferenceSession(str(path)).run(None, {"x": X})[0]
    np.testing.assert_allclose(model.predict(X), want, atol=1e-5)


def test_reduce_max_over_the_steps_is_a_global_max_pool(tmp_path):
    path = _save(tmp_path, [helper.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=0)],
                 {"axes": np.array([-1])}, [3, 5], opset=18)
    model = bn.import_onnx(path)
    assert [(type(layer).__name__, layer.data_format) for layer in model.layers] == [("GlobalMaxPooling1D",
                                                                                        "channels_first")]
    X = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(X), X.max(axis=2))


NEWER_REFUSALS = {
    "keras 2 hard sigmoid": ([helper.make_node("HardSigmoid", ["x"], ["y"], alpha=0.2)], {},
                             r"has alpha=0\.2.*barenet's HardSigmoid is relu6\(x \+ 3\) / 6"),
    "clip to other bounds": ([helper.make_node("Clip", ["x", "low", "high"], ["y"])],
                             {"low": np.array(-1.0, np.float32), "high": np.array(1.0, np.float32)},
                             r"clips to \[-1\.0, 1\.0\]; barenet imports Clip to \[0, 6\]"),
    "swish with beta 2": ([helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Sigmoid", ["x2"], ["s"]),
                           helper.make_node("Mul", ["x", "s"], ["y"])], {"two": np.array(2.0, np.float32)},
                          "multiplies the data path"),
    "erf alone": ([helper.make_node("Erf", ["x"], ["y"])], {}, "barenet has no 'Erf' layer"),
    "reflect padding": ([helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")],
                        {"pads": np.zeros(6, np.int64)}, "pads in mode 'reflect'"),
    "layer norm over the batch": ([helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=0)],
                                  {"s": np.ones((2, 3, 4), np.float32)}, "has axis 0 for a 3-d tensor"),
}


@pytest.mark.parametrize("case", sorted(NEWER_REFUSALS))
def test_newer_operator_refusals_name_the_problem(tmp_path, case):
    nodes, inits, message = NEWER_REFUSALS[case]
    path = _save(tmp_path, nodes, inits, [3, 4], opset=18)
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(path)


def _newer_roundtrip_models():
    L = bn.layers
    return {
        "image": lambda: [L.Conv2D(3, 3, padding="same", input_shape=(6, 5, 2)), L.LayerNormalization(),
                          L.ZeroPadding2D(((1, 0), (2, 1))), L.UpSampling2D((2, 1), "bilinear"), L.Mish(),
                          L.UpSampling2D(2), L.GlobalMaxPooling2D(), L.Dense(4, "silu"), L.Dense(3, "hard_swish"),
                          L.Dense(3, L.GELU(approximate=True)), L.Dense(2, "softplus")],
        "sequence": lambda: [L.Dense(4, "gelu", input_shape=(9, 3)), L.MaxPooling1D(3, 2, "same"),
                             L.AveragePooling1D(2, 1, "same"), L.LayerNormalization(axis=[1, 2], epsilon=1e-5),
                             L.HardSigmoid(), L.GlobalAveragePooling1D(), L.Dense(3, "relu6")],
        "sequence-channels-first": lambda: [L.MaxPooling1D(2, data_format="channels_first", input_shape=(3, 8)),
                                            L.AveragePooling1D(2, data_format="channels_first"),
                                            L.GlobalMaxPooling1D(data_format="channels_first"), L.Dense(2)],
    }


@pytest.mark.parametrize("name", sorted(_newer_roundtrip_models()))
def test_newer_layers_round_trip_through_onnx(tmp_path, name):
    model = bn.Sequential(_newer_roundtrip_models()[name](), seed=1)
    model.build()
    rng = np.random.default_rng(4)
    for layer in model.layers:
        for key, value in layer.params.items():
            value[...] = rng.uniform(0.5, 1.5, value.shape) if key == "gamma" else rng.normal(0, 0.5, value.shape)
    bn.export_onnx(model, tmp_path / "m.onnx")
    back = bn.import_onnx(tmp_path / "m.onnx")
    assert [layer.get_config() for layer in back.layers] == [
        {k: v for k, v in layer.get_config().items() if k not in ("input_shape", "name")} for layer in model.layers]
    for a, b in zip(model.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    X = rng.normal(size=(9, *model.input_shape)).astype(np.float32) * 2
    np.testing.assert_allclose(back.predict(X), model.predict(X), rtol=1e-6, atol=1e-6)


def test_float64_forms_of_activations_and_layer_norm_import_back(tmp_path):
    """barenet writes float64 GELU (through erfc), HardSigmoid, Softplus, Mish and LayerNormalization with elementary
    operators; the importer recognizes them and gives back the same layers."""
    L = bn.layers
    model = bn.Sequential([L.Dense(6, "gelu", input_dim=4), L.LayerNormalization(), L.HardSigmoid(), L.Dense(5, "mish"),
                           L.LayerNormalization(center=False), L.Softplus(), L.Dense(3, "silu")], seed=2,
                          dtype="float64")
    model.build()
    bn.export_onnx(model, tmp_path / "m.onnx")
    back = bn.import_onnx(tmp_path / "m.onnx")
    assert [type(layer).__name__ for layer in back.layers] == [type(layer).__name__ for layer in model.layers]
    assert back.layers[0].activation.approximate is False and back.layers[4].center is False
    X = np.random.default_rng(5).normal(size=(20, 4)) * 3
    np.testing.assert_allclose(back.predict(X), model.predict(X), rtol=1e-10, atol=1e-12)

# --------------------------------------------------------------------- bidirectional recurrent nodes
BIDIRECTIONAL = [(cell, mode, seq) for cell in ("lstm", "gru", "rnn") for mode in ("concat", "sum", "mul", "ave")
                 for seq in (True, False)]


@pytest.mark.parametrize(("cell", "mode", "seq"), BIDIRECTIONAL,
                         ids=[f"{c}-{m}-{'seq' if s else 'last'}" for c, m, s in BIDIRECTIONAL])
def test_bidirectional_round_trip_keeps_merge_weights_and_predictions(tmp_path, cell, mode, seq):
    """barenet's exporter writes one direction="bidirectional" node, Gathers each direction and merges them;
    the import gives back the same Bidirectional layer, bit for bit."""
    L = bn.layers
    inner = {"lstm": lambda: L.LSTM(3, return_sequences=seq),
             "gru": lambda: L.GRU(3, return_sequences=seq, reset_after=True),
             "rnn": lambda: L.SimpleRNN(3, activation="relu", return_sequences=seq)}[cell]()
    model = bn.Sequential([L.Bidirectional(inner, mode, input_shape=(4, 2)), L.Dense(2)], seed=1)
    model.build()
    rng = np.random.default_rng(7)
    for layer in model.layers:
        for value in layer.params.values():
            value[...] = rng.normal(0, 0.5, value.shape)
    bn.export_onnx(model, tmp_path / "m.onnx")
    back = bn.import_onnx(tmp_path / "m.onnx")
    bi = back.layers[0]
    assert isinstance(bi, L.Bidirectional) and type(bi.forward_layer) is type(inner)
    assert bi.merge_mode == mode and bi.return_sequences == seq
    def inner_config(layer):  # unit_forget_bias only initializes; the imported biases are set as they are
        return {k: v for k, v in layer.forward_layer.get_config().items() if k not in ("unit_forget_bias", "name")}

    assert inner_config(bi) == inner_config(model.layers[0])
    for a, b in zip(model.get_weights(), back.get_weights(), strict=True):
        assert np.array_equal(a, b)
    X = rng.normal(size=(5, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


class _BidirectionalNet(torch.nn.Module if torch else object):
    """A bidirectional LSTM classifier on its two final states, a bidirectional GRU's whole sequence, or that of
    two stacked bidirectional LSTMs."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.cell = cell
        rnn = torch.nn.GRU if cell == "gru" else torch.nn.LSTM
        self.rnn = rnn(3, 4, num_layers=2 if cell == "stacked" else 1, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        y, h = self.rnn(x)
        if self.cell != "lstm":
            return y  # (batch, time, 2*hidden): written as Transpose + Reshape of Y
        h = h[0]
        return torch.softmax(self.head(torch.cat([h[-2], h[-1]], dim=1)), dim=1)  # Gathers + Concat of Y_h


@pytest.mark.parametrize("cell", ["lstm", "gru", "stacked"])
def test_pytorch_bidirectional_legacy_export_predicts_the_same(tmp_path, cell):
    torch.manual_seed(0)
    net = _BidirectionalNet(cell).eval()
    x = torch.zeros(2, 5, 3)
    path = tmp_path / "bi.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == \
        {"lstm": ["Bidirectional", "Dense"], "gru": ["Bidirectional"], "stacked": ["Bidirectional"] * 2}[cell]
    assert model.layers[0].merge_mode == "concat" and model.layers[0].return_sequences == (cell != "lstm")
    X = np.random.default_rng(8).standard_normal((7, 5, 3), dtype=np.float32)
    got, want = model.predict(X), oc.torch_predict(net, X)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


def _bidirectional_graph(after: list, *, direction="bidirectional", output="Y") -> tuple[list, dict]:
    """x (batch, 4, 2) -> Transpose -> RNN(direction, 3 units) named 'birnn' -> ``after`` -> y."""
    dirs = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(9)
    inits = {"W": rng.standard_normal((dirs, 3, 2)).astype(np.float32),
             "R": rng.standard_normal((dirs, 3, 3)).astype(np.float32),
             "zero": np.array(0), "one": np.array(1), "scale": np.array(0.7, np.float32)}
    outputs = ["Y", ""] if output == "Y" else ["", "Y"]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node("RNN", ["t", "W", "R"], outputs, hidden_size=3, direction=direction, name="birnn"),
             *after]
    return nodes, inits


_FORWARD = helper.make_node("Gather", ["Y", "zero"], ["f"], axis=0)
_BACKWARD = helper.make_node("Gather", ["Y", "one"], ["b"], axis=0)
BIDIRECTIONAL_REFUSALS = {
    "reverse only": (dict(direction="reverse", output="Y_h", after=[helper.make_node("Squeeze", ["Y"], ["y"])]),
                     "'RNN' node 'birnn' runs direction='reverse'"),
    "directions never merged": (dict(output="Y", after=[helper.make_node("Identity", ["Y"], ["y"])]),
                                r"the two directions of .*'birnn'.* are never merged"),
    "one direction only": (dict(output="Y_h", after=[helper.make_node("Gather", ["Y", "zero"], ["y"], axis=0)]),
                           "are never merged"),
    "a layer on one direction": (dict(output="Y_h", after=[
        _FORWARD, _BACKWARD, helper.make_node("Relu", ["f"], ["r"]), helper.make_node("Add", ["r", "b"], ["y"])]),
        r"works on one direction of .*'birnn'"),
    "backward before forward": (dict(output="Y_h", after=[
        _FORWARD, _BACKWARD, helper.make_node("Concat", ["b", "f"], ["y"], axis=1)]),
        r"concatenates the directions of .*'birnn'.* order \[1, 0\]"),
    "concat over the batch": (dict(output="Y_h", after=[
        _FORWARD, _BACKWARD, helper.make_node("Concat", ["f", "b"], ["y"], axis=0)]),
        "along axis 0"),
    "one direction twice": (dict(output="Y_h", after=[
        _FORWARD, helper.make_node("Identity", ["f"], ["g"]), helper.make_node("Identity", ["f"], ["h"]),
        helper.make_node("Add", ["g", "h"], ["y"])]), r"reads direction 0 of .*'birnn'.* a second time"),
    "a direction merged with itself": (dict(output="Y_h", after=[
        _FORWARD, _BACKWARD, helper.make_node("Add", ["f", "f"], ["y"])]),
        r"'Add' node 'y' combines two data-path tensors other than by merging the two directions of .*'birnn'"),
    "scaled sum": (dict(output="Y_h", after=[
        _FORWARD, _BACKWARD, helper.make_node("Add", ["f", "b"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["y"])]), "multiplies the data path"),
}


@pytest.mark.parametrize("case", sorted(BIDIRECTIONAL_REFUSALS))
def test_bidirectional_refusals_name_the_node(tmp_path, case):
    kwargs, message = BIDIRECTIONAL_REFUSALS[case]
    nodes, inits = _bidirectional_graph(**kwargs)
    path = _save(tmp_path, nodes, inits, [4, 2])
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(path)


def test_bidirectional_sum_of_hand_built_graph_matches_onnxruntime(tmp_path):
    """Y_h of a bidirectional RNN, both directions gathered and added: Bidirectional(SimpleRNN, "sum")."""
    ort = pytest.importorskip("onnxruntime")
    nodes, inits = _bidirectional_graph([_FORWARD, _BACKWARD, helper.make_node("Add", ["b", "f"], ["y"])],
                                        output="Y_h")
    path = _save(tmp_path, nodes, inits, [4, 2])
    model = bn.import_onnx(path)
    assert model.layers[0].merge_mode == "sum" and not model.layers[0].return_sequences
    X = np.random.default_rng(10).standard_normal((6, 4, 2), dtype=np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": X})[0]
    np.testing.assert_allclose(model.predict(X), want, atol=1e-6)


@pytest.fixture(scope="module")
def bidirectional_seeds(tmp_path_factory):
    """Serialized bidirectional graphs: barenet's concat of sequences and ave of final states, PyTorch's LSTM."""
    folder = tmp_path_factory.mktemp("bidirectional")
    L = bn.layers
    out = []
    for inner, mode in ((L.LSTM(3, return_sequences=True), "concat"), (L.GRU(2), "ave")):
        model = bn.Sequential([L.Bidirectional(inner, mode, input_shape=(4, 2))], seed=1)
        model.build()
        bn.export_onnx(model, folder / "b.onnx")
        out.append((folder / "b.onnx").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_BidirectionalNet("lstm").eval(), (torch.zeros(2, 5, 3),), str(folder / "t.onnx"),
                          dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    out.append((folder / "t.onnx").read_bytes())
    for k, seed in enumerate(out):  # the unmutated files import; their kernels are loaded before the fuzzing
        path = folder / f"{k}.onnx"
        path.write_bytes(seed)
        model = bn.import_onnx(path)
        model.predict(np.zeros((2, *model.input_shape), model.dtype))
        assert om.check_import(path).imported
    return out


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_bidirectional_files_end_in_barenet_errors(bidirectional_seeds, tmp_path, data):
    """Mutations of bidirectional graphs import or end in barenet's errors, in bounded time and memory."""
    choices = om.Choices(lambda n: data.draw(st.integers(0, max(n - 1, 0))),
                         lambda n: data.draw(st.binary(min_size=n, max_size=n)))
    mutated, _ = om.mutate(bidirectional_seeds[choices.pick(len(bidirectional_seeds))], choices)
    path = tmp_path / "case.onnx"
    path.write_bytes(mutated)
    om.check_import(path)


def test_slice_with_a_negative_step_down_to_the_first_element_keeps_it(tmp_path):
    """PyTorch's legacy exporter reverses F.pad's amounts with Slice(starts=-1, ends=-2**63+1, steps=-1)."""
    from barenet.onnx._fold import slice_index

    node = helper.make_node("Slice", ["a", "s", "e", "x", "t"], ["b"])
    index = slice_index([4], [-1], [-2**63 + 1], [0], [-1], node)
    np.testing.assert_array_equal(np.arange(4)[tuple(index)], [3, 2, 1, 0])
    index = slice_index([5, 3], [3, 0], [0, 3], [0, 1], [-2, 1], node)
    np.testing.assert_array_equal(np.arange(15).reshape(5, 3)[tuple(index)], [[9, 10, 11], [3, 4, 5]])
