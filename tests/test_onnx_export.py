"""ONNX export checked by onnxruntime: every layer and its options, whole networks, refusals, metadata.

Each case builds a tiny model, sets every parameter and buffer to random values (so biases, moving
statistics and recurrent weights all matter), exports it and compares onnxruntime's output with
``model.predict`` on random inputs, in float32 (to 1e-5) and float64 (to 1e-10), batches of 1 and 257.
``python tests/test_onnx_export.py`` prints the largest difference seen per layer type.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import barenet as bn  # noqa: E402
from barenet import layers as L  # noqa: E402
from barenet.onnx import OnnxExportError, to_onnx  # noqa: E402

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}
BATCHES = (1, 257)
IMG = (6, 7, 3)  # a small channels-last image; odd width exercises asymmetric "same" padding
SEQ = (5, 3)  # (time, features)


def _img(**kw):
    return {"input_shape": IMG, **kw}


def _first(**kw):
    return {"input_shape": (IMG[2], IMG[0], IMG[1]), "data_format": "channels_first", **kw}


# (id, layer type reported, layers builder, sample shape or ("ids", vocab, time))
CASES = [
    *[(f"dense-{a}", "Dense", lambda a=a: [L.Dense(4, a, input_dim=5)], (5,))
      for a in ("linear", "relu", "sigmoid", "tanh", "softmax", "elu", "gelu")],
    ("dense-leaky", "Dense", lambda: [L.Dense(4, L.LeakyReLU(alpha=0.2), input_dim=5)], (5,)),
    ("dense-nobias", "Dense", lambda: [L.Dense(4, use_bias=False, input_dim=5)], (5,)),
    ("dense-sequence", "Dense", lambda: [L.Dense(4, "relu", input_shape=SEQ)], SEQ),
    *[(f"activation-{cls.__name__}", cls.__name__, lambda cls=cls: [cls(input_shape=(6,))], (6,))
      for cls in (L.Linear, L.ReLU, L.Sigmoid, L.Tanh, L.Softmax, L.GELU)],
    ("activation-LeakyReLU", "LeakyReLU", lambda: [L.LeakyReLU(0.3, input_shape=(6,))], (6,)),
    ("activation-ELU", "ELU", lambda: [L.ELU(0.7, input_shape=(6,))], (6,)),
    ("dropout", "Dropout", lambda: [L.Dense(4, input_dim=5), L.Dropout(0.5)], (5,)),
    ("random-flip", "RandomFlip", lambda: [L.RandomFlip("horizontal_and_vertical", **_img())], IMG),
    ("random-translation", "RandomTranslation", lambda: [L.RandomTranslation(0.2, 0.3, **_img())], IMG),
    ("batchnorm-2d", "BatchNormalization", lambda: [L.BatchNormalization(input_shape=(5,))], (5,)),
    ("batchnorm-3d", "BatchNormalization", lambda: [L.BatchNormalization(input_shape=SEQ)], SEQ),
    ("batchnorm-4d", "BatchNormalization", lambda: [L.BatchNormalization(epsilon=1e-5, **_img())], IMG),
    ("conv-valid", "Conv2D", lambda: [L.Conv2D(4, 3, **_img())], IMG),
    ("conv-same-stride", "Conv2D", lambda: [L.Conv2D(4, 3, strides=2, padding="same", activation="relu", **_img())],
     IMG),
    ("conv-explicit", "Conv2D", lambda: [L.Conv2D(2, (2, 3), strides=(2, 1), padding=(1, 2), **_img())], IMG),
    ("conv-dilation", "Conv2D", lambda: [L.Conv2D(3, 2, dilation_rate=(2, 1), padding="same", **_img())], IMG),
    ("conv-nobias", "Conv2D", lambda: [L.Conv2D(3, 3, use_bias=False, activation="tanh", **_img())], IMG),
    ("conv-first", "Conv2D", lambda: [L.Conv2D(4, 3, padding="same", strides=2, **_first())],
     (IMG[2], IMG[0], IMG[1])),
    ("conv-asymmetric", "Conv2D", lambda: [L.Conv2D(3, 3, strides=2, padding=((0, 2), (1, 0)), **_img())], IMG),
    ("conv-asymmetric-first", "Conv2D", lambda: [L.Conv2D(2, (2, 3), padding=((1, 0), 2), **_first())],
     (IMG[2], IMG[0], IMG[1])),
    ("conv-groups", "Conv2D", lambda: [L.Conv2D(6, 3, groups=3, padding="same", activation="relu", **_img())], IMG),
    ("conv-groups-first", "Conv2D", lambda: [L.Conv2D(4, 2, strides=2, groups=2, use_bias=False,
                                                      **_first(input_shape=(4, IMG[0], IMG[1])))], (4, IMG[0], IMG[1])),
    ("conv1d", "Conv1D", lambda: [L.Conv1D(4, 3, activation="relu", input_shape=SEQ)], SEQ),
    ("conv1d-causal-dilated", "Conv1D", lambda: [L.Conv1D(3, 2, padding="causal", dilation_rate=2, input_shape=SEQ)],
     SEQ),
    ("conv1d-same-strided-groups", "Conv1D", lambda: [L.Conv1D(4, 3, strides=2, padding="same", groups=2,
                                                               input_shape=(7, 4))], (7, 4)),
    ("conv1d-first-padding", "Conv1D", lambda: [L.Conv1D(2, 3, padding=(2, 1), use_bias=False,
                                                         data_format="channels_first", input_shape=(3, 5))], (3, 5)),
    ("depthwise", "DepthwiseConv2D", lambda: [L.DepthwiseConv2D(3, activation="relu", **_img())], IMG),
    ("depthwise-multiplier-same", "DepthwiseConv2D", lambda: [L.DepthwiseConv2D(3, strides=2, padding="same",
                                                                                depth_multiplier=2, **_img())], IMG),
    ("depthwise-first-asymmetric", "DepthwiseConv2D",
     lambda: [L.DepthwiseConv2D(2, padding=((1, 0), (0, 2)), dilation_rate=(2, 1), use_bias=False, **_first())],
     (IMG[2], IMG[0], IMG[1])),
    ("separable", "SeparableConv2D", lambda: [L.SeparableConv2D(4, 3, activation="tanh", **_img())], IMG),
    ("separable-multiplier-same", "SeparableConv2D", lambda: [L.SeparableConv2D(5, (3, 2), strides=(2, 1),
                                                                                padding="same", depth_multiplier=2,
                                                                                **_img())], IMG),
    ("separable-first", "SeparableConv2D", lambda: [L.SeparableConv2D(2, 2, padding=1, use_bias=False, **_first())],
     (IMG[2], IMG[0], IMG[1])),
    ("maxpool-valid", "MaxPooling2D", lambda: [L.MaxPooling2D(2, **_img())], IMG),
    ("maxpool-same", "MaxPooling2D", lambda: [L.MaxPooling2D(3, strides=2, padding="same", **_img())], IMG),
    ("maxpool-first", "MaxPooling2D", lambda: [L.MaxPooling2D(2, strides=1, **_first())], (IMG[2], IMG[0], IMG[1])),
    ("avgpool-valid", "AveragePooling2D", lambda: [L.AveragePooling2D((2, 3), **_img())], IMG),
    ("avgpool-same", "AveragePooling2D", lambda: [L.AveragePooling2D(3, strides=2, padding="same", **_img())], IMG),
    ("avgpool-first", "AveragePooling2D", lambda: [L.AveragePooling2D(2, padding="same", **_first())],
     (IMG[2], IMG[0], IMG[1])),
    ("maxpool-padding", "MaxPooling2D", lambda: [L.MaxPooling2D(3, strides=2, padding=((2, 0), 1), **_img())], IMG),
    ("avgpool-padding", "AveragePooling2D", lambda: [L.AveragePooling2D(3, strides=2, padding=(1, 2), **_img())], IMG),
    ("avgpool-padding-counted", "AveragePooling2D",
     lambda: [L.AveragePooling2D((3, 2), strides=1, padding=((2, 0), (1, 1)), count_include_pad=True, **_img())], IMG),
    ("gap-last", "GlobalAveragePooling2D", lambda: [L.GlobalAveragePooling2D(**_img())], IMG),
    ("gap-first", "GlobalAveragePooling2D", lambda: [L.GlobalAveragePooling2D(**_first())], (IMG[2], IMG[0], IMG[1])),
    ("flatten-last", "Flatten", lambda: [L.Conv2D(2, 3, **_img()), L.Flatten(), L.Dense(3)], IMG),
    ("flatten-first", "Flatten", lambda: [L.Conv2D(2, 3, **_first()), L.Flatten(), L.Dense(3)],
     (IMG[2], IMG[0], IMG[1])),
    ("reshape", "Reshape", lambda: [L.Reshape((2, 2, 3), input_shape=(12,)), L.Conv2D(2, 2)], (12,)),
    ("reshape-infer", "Reshape", lambda: [L.Reshape((-1, 4), input_shape=(12,)), L.Dense(2)], (12,)),
    ("embedding", "Embedding", lambda: [L.Embedding(11, 4, input_length=6)], ("ids", 11, 6)),
    ("embedding-after-reshape", "Embedding", lambda: [L.Reshape((3, 2), input_shape=(6,)), L.Embedding(11, 4)],
     ("float_ids", 11, 6)),
    ("position-embedding", "PositionEmbedding", lambda: [L.PositionEmbedding(7, input_shape=SEQ)], SEQ),
    ("sinusoidal-position-encoding", "SinusoidalPositionEncoding",
     lambda: [L.Dense(4, input_shape=SEQ), L.SinusoidalPositionEncoding(), L.Dense(2)], SEQ),
    ("token-and-position-embedding", "TokenAndPositionEmbedding",
     lambda: [L.TokenAndPositionEmbedding(11, 8, 4, input_shape=(6,))], ("ids", 11, 6)),
    ("token-and-position-after-reshape", "TokenAndPositionEmbedding",
     lambda: [L.Reshape((3, 2), input_shape=(6,)), L.TokenAndPositionEmbedding(11, 2, 4)], ("float_ids", 11, 6)),
    *[(f"simplernn-{a}-{s}", "SimpleRNN", lambda a=a, s=s: [L.SimpleRNN(4, a, return_sequences=s, input_shape=SEQ)],
       SEQ) for a in ("tanh", "relu", "gelu") for s in (False, True)],
    *[(f"lstm-{s}", "LSTM", lambda s=s: [L.LSTM(4, return_sequences=s, input_shape=SEQ)], SEQ) for s in (False, True)],
    *[(f"gru-after{r}-{s}", "GRU", lambda r=r, s=s: [L.GRU(4, reset_after=r, return_sequences=s, input_shape=SEQ)],
       SEQ) for r in (True, False) for s in (False, True)],
    ("bi-lstm-concat-seq", "Bidirectional", lambda: [L.Bidirectional(L.LSTM(3, return_sequences=True),
                                                                     input_shape=SEQ)], SEQ),
    ("bi-gru-sum", "Bidirectional", lambda: [L.Bidirectional(L.GRU(3), "sum", input_shape=SEQ)], SEQ),
    ("bi-gru-before-concat", "Bidirectional", lambda: [L.Bidirectional(L.GRU(3, reset_after=False), "concat",
                                                                       input_shape=SEQ)], SEQ),
    ("bi-rnn-mul-seq", "Bidirectional", lambda: [L.Bidirectional(L.SimpleRNN(3, return_sequences=True), "mul",
                                                                 input_shape=SEQ)], SEQ),
    ("bi-lstm-ave", "Bidirectional", lambda: [L.Bidirectional(L.LSTM(3), "ave", input_shape=SEQ)], SEQ),
    ("bi-gru-ave-seq", "Bidirectional", lambda: [L.Bidirectional(L.GRU(3, return_sequences=True), "ave",
                                                                 input_shape=SEQ)], SEQ),
    *[(f"dense-{a}", "Dense", lambda a=a: [L.Dense(4, a, input_dim=5)], (5,))
      for a in ("silu", "softplus", "relu6", "hard_sigmoid", "hard_swish", "mish")],
    ("dense-gelu-tanh", "Dense", lambda: [L.Dense(4, L.GELU(approximate=True), input_dim=5)], (5,)),
    *[(f"activation-{cls.__name__}", cls.__name__, lambda cls=cls: [L.Dense(6, input_dim=4), cls()], (4,))
      for cls in (L.SiLU, L.Softplus, L.ReLU6, L.HardSigmoid, L.HardSwish, L.Mish)],
    ("activation-GELU-tanh", "GELU", lambda: [L.GELU(approximate=True, input_shape=(6,))], (6,)),
    ("simplernn-silu", "SimpleRNN", lambda: [L.SimpleRNN(4, "silu", input_shape=SEQ)], SEQ),
    ("layernorm", "LayerNormalization", lambda: [L.LayerNormalization(input_shape=(5,))], (5,)),
    ("layernorm-sequence", "LayerNormalization", lambda: [L.LayerNormalization(epsilon=1e-5, input_shape=SEQ)], SEQ),
    ("layernorm-image", "LayerNormalization", lambda: [L.LayerNormalization([1, 2, 3], **_img())], IMG),
    ("layernorm-axes-1-3", "LayerNormalization", lambda: [L.LayerNormalization([1, 3], **_img())], IMG),
    ("layernorm-plain", "LayerNormalization", lambda: [L.LayerNormalization(center=False, scale=False,
                                                                            input_shape=SEQ)], SEQ),
    ("layernorm-no-center", "LayerNormalization", lambda: [L.LayerNormalization(center=False, input_shape=SEQ)],
     SEQ),
    ("gmp-last", "GlobalMaxPooling2D", lambda: [L.GlobalMaxPooling2D(**_img())], IMG),
    ("gmp-first", "GlobalMaxPooling2D", lambda: [L.GlobalMaxPooling2D(**_first())], (IMG[2], IMG[0], IMG[1])),
    ("maxpool1d-valid", "MaxPooling1D", lambda: [L.MaxPooling1D(2, input_shape=SEQ)], SEQ),
    ("maxpool1d-same", "MaxPooling1D", lambda: [L.MaxPooling1D(3, strides=2, padding="same", input_shape=(6, 3))],
     (6, 3)),
    ("maxpool1d-first", "MaxPooling1D", lambda: [L.MaxPooling1D(2, 1, data_format="channels_first",
                                                                input_shape=SEQ)], SEQ),
    ("avgpool1d-valid", "AveragePooling1D", lambda: [L.AveragePooling1D(2, input_shape=SEQ)], SEQ),
    ("avgpool1d-same", "AveragePooling1D", lambda: [L.AveragePooling1D(3, strides=2, padding="same",
                                                                       input_shape=(6, 3))], (6, 3)),
    ("avgpool1d-first", "AveragePooling1D", lambda: [L.AveragePooling1D(2, padding="same",
                                                                        data_format="channels_first",
                                                                        input_shape=SEQ)], SEQ),
    ("gap1d", "GlobalAveragePooling1D", lambda: [L.GlobalAveragePooling1D(input_shape=SEQ)], SEQ),
    ("gap1d-first", "GlobalAveragePooling1D", lambda: [L.GlobalAveragePooling1D(data_format="channels_first",
                                                                                input_shape=SEQ)], SEQ),
    ("gmp1d", "GlobalMaxPooling1D", lambda: [L.GlobalMaxPooling1D(input_shape=SEQ)], SEQ),
    ("gmp1d-first", "GlobalMaxPooling1D", lambda: [L.GlobalMaxPooling1D(data_format="channels_first",
                                                                        input_shape=SEQ)], SEQ),
    ("upsampling-nearest", "UpSampling2D", lambda: [L.UpSampling2D((2, 3), **_img())], IMG),
    ("upsampling-bilinear", "UpSampling2D", lambda: [L.UpSampling2D((3, 2), "bilinear", **_img())], IMG),
    ("upsampling-first", "UpSampling2D", lambda: [L.UpSampling2D(2, "bilinear", **_first())],
     (IMG[2], IMG[0], IMG[1])),
    ("zeropadding", "ZeroPadding2D", lambda: [L.ZeroPadding2D(1, **_img()), L.Conv2D(2, 3)], IMG),
    ("zeropadding-asymmetric", "ZeroPadding2D", lambda: [L.ZeroPadding2D(((0, 2), (3, 1)), **_img())], IMG),
    ("zeropadding-first", "ZeroPadding2D", lambda: [L.ZeroPadding2D((2, 1), **_first())], (IMG[2], IMG[0], IMG[1])),
    ("cropping1d", "Cropping1D", lambda: [L.Cropping1D((1, 2), input_shape=SEQ), L.Dense(2)], SEQ),
    ("cropping1d-first-step", "Cropping1D", lambda: [L.Cropping1D((0, SEQ[0] - 1), input_shape=SEQ)], SEQ),
]


def randomize(model: bn.Sequential, seed: int = 0, *, keep_kernels: bool = False) -> bn.Sequential:
    """Every parameter and buffer of ``model`` set to random values (variances kept positive); with
    ``keep_kernels`` the kernels keep their fan-scaled initial values, so that deep or wide networks keep
    outputs of order one."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for sub in (layer, getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)):
            if sub is None:
                continue
            for store in (sub.params, sub.buffers):
                for name, value in store.items():
                    if keep_kernels and name.endswith("kernel"):
                        continue
                    low = 0.5 if "variance" in name else -0.5
                    value[...] = rng.uniform(low, 1.5 if "variance" in name else 0.5, value.shape)
    return model


