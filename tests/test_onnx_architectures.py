"""bn.import_onnx on real architectures: ResNet-18, MobileNetV2 and a small U-Net, written here in plain PyTorch
with random weights (nothing is downloaded), each exported with ``torch.onnx.export``'s default settings and with
``dynamo=False``.

References: onnxruntime on the exported file with the same float32 input (the import within 1e-5 of the output's
scale), PyTorch itself on a batch size the export never saw; for training, the PyTorch module in float64 with its
batch norms folded into the convolutions (as the import folds them) and the imported weights copied in, one SGD
step on the same batch and the same mean squared error, every weight equal to 1e-8 afterwards
(:func:`onnx_cases.sgd_step_differences`). ``dynamo`` is ``torch.onnx.export(model, args, path)`` (weights in
``<file>.data`` beside the file, the batch size fixed at the example's), ``legacy`` is the same with
``dynamo=False`` (batch norm folded by the exporter). Each architecture's batch norms have random scales and shifts
and the statistics of a calibration batch, so that folding them matters, every weight array moves by more than
1e-4 in the step, and MobileNetV2's ReLU6 clips some inputs at 6.

Sizes keep the file quick: ResNet-18 and MobileNetV2 at their full widths on 32x32 images (ResNet-18's last stage
sees 1x1 maps, MobileNetV2's 1x1 after five stride-2 stages), the U-Net with 8 to 32 channels on 16x16 images.
"""

from __future__ import annotations

import collections
import functools
import sys
from pathlib import Path

import numpy as np
import pytest

import barenet as bn
from barenet.errors import ModelFileError

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
import onnx_cases as oc  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

TOLERANCE = 1e-5
STEP_TOLERANCE = 1e-8
BATCH = 2


# --------------------------------------------------------------------- ResNet-18
# torchvision's ResNet-18 (7x7/2 stem, 3x3/2 max pool, four stages of two basic blocks, 64 to 512 channels, global
# average pooling, a Linear to 10 classes), written once, in bench/inference.py, which times it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from inference import torch_resnet18 as ResNet18  # noqa: E402


# --------------------------------------------------------------------- MobileNetV2
def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu6: bool = True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU6(inplace=True)) if relu6 else nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """1x1 expansion by ``expand`` (none when 1) - depthwise 3x3 (``stride``) - 1x1 linear projection, each with
    batch norm, ReLU6 after the first two; added to the input when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [_conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden), _conv_bn(hidden, cout, 1, relu6=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    """Width 1.0: a 3x3/2 stem of 32 channels, the paper's inverted-residual settings, a 1x1 convolution to 1280
    channels, global average pooling, Dropout and a Linear."""

    #: (expansion t, channels c, repeats n, first stride s) of the paper's Table 2.
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers, cin = [_conv_bn(3, 32, 3, 2)], 32
        for t, c, n, s in self.SETTINGS:
            for k in range(n):
                layers.append(InvertedResidual(cin, c, s if k == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------- U-Net
def _double_conv(cin: int, cout: int):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Three levels: two double-conv encoder stages each followed by a 2x2 max pool, a double-conv bottom, and two
    decoder stages that upsample (bilinear by a factor of 2, then nearest to the size of the skip connection, as
    U-Nets for any input size write it), concatenate the encoder's output of that size on the channels and apply a
    double conv; a 1x1 convolution gives the per-pixel class scores."""

    def __init__(self, cin: int = 3, classes: int = 2, width: int = 8) -> None:
        super().__init__()
        w = width
        self.down0, self.down1 = _double_conv(cin, w), _double_conv(w, 2 * w)
        self.bottom = _double_conv(2 * w, 4 * w)
        self.pool = nn.MaxPool2d(2)
        self.up1 = nn.Upsample(scale_factor=2, mode="bilinear")
        self.dec1 = _double_conv(4 * w + 2 * w, 2 * w)
        self.dec0 = _double_conv(2 * w + w, w)
        self.head = nn.Conv2d(w, classes, 1)

    def forward(self, x):
        s0 = self.down0(x)
        s1 = self.down1(self.pool(s0))
        b = self.bottom(self.pool(s1))
        d1 = self.dec1(torch.cat([self.up1(b), s1], dim=1))
        up = nn.functional.interpolate(d1, size=s0.shape[-2:], mode="nearest")
        return self.head(self.dec0(torch.cat([up, s0], dim=1)))


