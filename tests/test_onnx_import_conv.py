"""bn.import_onnx of grouped, depthwise and 1-d convolutions, explicit padding and Pad nodes.

PyTorch modules from tests/onnx_cases.py, exported with ``dynamo=False`` (with and without constant folding,
so that BatchNormalization nodes after depthwise and 1-d convolutions are folded by the importer) and by the
default exporter, must give onnxruntime's predictions to 1e-5 relative; barenet models written by
``bn.export_onnx`` must come back with the same layers, weights and predictions.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ModelFileError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
import onnx_cases as oc  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

L = bn.layers

EXPORTS = [("mobilenet_block", "legacy"), ("mobilenet_block", "legacy-unfolded"), ("padded_cnn", "legacy"),
           ("conv1d_net", "legacy-unfolded"), ("conv1d_net", "dynamo")]
LAYERS = {
    "mobilenet_block": ["Conv2D", "Conv2D", "DepthwiseConv2D", "DepthwiseConv2D", "Conv2D", "GlobalAveragePooling2D",
                        "Dense"],
    "padded_cnn": ["Conv2D", "MaxPooling2D", "AveragePooling2D", "Conv2D", "Flatten", "Dense"],
    "conv1d_net": ["Conv1D", "Conv1D", "Conv1D", "Flatten", "Dense"],
}


def _assert_close_to(got: np.ndarray, want: np.ndarray) -> None:
    """Within 1e-5 of the largest value."""
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-5 * max(1.0, float(np.max(np.abs(want))))


@pytest.mark.parametrize(("name", "exporter"), EXPORTS, ids=[f"{m}-{e}" for m, e in EXPORTS])
def test_pytorch_export_imports_and_predicts_what_onnxruntime_does(tmp_path, name, exporter):
    path = tmp_path / "m.onnx"
    net, x = oc.export(name, path, exporter)
    model = bn.import_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == LAYERS[name]
    X = np.random.default_rng(3).standard_normal((9, *x.shape[1:])).astype(np.float32)
    _assert_close_to(model.predict(X), ort.InferenceSession(str(path)).run(None, {"x": X})[0])
    _assert_close_to(model.predict(X), oc.torch_predict(net, X))


def test_imported_layers_take_the_graphs_settings(tmp_path):
    oc.export("mobilenet_block", tmp_path / "a.onnx", "legacy")
    grouped, _, depthwise, multiplied = bn.import_onnx(tmp_path / "a.onnx").layers[:4]
    assert grouped.groups == 2 and grouped.padding == "same"
    assert depthwise.depth_multiplier == 1 and depthwise.strides == (2, 2) and depthwise.padding == (1, 1)
    assert multiplied.depth_multiplier == 2 and multiplied.dilation_rate == (1, 2)
    oc.export("padded_cnn", tmp_path / "b.onnx", "legacy")
    conv, maxpool, avgpool, conv2 = bn.import_onnx(tmp_path / "b.onnx").layers[:4]
    assert conv.padding == ((0, 1), (0, 1)) and conv2.padding == ((2, 0), (1, 2))  # the ZeroPad2d amounts
    assert maxpool.padding == (1, 1) and avgpool.count_include_pad
    oc.export("conv1d_net", tmp_path / "c.onnx", "legacy")
    first, causal, strided = bn.import_onnx(tmp_path / "c.onnx").layers[:3]
    assert first.data_format == "channels_first" and first.padding == "same"
    assert causal.padding == "causal" and causal.groups == 4 and causal.dilation_rate == 2
    assert strided.strides == 2


def _roundtrip_models():
    return {
        "grouped-asymmetric": lambda: [L.Conv2D(6, 3, groups=3, padding=((0, 2), (1, 0)), strides=2,
                                                activation="relu", input_shape=(9, 8, 6)), L.Conv2D(4, 2, groups=2)],
        "depthwise": lambda: [L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, input_shape=(7, 8, 3)),
                              L.BatchNormalization(), L.DepthwiseConv2D(2, strides=2, activation="relu")],
        "conv1d": lambda: [L.Conv1D(4, 3, padding="causal", dilation_rate=2, input_shape=(9, 3)),
                           L.Conv1D(4, 2, strides=2, groups=2, activation="tanh"), L.Flatten(), L.Dense(2)],
        "conv1d-first": lambda: [L.Conv1D(4, 3, padding=(2, 1), data_format="channels_first", input_shape=(3, 9)),
                                 L.Flatten(), L.Dense(2)],
        "pools": lambda: [L.MaxPooling2D(3, strides=2, padding=((1, 0), 1), input_shape=(8, 9, 2)),
                          L.AveragePooling2D(3, strides=1, padding=1, count_include_pad=True),
                          L.AveragePooling2D(2, padding=((1, 0), (0, 1)))],
    }


@pytest.mark.parametrize("name", sorted(_roundtrip_models()))
def test_barenet_to_onnx_to_barenet_keeps_layers_weights_and_predictions(tmp_path, name):
    model = bn.Sequential(_roundtrip_models()[name](), seed=1)
    model.build()
    rng = np.random.default_rng(4)
    for layer in model.layers:
        for key, value in {**layer.params, **layer.buffers}.items():
            value[...] = rng.uniform(0.5, 1.5, value.shape) if "variance" in key else rng.normal(0, 0.5, value.shape)
    bn.export_onnx(model, tmp_path / "m.onnx")
    back = bn.import_onnx(tmp_path / "m.onnx")
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in model.layers]
    for a, b in zip(model.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    X = rng.normal(size=(9, *model.input_shape)).astype(np.float32)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_separable_conv2d_comes_back_as_depthwise_then_pointwise(tmp_path):
    model = bn.Sequential([L.SeparableConv2D(5, 3, padding="same", depth_multiplier=2, activation="relu",
                                             input_shape=(6, 7, 3))], seed=1)
    model.build()
    model.layers[0].params["bias"][...] = 0.3
    bn.export_onnx(model, tmp_path / "m.onnx")
    back = bn.import_onnx(tmp_path / "m.onnx")
    assert [type(layer).__name__ for layer in back.layers] == ["DepthwiseConv2D", "Conv2D"]
    X = np.random.default_rng(0).standard_normal((5, 6, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(back.predict(X), model.predict(X), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------- hand-built graphs
def _save(tmp_path, nodes, inits, x_shape, *, opset=17):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *x_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    path = tmp_path / "g.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString())
    return path


W = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
PADS = np.array([0, 0, 1, 2, 0, 0, 0, 1], dtype=np.int64)


def test_pad_with_axes_and_same_lower_match_onnxruntime(tmp_path):
    nodes = [helper.make_node("Pad", ["x", "p", "", "a"], ["t"]),
             helper.make_node("Conv", ["t", "w"], ["c"], strides=[2, 1]),
             helper.make_node("Conv", ["c", "w2"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2], group=2)]
    inits = {"p": np.array([1, 0, 2, 2], dtype=np.int64), "a": np.array([-1, 2], dtype=np.int64), "w": W,
             "w2": np.random.default_rng(1).standard_normal((4, 2, 2, 3)).astype(np.float32)}
    path = _save(tmp_path, nodes, inits, [2, 7, 6], opset=18)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bn.import_onnx(path)
    assert model.layers[0].padding == ((0, 2), (1, 2)) and model.layers[1].groups == 2
    X = np.random.default_rng(2).standard_normal((3, 2, 7, 6)).astype(np.float32)
    _assert_close_to(model.predict(X), ort.InferenceSession(str(path)).run(None, {"x": X})[0])


REFUSALS = {
    "reflect": ([helper.make_node("Pad", ["x", "p"], ["t"], mode="reflect"),
                 helper.make_node("Conv", ["t", "w"], ["y"])], "pads with mode 'reflect' or a value other than 0"),
    "non-zero value": ([helper.make_node("Pad", ["x", "p", "v"], ["t"]), helper.make_node("Conv", ["t", "w"], ["y"])],
                       "pads with mode 'constant' or a value other than 0"),
    "of the channels": ([helper.make_node("Pad", ["x", "c"], ["t"]), helper.make_node("Conv", ["t", "w"], ["y"])],
                        r"pads \[0, 1, 0, 0, 0, 0, 0, 0\] a 4-d tensor; barenet imports zero padding that adds to "
                        "the spatial axes"),
    "cropping": ([helper.make_node("Pad", ["x", "n"], ["t"]), helper.make_node("Conv", ["t", "w"], ["y"])],
                 "barenet imports zero padding that adds to the spatial axes"),
    "wrong group": ([helper.make_node("Conv", ["x", "w"], ["y"], group=2)],
                    r"has weights \(4, 2, 3, 3\) in 2 group\(s\) for 2-channel images"),
    "pads as wide as the window": ([helper.make_node("Conv", ["x", "w"], ["y"], pads=[3, 0, 0, 0])],
                                   r"has pads \[3, 0, 0, 0\], which barenet's Conv layer cannot express \(it pads "
                                   r"fewer pixels than its 3x3 window spans on each side\)"),
    "pool padding as wide as the window": ([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2],
                                                             pads=[0, 2, 0, 0])], "which barenet's MaxPool layer"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_the_problem(tmp_path, case):
    nodes, message = REFUSALS[case]
    inits = {"p": PADS, "w": W, "v": np.array(1.0, dtype=np.float32),
             "c": np.array([0, 1, 0, 0, 0, 0, 0, 0], dtype=np.int64),
             "n": np.array([0, 0, -1, 0, 0, 0, 0, 0], dtype=np.int64)}
    path = _save(tmp_path, nodes, {k: v for k, v in inits.items() if any(k in n.input for n in nodes)}, [2, 6, 6])
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(path)


def test_pad_of_opset_10_is_refused_by_name(tmp_path):
    nodes = [helper.make_node("Pad", ["x"], ["t"], pads=[0, 0, 1, 1, 0, 0, 1, 1]),
             helper.make_node("Conv", ["t", "w"], ["y"])]
    path = _save(tmp_path, nodes, {"w": W}, [2, 6, 6], opset=10)
    with pytest.raises(ModelFileError, match="has attribute 'pads', which barenet does not know for a Pad at opset 10"):
        bn.import_onnx(path)


@pytest.mark.parametrize("nodes", [
    [helper.make_node("Pad", ["x", "p"], ["t"]), helper.make_node("Relu", ["t"], ["y"])],
    [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Pad", ["r", "p"], ["y"])],
], ids=["before an activation", "at the end"])
def test_a_pad_read_by_anything_but_a_conv_is_a_zero_padding_layer(tmp_path, nodes):
    ort = pytest.importorskip("onnxruntime")
    path = _save(tmp_path, nodes, {"p": PADS}, [2, 6, 6])
    model = bn.import_onnx(path)
    assert any(isinstance(layer, bn.layers.ZeroPadding2D) for layer in model.layers)
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6)).astype(np.float32)
    expected = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-6, atol=1e-6)