def inputs(sample, batch: int, dtype, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed + batch)
    if sample[0] in ("ids", "float_ids"):  # token ids, as int64 or (past the first layer) in the model's dtype
        return rng.integers(0, sample[1], (batch, sample[2])).astype(np.int64 if sample[0] == "ids" else dtype)
    return rng.normal(0, 1.0, (batch, *sample)).astype(dtype)


def max_difference(model: bn.Sequential, sample, proto=None) -> float:
    """Largest |onnxruntime - predict| over batches of 1 and 257."""
    proto = to_onnx(model) if proto is None else proto
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in BATCHES:
        x = inputs(sample, batch, model.dtype)
        (got,) = session.run(None, {"input": x})
        want = model.predict(x)
        assert got.dtype == want.dtype and got.shape == want.shape
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - want))))
    return worst


def _case_model(builder, dtype) -> bn.Sequential:
    model = bn.Sequential(builder(), seed=0, dtype=dtype)
    model.build()
    return randomize(model)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("builder", "sample"), [pytest.param(c[2], c[3], id=c[0]) for c in CASES])
def test_layer_matches_predict(builder, sample, dtype):
    model = _case_model(builder, dtype)
    assert max_difference(model, sample) <= TOLERANCE[dtype]


def test_every_layer_type_is_covered():
    """A new layer class needs a converter and a row in CASES."""
    from barenet.onnx import supported_layers

    exported = {c[1] for c in CASES}
    concrete = {name for name in L.__all__ if isinstance(getattr(L, name), type)} - {"Activation", "Cache",
                                                                                       "Layer", "Recurrent"}
    # layers of several inputs are exported inside graphs: tests/test_graph.py, tests/test_multi_head_attention.py
    concrete -= {name for name in concrete if issubclass(getattr(L, name), L.Merge)} | {"MultiHeadAttention"}
    assert concrete <= set(supported_layers())
    assert concrete <= exported