def _build(cls, size: int):
    """``(module in eval mode, example input (BATCH, 3, size, size))``: random weights; batch norms with random
    scales in [0.5, 2] and shifts, their statistics those of a calibration batch (so that activations neither vanish
    nor explode through the depth, and some ReLU6 inputs pass 6), no variance below 0.1 (a channel nearly constant on
    the calibration batch would scale float32 rounding up hundreds of times)."""
    torch.manual_seed(0)
    net = cls()
    g = torch.Generator().manual_seed(1)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 2.0, generator=g)
            m.bias.normal_(0.0, 1.0, generator=g)
            m.momentum = None  # the statistics of the calibration batch, not a moving average with the defaults
        net.train()(torch.randn(16, 3, size, size, generator=g))
        for m in norms:
            m.running_var.clamp_(min=0.1)
    return net.eval(), torch.randn(BATCH, 3, size, size, generator=g)


ARCHITECTURES = {"resnet18": functools.partial(_build, ResNet18, 32),
                 "mobilenet_v2": functools.partial(_build, MobileNetV2, 32),
                 "unet": functools.partial(_build, UNet, 16)}
#: The imported layers of each architecture, counted by type (the batch norms folded into the convolutions and
#: the activations into the layers before them).
LAYERS = {
    "resnet18": {"Conv2D": 20, "MaxPooling2D": 1, "Add": 8, "ReLU": 8, "GlobalAveragePooling2D": 1, "Dense": 1},
    "mobilenet_v2": {"Conv2D": 35, "DepthwiseConv2D": 17, "Add": 10, "GlobalAveragePooling2D": 1, "Dense": 1},
    "unet": {"Conv2D": 11, "MaxPooling2D": 2, "UpSampling2D": 2, "Concatenate": 2},
}
EXPORTS = [(a, e) for a in ARCHITECTURES for e in ("dynamo", "legacy")]


def _export(tmp_path, name: str, exporter: str):
    """``(path, torch module, example input as NumPy)``: architecture ``name`` exported into ``tmp_path``."""
    path = tmp_path / f"{name}-{exporter}.onnx"
    net, x = oc.export_default(name, path, exporter, models=ARCHITECTURES)
    return path, net, x.numpy()


def _relu6_clips(net, x: np.ndarray) -> bool:
    """Whether some input of a ReLU6 of ``net`` passes 6 on ``x`` (so the clip at 6 is exercised)."""
    over = []
    hooks = [m.register_forward_pre_hook(lambda _, args: over.append(bool((args[0] > 6).any())))
             for m in net.modules() if isinstance(m, nn.ReLU6)]
    oc.torch_predict(net, x)
    for hook in hooks:
        hook.remove()
    return any(over)


def _activations(model) -> collections.Counter:
    return collections.Counter(layer.activation.kind for layer in model.layers if hasattr(layer, "activation"))


