"""Small PyTorch networks exported to ONNX, shared by the ONNX import tests, the fuzz test and bench/fuzz_onnx.py.

Each builder returns ``(module, example_input)`` with the module in eval mode and its batch-norm statistics
set away from their defaults, so that folding them matters. Sizes are small so that exporting is quick.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

BATCH, TIME, FEATURES, HIDDEN, CLASSES = 3, 7, 5, 6, 4


def _randomize_batchnorm(net) -> None:
    import torch

    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


def mlp():
    """Linear - BatchNorm1d - ReLU - Dropout - Linear - Tanh - Linear - Softmax on 5 features."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3),
                        nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, CLASSES), nn.Softmax(dim=1))
    _randomize_batchnorm(net)
    return net.eval(), torch.randn(BATCH, FEATURES)


def cnn():
    """The Fashion-MNIST CNN of bench/cnn_fashion.py with fewer channels: two conv blocks with BatchNorm2d."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(4, 8, 3, bias=False), nn.BatchNorm2d(8), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 6 * 6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
    _randomize_batchnorm(net)
    return net.eval(), torch.rand(BATCH, 1, 28, 28)


class LastStep:
    """Factory of ``rnn -> last time step -> Linear`` classifiers (batch_first)."""

    @staticmethod
    def build(kind: str, embedding: int | None = None):
        import torch
        from torch import nn

        class Classifier(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.embed = nn.Embedding(embedding, FEATURES) if embedding else None
                self.rnn = getattr(nn, kind)(FEATURES, HIDDEN, batch_first=True)
                self.fc = nn.Linear(HIDDEN, CLASSES)

            def forward(self, x):
                if self.embed is not None:
                    x = self.embed(x)
                out, _ = self.rnn(x)
                return self.fc(out[:, -1])

        torch.manual_seed(0)
        net = Classifier().eval()
        if embedding:
            return net, torch.randint(0, embedding, (BATCH, TIME))
        return net, torch.randn(BATCH, TIME, FEATURES)


def lstm():
    return LastStep.build("LSTM")


def gru():
    return LastStep.build("GRU")


def rnn():
    return LastStep.build("RNN")


def embedding_gru():
    return LastStep.build("GRU", embedding=11)


def pooling_cnn():
    """Conv (bias, stride 2) - AvgPool - Sigmoid - Conv - LeakyReLU - global average pool - Linear."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.AvgPool2d(2), nn.Sigmoid(),
                        nn.Conv2d(4, 6, 3, padding=1), nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(6, 3))
    return net.eval(), torch.rand(BATCH, 2, 16, 16)


def mobilenet_block():
    """A grouped convolution, then an inverted-residual-style block without the residual: 1x1 expansion,
    depthwise 3x3 (stride 2, and a multiplier of 2 in a second one) each with BatchNorm2d, 1x1 projection."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=(1, 2), dilation=(1, 2), groups=16), nn.Tanh(),
        nn.Conv2d(32, 6, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    _randomize_batchnorm(net)
    return net.eval(), torch.randn(BATCH, 4, 10, 9)


def padded_cnn():
    """Explicit padding: ZeroPad2d before a stride-2 Conv (TensorFlow's 'same' as MobileNet ports write it),
    a max pool and an average pool with padding (PyTorch counts the padding in averages by default)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(),
                        nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(3, stride=1, padding=1),
                        nn.ZeroPad2d((1, 2, 2, 0)), nn.Conv2d(6, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 5, 3))
    return net.eval(), torch.randn(BATCH, 3, 15, 17)


class _Causal:
    """Factory of a 1-d convolutional sequence classifier on ``(batch, channels, steps)``."""

    @staticmethod
    def build():
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv1 = nn.Conv1d(FEATURES, 8, 5, padding=2)
                self.conv2 = nn.Conv1d(8, 8, 3, dilation=2, groups=4, bias=False)
                self.norm = nn.BatchNorm1d(8)
                self.conv3 = nn.Conv1d(8, 4, 3, stride=2, padding=1)
                self.fc = nn.Linear(4 * 6, CLASSES)

            def forward(self, x):
                x = torch.relu(self.conv1(x))
                x = torch.tanh(self.norm(self.conv2(nn.functional.pad(x, (4, 0)))))  # causal: 4 steps before
                return self.fc(torch.flatten(self.conv3(x), 1))

        torch.manual_seed(0)
        net = Net()
        _randomize_batchnorm(net)
        return net.eval(), torch.randn(BATCH, FEATURES, 11)