def test_graph_passes_full_check_with_dynamic_batch():
    model = _case_model(lambda: [L.Conv2D(2, 3, **_img()), L.MaxPooling2D(2), L.Flatten(), L.Dense(3, "softmax")],
                        "float32")
    proto = to_onnx(model, opset=18)
    onnx.checker.check_model(proto, full_check=True)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert out.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == list(IMG)
    # channels-last: one Transpose into NCHW before Conv, one back before Flatten; none between Conv and MaxPool
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 2
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {18}


def _example(name: str):
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _networks():
    def digits():
        model = _example("digits").build_model(dropout=0.2, learning_rate=1e-3, seed=0)
        model.build()
        return model, (64,)

    def fashion_mlp():
        model = bn.Sequential([L.Dense(256, "relu", input_dim=784), L.Dense(128, "relu"), L.Dense(10, "softmax")])
        model.build()
        return model, (784,)

    def fashion_cnn():
        model = _example("fashion_cnn").build_model(seed=0)
        model.build()
        return model, (28, 28, 1)

    def weather_lstm():
        model = bn.Sequential([L.LSTM(16, input_shape=(14, 3)), L.Dense(1)], seed=0)
        model.build()
        return model, (14, 3)

    def text_bigru():
        model = bn.Sequential([L.Embedding(50, 8, input_length=12), L.Bidirectional(L.GRU(6)), L.Dense(3, "softmax")],
                              seed=0)
        model.build()
        return model, ("ids", 50, 12)

    return {f.__name__: f for f in (digits, fashion_mlp, fashion_cnn, weather_lstm, text_bigru)}


