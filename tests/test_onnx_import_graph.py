"""bn.import_onnx on graphs that are not chains: PyTorch models with a skip connection, two branches joined by
concatenation and a ResNet basic block import as functional Models that predict what onnxruntime predicts and
train as PyTorch trains; hand-built graphs check each join, fan-out, several inputs and outputs, and the
refusals.

References: onnxruntime on the exported file, with the same float32 input (within 1e-5 of the output's scale);
for training, the PyTorch module in float64 with the imported weights copied in (batch norm folded into the
convolutions, as the import does), one SGD step on the same batch and the same mean squared error, every weight
equal to 1e-8 afterwards. ``dynamo`` is ``torch.onnx.export``'s default (weights in ``<file>.data`` beside the
file, the batch size fixed at the example's), ``legacy`` is ``dynamo=False`` (batch norm folded by the exporter),
``legacy-unfolded`` the same without constant folding (BatchNormalization nodes stay in the graph).
"""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ModelFileError

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
import onnx_cases as oc  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

L = bn.layers
TOLERANCE = 1e-5
STEP_TOLERANCE = 1e-8
GRAPH_EXPORTS = [(m, e) for m in oc.GRAPH_MODELS for e in ("dynamo", "legacy", "legacy-unfolded")]
IDS = [f"{m}-{e}" for m, e in GRAPH_EXPORTS]
LAYERS = {"residual_mlp": ["Dense", "Dense", "Add", "Dense"],
          "two_branch": ["Dense", "Dense", "Concatenate", "Dense"],
          "residual_cnn": ["Conv2D", "Conv2D", "Add", "ReLU", "GlobalAveragePooling2D", "Dense"]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(name, exporter) -> (path, torch module, example input)``, each exported once, on first use."""
    return oc.export_cache(tmp_path_factory.mktemp("onnx_graphs"), oc.export_default)


@pytest.mark.parametrize(("name", "exporter"), GRAPH_EXPORTS, ids=IDS)
def test_pytorch_graphs_predict_what_onnxruntime_predicts(exported, name, exporter):
    path, net, x = exported(name, exporter)
    if exporter == "dynamo":  # the default export keeps the larger weights beside the file
        proto = onnx.load(str(path), load_external_data=False)
        assert any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer)
    model = bn.import_onnx(path)
    assert isinstance(model, bn.Model) and model.dtype == np.float32
    assert [type(layer).__name__ for layer in model.layers] == LAYERS[name]
    got, (want,) = model.predict(x), oc.onnxruntime_run(path, [x])
    scale = float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    print(f"\n{name} ({exporter}): largest difference {diff:.2e}, {diff / scale:.2e} of the output scale")
    assert got.shape == want.shape and diff <= TOLERANCE * scale
    # the batch size the export fixed is read as the batch axis: other batch sizes predict what PyTorch does
    X = np.random.default_rng(1).standard_normal((7, *x.shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(model.predict(X), oc.torch_predict(net, X), rtol=0, atol=TOLERANCE * scale)


@pytest.mark.parametrize(("name", "exporter"), GRAPH_EXPORTS, ids=IDS)
def test_one_sgd_step_moves_every_weight_as_pytorch_does(exported, name, exporter):
    """Imported in float64, one SGD step on a batch moves every weight as the same step moves PyTorch's."""
    path, net, x = exported(name, exporter)
    model = bn.import_onnx(path, dtype="float64")
    assert model.dtype == np.float64
    worst, moved = oc.sgd_step_differences(model, net, x)
    print(f"\n{name} ({exporter}): weights after one step differ by at most {worst:.1e} "
          f"(the smallest largest move of a weight array is {moved:.1e})")
    assert moved > 1e-4 and worst <= STEP_TOLERANCE


# --------------------------------------------------------------------- hand-built graphs
def _save(tmp_path, nodes, inits, inputs, outputs=("y",), *, opset=17, name="g.onnx"):
    """A graph with float inputs ``{name: shape after the batch}`` (int64 for names starting with ``ids``)."""
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(k, TensorProto.INT64 if k.startswith("ids") else TensorProto.FLOAT,
                                       ["batch", *shape]) for k, shape in inputs.items()],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    path = tmp_path / name
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString())
    return path


def _weights(rng, *shapes):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def _check_against_onnxruntime(path, model, feeds):
    """Each output within 1e-5 of onnxruntime's, relative to its scale (at least 1)."""
    want = oc.onnxruntime_run(path, feeds)
    got = model.predict(feeds[0] if len(feeds) == 1 else feeds)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=TOLERANCE * max(1.0, float(np.abs(w).max())))