def conv1d_net():
    return _Causal.build()


MODELS = {"mlp": mlp, "cnn": cnn, "lstm": lstm, "gru": gru, "rnn": rnn, "embedding_gru": embedding_gru,
          "pooling_cnn": pooling_cnn,
          "mobilenet_block": mobilenet_block, "padded_cnn": padded_cnn, "conv1d_net": conv1d_net}


def activations_mlp():
    """Linear layers with each newer activation after one: GELU (exact and tanh), SiLU, Mish, Hardswish, Hardsigmoid,
    ReLU6, Softplus. The legacy exporter writes GELU as Erf or Tanh arithmetic before opset 20, SiLU as x * Sigmoid(x)
    and Mish as x * Tanh(Softplus(x))."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    acts = [nn.GELU(), nn.SiLU(), nn.Mish(), nn.Hardswish(), nn.Hardsigmoid(), nn.ReLU6(), nn.Softplus(),
            nn.GELU(approximate="tanh")]
    widths = [FEATURES, 8, 7, 8, 6, 8, 7, 6, 8, CLASSES]
    layers = []
    for k, act in enumerate(acts):
        layers += [nn.Linear(widths[k], widths[k + 1]), act]
    net = nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))
    with torch.no_grad():  # wide enough inputs that the hard activations see both sides of their kinks
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(3)
    return net.eval(), torch.randn(BATCH, FEATURES)


def layernorm_sequence():
    """(batch, time, features): Linear - LayerNorm over the features - GELU - Linear - LayerNorm over (time,
    features) - Linear."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(FEATURES, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, HIDDEN),
                        nn.LayerNorm([TIME, HIDDEN], eps=1e-3), nn.Linear(HIDDEN, CLASSES))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return net.eval(), torch.randn(BATCH, TIME, FEATURES)


def upsampling_cnn():
    """Conv - ZeroPad2d (asymmetric) - nearest Upsample x2 - Conv - bilinear Upsample (2, 3) - ReLU6 - global max pool
    (exported as a MaxPool over the whole image) - Linear."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ZeroPad2d((1, 2, 0, 1)), nn.Upsample(scale_factor=2),
                        nn.Conv2d(3, 4, 3), nn.Upsample(scale_factor=(2, 3), mode="bilinear"), nn.ReLU6(),
                        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4, CLASSES))
    return net.eval(), torch.randn(BATCH, 2, 5, 4)


def sequence_pools():
    """(batch, channels, steps): MaxPool1d with padding - AvgPool1d without counting the padding - Hardswish -
    AdaptiveAvgPool1d(1) (GlobalAveragePool) - Linear."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.MaxPool1d(3, 2, padding=1), nn.AvgPool1d(3, 1, padding=1, count_include_pad=False),
                        nn.Hardswish(), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(FEATURES, CLASSES))
    return net.eval(), torch.randn(BATCH, FEATURES, 15) * 3


class _ResizeToSkip:
    """Factory of a U-Net step: a stride-2 Conv, resized back to its input's size (``F.interpolate(size=...)``, a
    Resize to output sizes), concatenated with that input on the channels, a Conv and a Linear."""

    @staticmethod
    def build():
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.down, self.merge = nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.Conv2d(6, 3, 3)
                self.head = nn.Linear(3 * 4 * 6, CLASSES)

            def forward(self, x):
                up = nn.functional.interpolate(torch.relu(self.down(x)), size=x.shape[-2:], mode="bilinear")
                return self.head(torch.flatten(self.merge(torch.cat([x, up], dim=1)), 1))

        torch.manual_seed(0)
        return Net().eval(), torch.randn(BATCH, 2, 6, 8)


def resize_to_skip():
    return _ResizeToSkip.build()


MODELS.update({"activations_mlp": activations_mlp, "layernorm_sequence": layernorm_sequence,
               "upsampling_cnn": upsampling_cnn, "sequence_pools": sequence_pools, "resize_to_skip": resize_to_skip})

def residual_mlp():
    """Linear - ReLU, then a Linear added back to its own input (one skip connection), then a Linear head."""
    import torch
    from torch import nn

    class ResidualMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.block, self.head = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, CLASSES)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            return self.head(h + self.block(h))

    torch.manual_seed(0)
    return ResidualMLP().eval(), torch.randn(BATCH, 16)