@pytest.mark.parametrize("name", list(_networks()))
def test_whole_network_matches_predict(name):
    model, sample = _networks()[name]()
    randomize(model, keep_kernels=True)
    assert max_difference(model, sample) <= TOLERANCE["float32"]


def test_float64_network_stays_float64():
    model = _case_model(lambda: [L.LSTM(3, input_shape=SEQ), L.Dense(2, "softmax")], "float64")
    proto = to_onnx(model)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert all(t.data_type == onnx.TensorProto.DOUBLE for t in proto.graph.initializer
               if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE))
    assert max_difference(model, SEQ) <= TOLERANCE["float64"]


class Doubling(L.Layer):
    """A user's own layer, which has no ONNX form."""

    def forward(self, x, *, training=False, cache=None):
        return 2 * x

    def backward(self, grad, cache):
        return 2 * grad


class WiderDense(L.Dense):
    """A subclass of a known layer: its forward may differ, so it is not exported as a Dense."""


@pytest.mark.parametrize("layer", [Doubling(), WiderDense(3)], ids=["custom", "subclass"])
def test_layer_without_converter_is_refused_by_name(layer):
    model = bn.Sequential([L.Dense(4, input_dim=3), layer])
    model.build()
    with pytest.raises(OnnxExportError, match=rf"layer {type(layer).__name__} \(.*\) has no ONNX form; exportable "
                                              r"layers are \[.*'AveragePooling2D'"):
        to_onnx(model)