def _check_prediction(path, net, x: np.ndarray, name: str, exporter: str) -> None:
    """The float32 import has the expected layers and predicts what onnxruntime predicts on the export's input,
    and what PyTorch predicts on a batch size the export never saw."""
    if exporter == "dynamo":  # the default export keeps the weights beside the file
        proto = onnx.load(str(path), load_external_data=False)
        assert any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer)
    model = bn.import_onnx(path)
    assert isinstance(model, bn.Model) and model.dtype == np.float32
    assert collections.Counter(type(layer).__name__ for layer in model.layers) == LAYERS[name]
    if name == "mobilenet_v2":  # stem, 16 expansions, 17 depthwise, last 1x1; the 17 projections stay linear
        assert _activations(model) == {"relu6": 35, "linear": 18}
        assert _relu6_clips(net, x)
    if name == "unet":
        assert [layer.interpolation for layer in model.layers if isinstance(layer, bn.layers.UpSampling2D)] == \
            ["bilinear", "nearest"]
        assert {layer.axis for layer in model.layers if isinstance(layer, bn.layers.Concatenate)} == {1}
    got, (want,) = model.predict(x), oc.onnxruntime_run(path, [x])
    scale = float(np.abs(want).max())
    diff = float(np.abs(got - want).max())
    print(f"\n{name} ({exporter}): largest difference from onnxruntime {diff:.2e}, {diff / scale:.2e} of the "
          f"output scale {scale:.2f}")
    assert got.shape == want.shape and diff <= TOLERANCE * scale
    X = np.random.default_rng(1).standard_normal((3, *x.shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(model.predict(X), oc.torch_predict(net, X), rtol=0, atol=TOLERANCE * scale)


def _check_step(path, net, x: np.ndarray, name: str, exporter: str) -> None:
    """Imported in float64, one SGD step on a batch moves every weight as the same step moves PyTorch's."""
    model = bn.import_onnx(path, dtype="float64")
    assert model.dtype == np.float64
    worst, moved = oc.sgd_step_differences(model, net, x, batch=BATCH)
    print(f"{name} ({exporter}): weights after one step differ by at most {worst:.1e} "
          f"(the smallest largest move of a weight array is {moved:.1e})")
    assert moved > 1e-4 and worst <= STEP_TOLERANCE


@pytest.mark.parametrize(("name", "exporter"), EXPORTS, ids=[f"{a}-{e}" for a, e in EXPORTS])
def test_architecture_predicts_as_onnxruntime_and_trains_as_pytorch(tmp_path, name, exporter):
    """One test per export (so that each file is exported once, whichever pytest-xdist worker runs it)."""
    path, net, x = _export(tmp_path, name, exporter)
    _check_prediction(path, net, x, name, exporter)
    _check_step(path, net, x, name, exporter)


# --------------------------------------------------------------------- Resize to output sizes
def _resize_graph(tmp_path, sizes_nodes, inits, *, batch="batch", mode="nearest", opset=17, **attrs):
    """x (batch, 3, 4, 5) -> Resize(x, sizes) -> y, with the sizes computed by ``sizes_nodes`` from ``inits``."""
    coordinates = {"nearest": "asymmetric", "linear": "half_pixel"}[mode]
    resize = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, nearest_mode="floor",
                              coordinate_transformation_mode=coordinates, **attrs)
    graph = helper.make_graph(
        [*sizes_nodes, resize], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    path = tmp_path / "resize.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString())
    return path


def test_resize_to_output_sizes_is_an_upsampling_by_their_factors(tmp_path):
    """``F.interpolate(x, size=...)`` as either exporter writes it: constant sizes naming the batch size the export
    fixed (dynamo), or sizes concatenated from the input's Shape (batch and channels) and constants (legacy)."""
    rng = np.random.default_rng(0)
    path = _resize_graph(tmp_path, [], {"sizes": np.array([2, 3, 8, 15])}, batch=2)
    model = bn.import_onnx(path)
    assert [(type(layer).__name__, layer.size, layer.interpolation) for layer in model.layers] == \
        [("UpSampling2D", (2, 3), "nearest")]
    x = rng.standard_normal((2, 3, 4, 5), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x), oc.onnxruntime_run(path, [x])[0])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]),
             helper.make_node("Slice", ["shape", "start", "stop"], ["batch_channels"]),
             helper.make_node("Concat", ["batch_channels", "hw"], ["sizes"], axis=0)]
    inits = {"start": np.array([0]), "stop": np.array([2]), "hw": np.array([12, 10])}
    path = _resize_graph(tmp_path, nodes, inits, mode="linear")
    model = bn.import_onnx(path)
    assert [(layer.size, layer.interpolation) for layer in model.layers] == [((3, 2), "bilinear")]
    x = rng.standard_normal((5, 3, 4, 5), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x), oc.onnxruntime_run(path, [x])[0], rtol=0, atol=1e-6)


RESIZE_REFUSALS = {
    "sizes that are not whole multiples": (
        {"sizes": np.array([2, 3, 6, 10])}, {},
        r"resizes \[batch, 3, 4, 5\] to sizes \[batch, 3, 6, 10\]; barenet's UpSampling2D keeps the batch and the "
        "channels and enlarges the height and width by whole factors"),
    "sizes that shrink": ({"sizes": np.array([2, 3, 2, 5])}, {}, r"to sizes \[batch, 3, 2, 5\]"),
    "sizes that change the channels": ({"sizes": np.array([2, 6, 8, 10])}, {}, r"to sizes \[batch, 6, 8, 10\]"),
    "sizes of two axes": ({"sizes": np.array([8, 10])}, {}, r"to sizes \[8, 10\]"),
    "sizes that keep the aspect ratio": (  # scaled by 2 both ways, not by (2, 3)
        {"sizes": np.array([2, 3, 8, 15])}, {"keep_aspect_ratio_policy": "not_larger"},
        "keep_aspect_ratio_policy='not_larger'; barenet imports sizes given in full"),
}


@pytest.mark.parametrize("case", sorted(RESIZE_REFUSALS))
def test_resize_size_refusals_name_the_problem(tmp_path, case):
    inits, attrs, message = RESIZE_REFUSALS[case]
    path = _resize_graph(tmp_path, [], inits, batch=2, opset=18, **attrs)
    with pytest.raises(ModelFileError, match=message):
        bn.import_onnx(path)


def test_resize_with_both_scales_and_sizes_is_refused(tmp_path):
    resize = helper.make_node("Resize", ["x", "", "scales", "sizes"], ["y"], mode="nearest")
    graph = helper.make_graph(
        [resize], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
                     numpy_helper.from_array(np.array([2, 3, 8, 10]), "sizes")])
    path = tmp_path / "both.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(ModelFileError, match="gives both scales and sizes; ONNX takes one of them"):
        bn.import_onnx(path)