def two_branch():
    """Two branches on one input (Linear - Tanh and Linear - ReLU) joined by concatenation, then a Linear."""
    import torch
    from torch import nn

    class TwoBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wide, self.narrow, self.head = nn.Linear(16, 24), nn.Linear(16, 8), nn.Linear(32, CLASSES)

        def forward(self, x):
            return self.head(torch.cat([torch.tanh(self.wide(x)), torch.relu(self.narrow(x))], dim=1))

    torch.manual_seed(0)
    return TwoBranch().eval(), torch.randn(BATCH, 16)


def residual_cnn():
    """A ResNet basic block on the input (Conv - BN - ReLU - Conv - BN, plus the identity, then ReLU), global
    average pooling and a Linear."""
    import torch
    from torch import nn

    class ResidualBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = torch.relu(self.bn2(self.conv2(h)) + x)
            return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1))

    torch.manual_seed(0)
    net = ResidualBlock()
    _randomize_batchnorm(net)
    return net.eval(), torch.randn(BATCH, 8, 10, 10)


GRAPH_MODELS = {"residual_mlp": residual_mlp, "two_branch": two_branch, "residual_cnn": residual_cnn}


def export_default(name: str, path: Path, exporter: str = "dynamo", models: dict | None = None):
    """Export model ``name`` of ``models`` (:data:`GRAPH_MODELS` by default) with ``torch.onnx.export``'s default
    settings: ``"dynamo"`` (the default exporter, weights in ``<path>.data`` beside the file), ``"legacy"``
    (``dynamo=False``, batch norm folded into the convolutions) or ``"legacy-unfolded"`` (no constant folding:
    BatchNormalization nodes stay). Returns ``(module, example_input)``; the batch size is fixed at the
    example's."""
    import contextlib
    import io

    import torch

    net, x = (GRAPH_MODELS if models is None else models)[name]()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(net, (x,), str(path))
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, do_constant_folding=exporter == "legacy")
    return net, x


def export_barenet_cnn(path: Path) -> None:
    """A channels-last barenet CNN with batch norm, written by barenet's own exporter (its graph transposes
    NHWC to NCHW around each image operator)."""
    import barenet as bn

    L = bn.layers
    model = bn.Sequential([L.Conv2D(3, 3, padding="same", input_shape=(8, 8, 2)), L.BatchNormalization(),
                           L.MaxPooling2D(2), L.ReLU(), L.Flatten(), L.Dense(4, activation="softmax")], seed=0)
    model.build()
    bn.export_onnx(model, path)


def export(name: str, path: Path, exporter: str = "legacy"):
    """Export model ``name`` to ``path`` with ``exporter``: ``"dynamo"`` (torch's default), ``"legacy"``,
    ``"legacy-unfolded"`` (no constant folding, so BatchNormalization nodes stay) or ``"legacy-opset21"`` (opset 21,
    where GELU is one Gelu node). Returns
    ``(module, example_input)``."""
    import torch

    net, x = MODELS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(net, (x,), str(path), dynamo=True, external_data=False, input_names=["x"],
                              dynamic_shapes=({0: batch},), verbose=False)
        else:
            torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                              do_constant_folding=exporter != "legacy-unfolded",
                              opset_version=21 if exporter == "legacy-opset21" else None)
    return net, x


def export_cache(folder: Path, export_fn=None):
    """``get(name, exporter) -> (path, torch module, example input as NumPy)``: each model exported into
    ``folder`` once, on first use, by ``export_fn`` (:func:`export` by default, or :func:`export_default`)."""
    export_fn = export_fn or export
    cache: dict[tuple[str, str], tuple] = {}

    def get(name: str, exporter: str):
        if (name, exporter) not in cache:
            path = folder / f"{name}-{exporter}.onnx"
            net, x = export_fn(name, path, exporter)
            cache[name, exporter] = (path, net, x.numpy())
        return cache[name, exporter]

    return get