def test_unbuilt_model_and_bad_opset_are_refused(tmp_path):
    with pytest.raises(bn.errors.NotFittedError, match="not built"):
        to_onnx(bn.Sequential([L.Dense(2)]))
    model = _case_model(lambda: [L.Dense(2, input_dim=2)], "float32")
    for opset in (12, 10_000, "21", True):
        with pytest.raises(OnnxExportError, match="opset must be an integer from 13"):
            bn.export_onnx(model, tmp_path / "m.onnx", opset=opset)
    assert not (tmp_path / "m.onnx").exists()


def test_export_into_a_missing_folder_is_a_barenet_error_naming_it(tmp_path):
    model = _case_model(lambda: [L.Dense(2, input_dim=2)], "float32")
    with pytest.raises(bn.errors.OutputError) as caught:
        bn.export_onnx(model, tmp_path / "nodir" / "x.onnx")
    assert f"folder {str(tmp_path / 'nodir')!r} does not exist" in str(caught.value)
    with pytest.raises(bn.errors.OutputError, match="is a folder; give a file name"):
        bn.export_onnx(model, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["022", "077"])
def test_export_is_whole_with_the_permissions_of_a_plain_open(tmp_path, umask):
    model = _case_model(lambda: [L.Dense(2, input_dim=2)], "float32")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"earlier")
    path.chmod(0o640)
    previous = os.umask(umask)
    try:
        bn.export_onnx(model, path)  # a replaced file keeps its permissions, as with open(path, "wb")
        bn.export_onnx(model, tmp_path / "new.onnx")
    finally:
        os.umask(previous)
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)
    assert oct((tmp_path / "new.onnx").stat().st_mode & 0o777) == oct(0o666 & ~umask)
    assert onnx.load(str(path)).graph.output[0].name == "output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "new.onnx"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("axis", [1, 2, -1])