def test_a_tensor_read_twice_is_a_fan_out(tmp_path):
    """Relu feeds Sigmoid and the Add after it: a graph the chain import refused."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    path = _save(tmp_path, nodes, {}, {"x": [3, 4]})
    model = bn.import_onnx(path)
    assert isinstance(model, bn.Model)
    assert [type(layer).__name__ for layer in model.layers] == ["ReLU", "Sigmoid", "Add"]
    _check_against_onnxruntime(path, model, [np.random.default_rng(0).standard_normal((5, 3, 4), np.float32)])


def test_nothing_is_folded_into_a_layer_whose_output_is_read_elsewhere(tmp_path):
    """MatMul's output feeds the Relu and the Add: the Relu stays a layer (folding it into the Dense would hand the
    Add the activated values); the same for a Conv's output and the BatchNormalization after it."""
    rng = np.random.default_rng(1)
    w, k = _weights(rng, (4, 4), (2, 2, 3, 3))
    stats = {n: rng.random(2).astype(np.float32) + 0.5 for n in ("g", "beta", "mean", "var")}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Add", ["h", "r"], ["y"])]
    path = _save(tmp_path, nodes, {"w": w}, {"x": [4]})
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "ReLU", "Add"]
    assert model.layers[0].activation.kind == "linear"
    _check_against_onnxruntime(path, model, [rng.standard_normal((5, 4), np.float32)])
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["n"]),
             helper.make_node("Sub", ["n", "c"], ["y"])]
    path = _save(tmp_path, nodes, {"k": k, **stats}, {"x": [2, 5, 5]}, name="conv.onnx")
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "BatchNormalization", "Subtract"]
    assert model.layers[1].axis == 1
    _check_against_onnxruntime(path, model, [rng.standard_normal((3, 2, 5, 5), np.float32)])


def test_two_inputs_two_outputs_and_every_join(tmp_path):
    """Sub, Mul, Max, Mean, Sum and Concat of computed tensors; one output also read by another node."""
    rng = np.random.default_rng(2)
    w1, w2, w3 = _weights(rng, (4, 5), (3, 5), (20, 2))
    nodes = [helper.make_node("MatMul", ["x1", "w1"], ["a"]), helper.make_node("MatMul", ["x2", "w2"], ["b"]),
             helper.make_node("Sub", ["a", "b"], ["d"]), helper.make_node("Mul", ["a", "b"], ["m"]),
             helper.make_node("Max", ["d", "m", "a"], ["mx"]), helper.make_node("Mean", ["a", "b"], ["avg"]),
             helper.make_node("Sum", ["a", "b", "d"], ["s"]),
             helper.make_node("Concat", ["mx", "avg", "s", "d"], ["cat"], axis=-1),
             helper.make_node("Tanh", ["cat"], ["y1"]), helper.make_node("MatMul", ["y1", "w3"], ["y2"])]
    path = _save(tmp_path, nodes, {"w1": w1, "w2": w2, "w3": w3}, {"x1": [4], "x2": [3]}, outputs=("y1", "y2"))
    model = bn.import_onnx(path)
    assert model.input_names == ["x1", "x2"] and len(model.outputs) == 2
    assert sorted(type(layer).__name__ for layer in model.layers) == sorted(
        ["Dense", "Dense", "Subtract", "Multiply", "Maximum", "Average", "Add", "Concatenate", "Tanh", "Dense"])
    _check_against_onnxruntime(path, model, [rng.standard_normal((6, 4), np.float32),
                                             rng.standard_normal((6, 3), np.float32)])