def torch_predict(net, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def onnxruntime_run(path: Path, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """The outputs onnxruntime computes for the graph inputs ``feeds`` (in the graph's order)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, feeds, strict=True)))


def fold_batchnorm(net):
    """A float64 copy of ``net`` (eval mode) with each ``BatchNorm2d`` folded into the ``Conv2d`` registered right
    before it in the same parent module (what the import makes of a batch norm after a convolution), and its
    weight-carrying modules (``Linear`` and ``Conv2d``). Every batch norm must follow its convolution so."""
    import copy
    import itertools

    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    ref = copy.deepcopy(net).double().eval()
    for parent in list(ref.modules()):
        names = list(parent._modules)
        for conv, norm in itertools.pairwise(names):
            if isinstance(parent._modules[conv], torch.nn.Conv2d) and \
                    isinstance(parent._modules[norm], torch.nn.BatchNorm2d):
                setattr(parent, conv, fuse_conv_bn_eval(parent._modules[conv], parent._modules[norm]))
                setattr(parent, norm, torch.nn.Identity())
    left = [name for name, m in ref.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"batch norms {left} do not follow a Conv2d in their parent module")
    for p in ref.parameters():  # the fused bias of a convolution that had none comes out frozen
        p.requires_grad_(True)
    return ref, [m for m in ref.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def _is_depthwise(module) -> bool:
    return getattr(module, "groups", 1) > 1 and module.groups == module.in_channels


def as_barenet(module) -> np.ndarray:
    """A PyTorch weight in barenet's layout: Dense ``(in, out)``, Conv2D ``(kh, kw, in / groups, out)``,
    DepthwiseConv2D ``(kh, kw, channels, multiplier)`` (from PyTorch's ``(channels * multiplier, 1, kh, kw)``)."""
    w = module.weight.detach().numpy()
    if w.ndim == 2:
        return w.T
    if _is_depthwise(module):
        c = module.in_channels
        return w.reshape(c, w.shape[0] // c, *w.shape[2:]).transpose(2, 3, 0, 1)
    return w.transpose(2, 3, 1, 0)


def _kernel_name(layer) -> str | None:
    return next((k for k in ("kernel", "depthwise_kernel") if k in layer.params), None)


def pair_layers(model, modules) -> list[tuple]:
    """Each barenet layer with a kernel and the PyTorch module holding the same weights (to float32 accuracy)."""
    pairs = []
    for layer in model.layers:
        key = _kernel_name(layer)
        if key is None:
            continue
        kernel = layer.params[key]
        match = [m for m in modules if as_barenet(m).shape == kernel.shape
                 and np.allclose(as_barenet(m), kernel, rtol=1e-5, atol=1e-6)]
        if len(match) != 1:
            raise AssertionError(f"{layer.describe()} matches {len(match)} PyTorch modules")
        pairs.append((layer, match[0]))
    if len(pairs) != len(modules):
        raise AssertionError(f"{len(pairs)} barenet layers with kernels for {len(modules)} PyTorch modules")
    return pairs


def sgd_step_differences(model, net, x: np.ndarray, seed: int = 2, batch: int = 6) -> tuple[float, float]:
    """One SGD step (learning rate 0.1, mean squared error, one batch of ``batch`` samples like ``x``) on the float64
    import ``model`` and on ``net`` in float64 with batch norms folded (:func:`fold_batchnorm`), started from the
    imported weights. Returns ``(worst, moved)``: the largest difference of a weight after the step, and the
    smallest largest change of a weight array in the step (so that ``worst`` is seen to compare moved weights)."""
    import torch

    import barenet as bn

    ref, modules = fold_batchnorm(net)
    pairs = pair_layers(model, modules)
    with torch.no_grad():  # start from exactly the imported weights
        for layer, module in pairs:
            kernel = layer.params[_kernel_name(layer)]
            if kernel.ndim == 2:
                w = kernel.T
            elif _is_depthwise(module):
                w = kernel.transpose(2, 3, 0, 1).reshape(module.weight.shape)
            else:
                w = kernel.transpose(3, 2, 0, 1)
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            module.bias.copy_(torch.from_numpy(layer.params["bias"]))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, *x.shape[1:]))
    Y = rng.standard_normal((batch, *model.output_shape))
    before = {(layer.name, key): layer.params[key].copy() for layer, _ in pairs
              for key in (_kernel_name(layer), "bias")}
    model.compile(loss="mean_squared_error", optimizer=bn.optimizers.SGD(learning_rate=0.1))
    model.fit(X, Y, epochs=1, batch_size=len(X), shuffle=False, verbose=0)
    optimizer = torch.optim.SGD(ref.parameters(), lr=0.1)
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(ref(torch.from_numpy(X)), torch.from_numpy(Y)).backward()
    optimizer.step()
    worst, moved = 0.0, np.inf
    for layer, module in pairs:
        for key, want in ((_kernel_name(layer), as_barenet(module)), ("bias", module.bias.detach().numpy())):
            got = layer.params[key]
            worst = max(worst, float(np.abs(got - want).max()))
            moved = min(moved, float(np.abs(got - before[layer.name, key]).max()))
    return worst, moved