def test_batch_norm_axis_other_than_last(axis, dtype):
    """A layer with an ``axis`` attribute (Keras meaning: counted with the batch axis) normalizes that axis;
    checked against the formula, since the layer itself may not know ``axis`` yet."""
    layer = L.BatchNormalization(epsilon=1e-3, input_shape=(4, 4, 4))
    model = bn.Sequential([layer], dtype=dtype)
    model.build()
    randomize(model)
    layer.axis = axis
    x = inputs((4, 4, 4), 257, dtype)
    shape = [1, 1, 1, 1]
    shape[axis] = 4
    p = {k: v.reshape(shape) for k, v in {**layer.params, **layer.buffers}.items()}
    want = (x - p["moving_mean"]) / np.sqrt(p["moving_variance"] + 1e-3) * p["gamma"] + p["beta"]
    session = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    assert np.max(np.abs(got - want)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("opset", [13, None])
def test_table_graph_with_integer_labels_in_float64(opset):
    """Integer class labels come out as int64; the float64 model's probabilities stay float64."""
    from barenet.onnx.table import table_to_onnx
    from barenet.preprocessing import TablePreprocessor

    rng = np.random.default_rng(0)
    table = {"a": rng.normal(size=60), "b": rng.integers(0, 5, 60), "c": rng.choice(["x", "y", "z"], 60).astype(object),
             "grade": rng.choice([3, 7, 11], 60)}
    prep = TablePreprocessor("grade").fit(table)
    model = bn.Sequential([L.Dense(5, "relu", input_dim=5), L.Dense(3, "softmax")], dtype="float64")
    model.build()
    randomize(model)
    model.metadata = {"preprocessing": prep.to_json()}
    proto = table_to_onnx(model, opset=opset)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"a": table["a"][:, None], "b": table["b"].astype(np.float64)[:, None], "c": table["c"][:, None]}
    label, proba = session.run(None, feeds)
    want = model.predict(prep.transform(table, dtype=model.dtype))
    assert label.dtype == np.int64 and label.tolist() == prep.decode_target(want).tolist()
    assert proba.dtype == np.float64 and np.max(np.abs(proba - want)) <= TOLERANCE["float64"]