def test_concatenating_nchw_images_joins_their_channels(tmp_path):
    rng = np.random.default_rng(3)
    k1, k2, k3 = _weights(rng, (3, 2, 3, 3), (4, 2, 1, 1), (2, 7, 3, 3))
    nodes = [helper.make_node("Conv", ["x", "k1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "k2"], ["b"]), helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "k3"], ["y"])]
    path = _save(tmp_path, nodes, {"k1": k1, "k2": k2, "k3": k3}, {"x": [2, 6, 6]})
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "Conv2D", "Concatenate", "ReLU", "Conv2D"]
    assert model.layers[2].axis == 1
    _check_against_onnxruntime(path, model, [rng.standard_normal((4, 2, 6, 6), np.float32)])


def test_an_embedding_input_beside_a_float_input(tmp_path):
    rng = np.random.default_rng(4)
    table, w1, w2 = _weights(rng, (10, 3), (18, 2), (4, 2))
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"]), helper.make_node("Flatten", ["e"], ["f"]),
             helper.make_node("MatMul", ["f", "w1"], ["a"]), helper.make_node("MatMul", ["x", "w2"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["y"])]
    path = _save(tmp_path, nodes, {"table": table, "w1": w1, "w2": w2}, {"ids": [6], "x": [4]})
    model = bn.import_onnx(path)
    assert type(model.layers[0]).__name__ == "Embedding" and model.dtype == np.float32
    _check_against_onnxruntime(path, model, [rng.integers(0, 10, (5, 6)), rng.standard_normal((5, 4), np.float32)])


def test_sub_mul_add_of_per_channel_constants_is_a_batch_normalization(tmp_path):
    """(x - mean) * scale + shift with (C, 1, 1) constants on NCHW images: BatchNormalization(axis=1)."""
    rng = np.random.default_rng(8)
    k = _weights(rng, (3, 2, 3, 3))[0]
    inits = {"k": k, "mean": rng.standard_normal((3, 1, 1)).astype(np.float32),
             "scale": rng.random((3, 1, 1)).astype(np.float32) + 0.5,
             "shift": rng.standard_normal((3, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Sub", ["r", "mean"], ["d"]), helper.make_node("Mul", ["d", "scale"], ["m"]),
             helper.make_node("Add", ["shift", "m"], ["y"])]
    path = _save(tmp_path, nodes, inits, {"x": [2, 6, 6]})
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "BatchNormalization"]
    assert model.layers[1].axis == 1
    _check_against_onnxruntime(path, model, [rng.standard_normal((4, 2, 6, 6), np.float32)])


def test_an_imported_graph_saves_loads_and_fine_tunes(exported, tmp_path):
    path, _, x = exported("two_branch", "dynamo")
    model = bn.import_onnx(path)
    bn.save(model, tmp_path / "m.barenet")
    loaded = bn.load(tmp_path / "m.barenet")
    X = np.random.default_rng(5).standard_normal((40, *x.shape[1:]), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.metadata["imported_from"]["format"] == "onnx"
    y = np.random.default_rng(6).integers(0, oc.CLASSES, len(X))
    loaded.compile(loss=bn.losses.CategoricalCrossentropy(from_logits=True), optimizer=bn.optimizers.Adam(0.01))
    losses = loaded.fit(X, y, epochs=5, batch_size=10, verbose=0).history["loss"]
    assert losses[-1] < losses[0]


def test_barenet_graph_to_onnx_to_barenet_keeps_weights_and_predictions(tmp_path):
    """A channels-last residual CNN with a concatenated side branch, exported by barenet and imported back."""
    x = bn.Input((8, 8, 3), name="image")
    h = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    r = L.Conv2D(4, 3, padding="same")(h)
    s = L.Add()([h, r])
    side = L.Conv2D(2, 1)(x)
    c = L.Concatenate()([s, side])
    out = L.Dense(3)(L.Flatten()(L.MaxPooling2D(2)(c)))
    model = bn.Model(x, out, seed=3)
    bn.export_onnx(model, tmp_path / "m.onnx")
    back = bn.import_onnx(tmp_path / "m.onnx")
    assert isinstance(back, bn.Model)
    assert sorted(type(layer).__name__ for layer in back.layers) == sorted(type(layer).__name__ for layer in
                                                                            model.layers)
    assert sorted(w.tobytes() for w in back.get_weights()) == sorted(w.tobytes() for w in model.get_weights())
    X = np.random.default_rng(7).standard_normal((5, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(back.predict(X), model.predict(X), rtol=0, atol=1e-6)


GRAPH_REFUSALS = {
    "an input no output needs": (
        [helper.make_node("Relu", ["x"], ["y"])], {}, {"x": [3], "unused": [3]},
        r"graph input\(s\) \['unused'\] reach no graph output"),
    "an output that is an input": (
        [helper.make_node("Relu", ["x"], ["y"])], {}, {"x": [3]},
        "graph output 'x' is a graph input, unchanged"),
    "division by a constant": (
        [helper.make_node("Div", ["x", "two"], ["y"])], {"two": np.float32(2)}, {"x": [3]},
        "'Div' node 'y' divides the data path by a constant; barenet has no layer for that"),
    "concatenation with a constant": (
        [helper.make_node("Concat", ["x", "c"], ["y"], axis=1)], {"c": np.ones((1, 3), np.float32)}, {"x": [3]},
        "'Concat' node 'y' concatenates the data path with constants"),
    "concatenation along the batch": (
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Concat", ["x", "a"], ["y"], axis=0)], {},
        {"x": [3]}, r"'Concat' node 'y' concatenates along axis 0 of ONNX shape \[batch, 3\]"),
    "a cast to another float type": (
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)], {}, {"x": [3]},
        r"'Cast' node 'y' casts the data path \(float32\) to ONNX type 11; barenet imports a Cast only to the "
        "type the data already has"),
    "a constant subtracted that is not one value per feature": (
        [helper.make_node("Sub", ["x", "c"], ["y"])], {"c": np.ones((2, 3), np.float32)}, {"x": [2, 3]},
        r"'Sub' node 'y' subtracts a constant of shape \(2, 3\) on the data path \[batch, 2, 3\]; barenet imports one "
        "value per feature or channel"),
    "a scale without the Sub before it": (
        [helper.make_node("Mul", ["x", "c"], ["y"])], {"c": np.ones(3, np.float32)}, {"x": [3]},
        "'Mul' node 'y' multiplies the data path by a constant"),
    "a bias added to a MatMul another node also reads": (
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"]),
         helper.make_node("Relu", ["h"], ["r"]), helper.make_node("Add", ["y", "r"], ["z"])],
        {"w": np.ones((3, 2), np.float32), "b": np.ones(2, np.float32)}, {"x": [3]},
        "'Add' node 'y' adds a constant to the data path other than as the bias of a MatMul or Conv right before it "
        "whose output nothing else reads"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_REFUSALS))
def test_graph_refusals_name_the_problem(tmp_path, case):
    nodes, inits, inputs, message = GRAPH_REFUSALS[case]
    outputs = ("z",) if case.startswith("a bias") else ("x", "y") if "is an input" in case else ("y",)
    path = _save(tmp_path, nodes, inits, inputs, outputs=outputs)
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(path)