def test_gelu_before_opset_20_is_written_out():
    model = _case_model(lambda: [L.Dense(4, "gelu", input_dim=5)], "float32")
    proto = to_onnx(model, opset=18)
    assert "Gelu" not in {n.op_type for n in proto.graph.node}
    assert max_difference(model, (5,), proto) <= TOLERANCE["float32"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opset", [13, 17])
def test_every_layer_exports_at_older_opsets(opset, dtype):
    """Every case of CASES (at the default opset in test_layer_matches_predict) written at opset 13 and 17: the
    full check passes, the model declares that opset and onnxruntime matches predict. One test per opset and
    dtype, the cases in a loop, so that the whole table costs a few seconds."""
    wrong = {}
    for case, _, builder, sample in CASES:
        model = _case_model(builder, dtype)
        proto = to_onnx(model, opset=opset)
        onnx.checker.check_model(proto, full_check=True)
        assert [o.version for o in proto.opset_import] == [opset], case
        difference = max_difference(model, sample, proto)
        if not difference <= TOLERANCE[dtype]:
            wrong[case] = difference
    assert wrong == {}


# opset -> (operators the float32 graph has, operators it must not have)
FORMS = {13: ({"HardSigmoid", "Softplus", "Erf"}, {"HardSwish", "Mish", "LayerNormalization", "Gelu"}),
         17: ({"HardSwish", "LayerNormalization", "Softplus", "Erf"}, {"Mish", "Gelu"}),
         18: ({"HardSwish", "LayerNormalization", "Mish", "Erf"}, {"Gelu"}),
         21: ({"HardSwish", "LayerNormalization", "Mish", "Gelu"}, {"Erf"})}


@pytest.mark.parametrize("opset", list(FORMS))
def test_operator_forms_follow_the_opset(opset):
    """HardSwish from opset 14, LayerNormalization from 17, Mish from 18, Gelu from 20, written out before; the
    reductions' axes an attribute below 18 and an input from 18 on."""
    model = _case_model(lambda: [L.Dense(4, "hard_swish", input_shape=SEQ), L.Dense(4, "mish"),
                                 L.LayerNormalization(), L.Dense(4, "gelu"), L.GlobalAveragePooling1D()], "float32")
    proto = to_onnx(model, opset=opset)
    ops = {n.op_type for n in proto.graph.node}
    has, lacks = FORMS[opset]
    assert has <= ops and not lacks & ops
    assert {len(n.input) for n in proto.graph.node if n.op_type == "ReduceMean"} == {1 if opset < 18 else 2}
    assert max_difference(model, SEQ, proto) <= TOLERANCE["float32"]


class Halving(L.Layer):
    """A user's own layer, exported by a converter of the user's that writes an operator of opset 20."""

    def forward(self, x, *, training=False, cache=None):
        return x / 2

    def backward(self, grad, cache):
        return grad / 2


def test_an_operator_newer_than_the_opset_is_refused_naming_layer_operator_and_opset(monkeypatch):
    from barenet.onnx import registry

    def gelu_then_halve(layer, g, x):
        g.op("Gelu", [x])  # written even when unused, so that the opset must have it
        return g.op("Mul", [x, g.const(0.5, "half")])

    monkeypatch.setitem(registry._CONVERTERS, Halving, gelu_then_halve)
    model = bn.Sequential([L.Dense(3, input_dim=2), Halving(name="half")])
    model.build()
    with pytest.raises(OnnxExportError, match=r"^Halving\(\) 'half' needs the ONNX operator 'Gelu', which opset 17 "
                                              r"does not have; it needs opset 20 or newer \(export with opset=20\)$"):
        to_onnx(model, opset=17)
    assert max_difference(model, (2,), to_onnx(model, opset=20)) <= TOLERANCE["float32"]
    monkeypatch.setitem(registry._CONVERTERS, Halving, lambda layer, g, x: g.op("Halve", [x]))
    with pytest.raises(OnnxExportError, match=r"^Halving\(\) 'half' needs the ONNX operator 'Halve', which this onnx "
                                              r"package does not know in domain 'ai.onnx'$"):
        to_onnx(model)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exact_gelu_forms_by_opset_and_dtype(dtype):
    """float32: Gelu from opset 20, x * 0.5 * (1 + Erf(x / sqrt 2)) before; float64 (no Erf in onnxruntime): erfc
    from elementary operators, checked here far into both tails."""
    model = _case_model(lambda: [L.GELU(input_shape=(6,))], dtype)
    for opset, expected in ((18, "Erf"), (21, "Gelu")):
        proto = to_onnx(model, opset=opset)
        ops = {n.op_type for n in proto.graph.node}
        assert expected in ops if dtype == "float32" else not ops & {"Erf", "Gelu"}
        x = np.linspace(-40, 40, 6 * 101).reshape(-1, 6).astype(dtype)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": x})
        want = model.predict(x)
        assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1)) <= TOLERANCE[dtype]


def test_metadata_round_trip(tmp_path):
    model = bn.Sequential([L.Dense(3, "softmax", input_dim=4)], seed=0)
    model.compile(loss="categorical_crossentropy", optimizer="adam")
    model.build()
    model.metadata = {"classes": ["cat", "dog", "eel"], "note": {"epochs": 3}}
    bn.export_onnx(model, tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert props["barenet_version"] == bn.__version__
    assert props["task"] == "multiclass"
    assert json.loads(props["loss"])["name"] == "categorical_crossentropy"
    assert json.loads(props["classes"]) == ["cat", "dog", "eel"]
    assert json.loads(props["barenet_metadata"]) == model.metadata
    assert props["dtype"] == "float32"
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == props


def test_metadata_that_is_not_json_is_refused():
    model = _case_model(lambda: [L.Dense(2, input_dim=2)], "float32")
    model.metadata = {"classes": np.array(["a", "b"])}
    with pytest.raises(OnnxExportError, match="model.metadata must hold only JSON values"):
        to_onnx(model)


def test_importing_barenet_does_not_import_onnx():
    import subprocess

    code = "import sys, barenet; assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_onnx_package_says_how_to_install(monkeypatch):
    from barenet.onnx import MissingOnnxError

    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    model = _case_model(lambda: [L.Dense(2, input_dim=2)], "float32")
    with pytest.raises(MissingOnnxError, match=r'pip install "barenet\[onnx\]"'):
        to_onnx(model)


def largest_differences() -> dict[str, dict[str, float]]:
    """Largest |onnxruntime - predict| per layer type and dtype over CASES (and the whole networks)."""
    table: dict[str, dict[str, float]] = {}
    for _, kind, builder, sample in CASES:
        for dtype in TOLERANCE:
            row = table.setdefault(kind, {})
            row[dtype] = max(row.get(dtype, 0.0), max_difference(_case_model(builder, dtype), sample))
    for name, make in _networks().items():
        model, sample = make()
        table[f"network {name}"] = {"float32": max_difference(randomize(model, keep_kernels=True), sample)}
    return table


if __name__ == "__main__":
    for kind, row in largest_differences().items():
        print(f"{kind:28s} " + "  ".join(f"{dtype} {value:.2e}" for dtype, value in row.items()))
