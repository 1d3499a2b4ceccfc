"""Converters of the feed-forward layers: Dense, activations, Dropout, RandomFlip, RandomTranslation,
BatchNormalization, Conv2D, Conv1D, DepthwiseConv2D, SeparableConv2D, pooling, Flatten, Reshape, Cropping1D, Embedding
and the position layers.

Tensors between layers keep barenet's layout; ONNX's image operators (Conv, MaxPool, AveragePool,
BatchNormalization) want channels at axis 1, so channels-last layers transpose around them and
:meth:`Graph.simplify` removes the pairs that cancel between neighbours.

onnxruntime implements some operators for float32 only (LeakyRelu, Elu, Conv, AveragePool,
GlobalAveragePool and the recurrent ones) or to float32 accuracy only (Gelu, and BatchNormalization,
whose epsilon attribute is a float32). A float64 model is written with equivalent elementary operators
there, so that its graph runs in double precision end to end.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import layers as L
from ..layers.activations import Activation
from ..layers.conv import ImageLayer
from ..layers.embedding import Reversible
from .graph import Graph, OnnxExportError
from .registry import converts

TO_FIRST = (0, 3, 1, 2)  # NHWC -> NCHW
TO_LAST = (0, 2, 3, 1)  # NCHW -> NHWC


def native(g: Graph) -> bool:
    """Whether onnxruntime has kernels in the graph's dtype for the float32-only operators."""
    return g.dtype == np.float32


# ---------------------------------------------------------------------------------------- activations
def activation(act: Activation, g: Graph, x: str) -> str:
    """Append ``act`` applied element-wise (softmax: over the last axis) to ``x``."""
    kind = act.kind
    if kind == "linear":
        return x
    if kind == "relu":
        return g.op("Relu", [x])
    if kind == "sigmoid":
        return g.op("Sigmoid", [x])
    if kind == "tanh":
        return g.op("Tanh", [x])
    if kind == "softmax":
        return g.op("Softmax", [x], axis=-1)
    if kind == "leaky_relu":
        if native(g):
            return g.op("LeakyRelu", [x], alpha=act.alpha)
        positive = g.op("Greater", [x, g.const(0.0, "zero")])
        return g.op("Where", [positive, x, g.op("Mul", [x, g.const(act.alpha, "alpha")])])
    if kind == "elu":
        if native(g):
            return g.op("Elu", [x], alpha=act.alpha)
        # alpha * (exp(min(x, 0)) - 1) where x <= 0
        zero = g.const(0.0, "zero")
        negative = g.op("Sub", [g.op("Exp", [g.op("Min", [x, zero])]), g.const(1.0, "one")])
        return g.op("Where", [g.op("Greater", [x, zero]), x, g.op("Mul", [negative, g.const(act.alpha, "alpha")])])
    if kind == "gelu":
        return _gelu(act, g, x)
    if kind == "silu":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    if kind == "softplus":
        return g.op("Softplus", [x]) if native(g) else _softplus(g, x)
    if kind == "relu6":
        return g.op("Clip", [x, g.const(0.0, "zero"), g.const(6.0, "six")])
    if kind == "hard_sigmoid":
        return _hard_sigmoid(g, x)
    if kind == "hard_swish":  # HardSwish from opset 14
        return g.op("HardSwish", [x]) if native(g) and g.opset >= 14 else g.op("Mul", [x, _hard_sigmoid(g, x)])
    if kind == "mish":  # Mish from opset 18
        if native(g) and g.opset >= 18:
            return g.op("Mish", [x])
        return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x]) if native(g) else _softplus(g, x)])])
    raise OnnxExportError(f"activation {kind!r} has no ONNX form")


def _gelu(act: L.GELU, g: Graph, x: str) -> str:
    """``Gelu`` (opset >= 20, float32); in float32 before that ``x * 0.5 * (1 + Erf(x / sqrt 2))`` or the tanh form
    written out; in float64, where onnxruntime has no Erf, :math:`x\\,\\Phi(x)` with erfc from elementary operators
    (:func:`_erfc`)."""
    if g.opset >= 20 and native(g):  # onnxruntime's float64 Gelu is only float32-accurate
        return g.op("Gelu", [x], approximate="tanh" if act.approximate else "none")
    if act.approximate:  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Add", [x, g.op("Mul", [cube, g.const(0.044715, "gelu_a")])])
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(np.sqrt(2 / np.pi), "gelu_c")])])
        half_x = g.op("Mul", [x, g.const(0.5, "half")])
        return g.op("Mul", [half_x, g.op("Add", [t, g.const(1.0, "one")])])
    if native(g):
        erf = g.op("Erf", [g.op("Div", [x, g.const(np.sqrt(2), "sqrt2")])])
        return g.op("Mul", [g.op("Mul", [x, g.const(0.5, "half")]), g.op("Add", [g.const(1.0, "one"), erf])])
    u = g.op("Div", [g.op("Neg", [x]), g.const(np.sqrt(2), "sqrt2")])
    return g.op("Mul", [x, g.op("Mul", [g.const(0.5, "half"), _erfc(g, u)])])


def _clenshaw(g: Graph, x: str, coefficients: np.ndarray) -> str:
    """:math:`\\sum_k c_k T_k(x)` (a Chebyshev series) by Clenshaw's recurrence, as
    :func:`barenet.functional._chebval` evaluates it."""
    x2 = g.op("Mul", [x, g.const(2.0, "two")])
    b1, b2 = g.const(coefficients[-1], "chebyshev"), None
    for ck in coefficients[-2:0:-1]:
        t = g.op("Mul", [x2, b1])
        if b2 is not None:
            t = g.op("Sub", [t, b2])
        b1, b2 = g.op("Add", [t, g.const(ck, "chebyshev")]), b1
    return g.op("Add", [g.op("Sub", [g.op("Mul", [x, b1]), b2]), g.const(coefficients[0], "chebyshev")])


def _erfc(g: Graph, z: str) -> str:
    """erfc of ``z`` element-wise from the pieces :func:`barenet.functional.erfc` uses (each computed everywhere on
    its clipped range, then the right one selected): the Chebyshev series of erf(z)/z below 1, of
    :math:`e^{z^2}\\operatorname{erfc} z` up to 3, the continued fraction beyond."""
    a = g.op("Abs", [z])

    def clip(lo: float, hi: float) -> str:
        return g.op("Clip", [a, g.const(lo, "low"), g.const(hi, "high")])

    def exp_minus_square(v: str) -> str:
        return g.op("Exp", [g.op("Neg", [g.op("Mul", [v, v])])])

    s = clip(0.0, 1.0)
    t = g.op("Sub", [g.op("Mul", [g.op("Mul", [s, s]), g.const(2.0, "two")]), g.const(1.0, "one")])
    small = g.op("Sub", [g.const(1.0, "one"), g.op("Mul", [s, _clenshaw(g, t, F._ERF_SMALL)])])
    m = clip(1.0, 3.0)
    mid = g.op("Mul", [exp_minus_square(m), _clenshaw(g, g.op("Sub", [m, g.const(2.0, "two")]), F._ERFCX_MID)])
    b = clip(3.0, 40.0)  # erfc(40) underflows to 0; the clip keeps inf out of the fraction
    fraction = b
    for k in range(F._ERFC_FRACTION_TERMS, 0, -1):
        fraction = g.op("Add", [b, g.op("Div", [g.const(k / 2, "fraction"), fraction])])
    large = g.op("Div", [exp_minus_square(b), g.op("Mul", [fraction, g.const(np.sqrt(np.pi), "sqrt_pi")])])
    one, three = g.const(1.0, "one"), g.const(3.0, "three")
    tail = g.op("Where", [g.op("Less", [a, one]), small, g.op("Where", [g.op("Less", [a, three]), mid, large])])
    return g.op("Where", [g.op("Less", [z, g.const(0.0, "zero")]), g.op("Sub", [g.const(2.0, "two"), tail]), tail])


def _softplus(g: Graph, x: str) -> str:
    """:math:`\\max(x, 0) + \\log(1 + e^{-|x|})` (onnxruntime's Softplus is float32 only)."""
    tail = g.op("Log", [g.op("Add", [g.const(1.0, "one"), g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])])])
    return g.op("Add", [g.op("Relu", [x]), tail])


def _hard_sigmoid(g: Graph, x: str) -> str:
    """``HardSigmoid(alpha=1/6, beta=1/2)`` in float32; ``Clip(x + 3, 0, 6) / 6``, as barenet computes it, in
    float64 (onnxruntime's HardSigmoid is float32 only, its alpha a float32)."""
    if native(g):
        return g.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)
    shifted = g.op("Add", [x, g.const(3.0, "three")])
    return g.op("Div", [g.op("Clip", [shifted, g.const(0.0, "zero"), g.const(6.0, "six")]), g.const(6.0, "six")])


@converts(L.Linear, L.ReLU, L.LeakyReLU, L.ELU, L.GELU, L.Sigmoid, L.Tanh, L.Softmax, L.SiLU, L.Softplus, L.ReLU6,
          L.HardSigmoid, L.HardSwish, L.Mish)
def _activation_layer(layer: Activation, g: Graph, x: str) -> str:
    return activation(layer, g, x)


@converts(L.Dropout, L.RandomFlip, L.RandomTranslation)
def _identity(layer, g: Graph, x: str) -> str:
    """Dropout, random flips and translations change training batches only; at inference they pass ``x`` through."""
    return g.op("Identity", [x], name=layer.name or type(layer).__name__.lower())


# ---------------------------------------------------------------------------------------- dense, shape
@converts(L.Dense)
def _dense(layer: L.Dense, g: Graph, x: str) -> str:
    """``act(x @ kernel + bias)`` as MatMul and Add (MatMul broadcasts over any leading axes)."""
    y = g.op("MatMul", [x, g.const(layer.params["kernel"], "kernel")], name="dense")
    if layer.use_bias:
        y = g.op("Add", [y, g.const(layer.params["bias"], "bias")])
    return activation(layer.activation, g, y)


@converts(L.Flatten)
def _flatten(layer: L.Flatten, g: Graph, x: str) -> str:
    return g.op("Flatten", [x], axis=1)


@converts(L.Reshape)
def _reshape(layer: L.Reshape, g: Graph, x: str) -> str:
    return g.op("Reshape", [x, g.ints([-1, *layer.output_shape])])


@converts(L.Cropping1D)
def _cropping_1d(layer: L.Cropping1D, g: Graph, x: str) -> str:
    """``x[:, start:time - end]`` as Slice on axis 1."""
    start, end = layer.cropping
    return g.op("Slice", [x, g.ints([start]), g.ints([layer.input_shape[0] - end]), g.ints([1])])


@converts(L.Embedding)
def _embedding(layer: L.Embedding, g: Graph, x: str, *, reverse: bool = False) -> str:
    """``embeddings[x]`` as Gather; ids arrive as int64 (a float input is cast first). The reverse call
    (:class:`~barenet.layers.embedding.Reversible`) is :func:`_reverse_projection`."""
    if reverse:
        return _reverse_projection(layer, g, x)
    return g.op("Gather", [g.const(layer.params["embeddings"], "embeddings"), x], axis=0)


def _reverse_projection(layer: Reversible, g: Graph, h: str) -> str:
    """``h @ table.T`` as MatMul with the transposed table ``(dim, vocabulary)``, an initializer of its own
    (the file holds the table twice, as it holds a shared layer's weights once per call)."""
    return g.op("MatMul", [h, g.const(layer.params[layer.table].T, f"{layer.table}_transposed")])


# ---------------------------------------------------------------------------------------- position
@converts(L.PositionEmbedding)
def _position_embedding(layer: L.PositionEmbedding, g: Graph, x: str) -> str:
    """The table's first ``time`` rows, broadcast to the input's shape (``Expand`` to ``Shape(x)``)."""
    rows = layer.params["embeddings"][:layer.input_shape[-2]]
    return g.op("Expand", [g.const(rows, "position_embeddings"), g.op("Shape", [x])])


@converts(L.SinusoidalPositionEncoding)
def _sinusoidal_position_encoding(layer: L.SinusoidalPositionEncoding, g: Graph, x: str) -> str:
    """The fixed encoding, broadcast to the input's shape."""
    return g.op("Expand", [g.const(layer.encoding, "position_encoding"), g.op("Shape", [x])])


@converts(L.TokenAndPositionEmbedding)
def _token_and_position_embedding(layer: L.TokenAndPositionEmbedding, g: Graph, x: str, *,
                                  reverse: bool = False) -> str:
    """``Gather`` of the token table by the ids plus the position table's first ``time`` rows; the reverse
    call projects onto the token table (:func:`_reverse_projection`)."""
    if reverse:
        return _reverse_projection(layer, g, x)
    tokens = g.op("Gather", [g.const(layer.params["token_embeddings"], "token_embeddings"), x], axis=0)
    rows = layer.params["position_embeddings"][:layer.input_shape[-1]]
    return g.op("Add", [tokens, g.const(rows, "position_embeddings")])


# ---------------------------------------------------------------------------------------- normalization
@converts(L.BatchNormalization)
def _batch_norm(layer: L.BatchNormalization, g: Graph, x: str) -> str:
    """ONNX BatchNormalization normalizes axis 1; a layer normalizing another axis transposes it there
    and back. ``axis`` counts the batch axis, as in Keras (-1: the last)."""
    rank = len(layer.input_shape) + 1
    axis = int(getattr(layer, "axis", -1))
    axis = axis + rank if axis < 0 else axis
    if not 1 <= axis < rank:
        raise OnnxExportError(f"{layer.describe()} normalizes axis {axis}, outside inputs of rank {rank}")
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    mean, var = layer.buffers["moving_mean"], layer.buffers["moving_variance"]
    if not native(g):
        # ONNX float attributes are float32, too coarse an epsilon for float64: y = (x - mean) * scale + beta
        # with scale = gamma / sqrt(var + eps) computed here as barenet computes it.
        shape = (-1,) + (1,) * (rank - 1 - axis)
        scale = gamma * (1.0 / np.sqrt(var + layer.epsilon)).astype(g.dtype)
        centred = g.op("Sub", [x, g.const(mean.reshape(shape), "moving_mean")])
        return g.op("Add", [g.op("Mul", [centred, g.const(scale.reshape(shape), "scale")]),
                            g.const(beta.reshape(shape), "beta")])
    perm = None if axis == 1 else [0, axis, *[a for a in range(1, rank) if a != axis]]
    if perm is not None:
        x = g.op("Transpose", [x], perm=perm)
    names = [g.const(a, n) for a, n in ((gamma, "gamma"), (beta, "beta"), (mean, "moving_mean"),
                                        (var, "moving_variance"))]
    y = g.op("BatchNormalization", [x, *names], epsilon=layer.epsilon)
    if perm is not None:
        y = g.op("Transpose", [y], perm=[int(i) for i in np.argsort(perm)])
    return y


@converts(L.LayerNormalization)
def _layer_norm(layer: L.LayerNormalization, g: Graph, x: str) -> str:
    """ONNX LayerNormalization (opset >= 17) over the trailing axes from its ``axis`` in float32; in float64 (its
    epsilon is a float32 attribute), below opset 17 and for axes that are not the trailing ones, ReduceMean, Sub,
    Pow, Add, Sqrt and Div (then Mul by gamma, Add beta):

    .. math:: y = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}}\\,\\gamma + \\beta,
              \\quad \\mu = \\operatorname{mean}(x),\\ \\sigma^2 = \\operatorname{mean}((x - \\mu)^2)
    """
    rank, axes = len(layer.input_shape) + 1, list(layer._axes)
    gamma, beta = layer.params.get("gamma"), layer.params.get("beta")
    trailing = axes == list(range(axes[0], rank))
    if native(g) and trailing and g.opset >= 17:
        scale = gamma if gamma is not None else np.ones([layer.input_shape[a - 1] for a in axes], g.dtype)
        inputs = [x, g.const(scale, "gamma")] + ([g.const(beta, "beta")] if beta is not None else [])
        return g.op("LayerNormalization", inputs, axis=axes[0], epsilon=layer.epsilon)
    where = [a - rank for a in axes] if trailing else axes  # from the end: importable with any rank
    centred = g.op("Sub", [x, g.reduce("ReduceMean", x, where, keepdims=1)])
    var = g.reduce("ReduceMean", g.op("Pow", [centred, g.const(2.0, "two")]), where, keepdims=1)
    y = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [var, g.const(layer.epsilon, "epsilon")])])])
    if gamma is not None:
        y = g.op("Mul", [y, g.const(gamma.reshape(layer._broadcast), "gamma")])
    if beta is not None:
        y = g.op("Add", [y, g.const(beta.reshape(layer._broadcast), "beta")])
    return y


# ---------------------------------------------------------------------------------------- images
def _to_first(layer: ImageLayer, g: Graph, x: str) -> str:
    return x if layer.data_format == "channels_first" else g.op("Transpose", [x], perm=TO_FIRST)


def _from_first(layer: ImageLayer, g: Graph, x: str) -> str:
    return x if layer.data_format == "channels_first" else g.op("Transpose", [x], perm=TO_LAST)


def _to_last(layer: ImageLayer, g: Graph, x: str) -> str:
    return x if layer.data_format == "channels_last" else g.op("Transpose", [x], perm=TO_LAST)


def _from_last(layer: ImageLayer, g: Graph, x: str) -> str:
    return x if layer.data_format == "channels_last" else g.op("Transpose", [x], perm=TO_FIRST)


def _onnx_pads(pads) -> list[int]:
    """barenet's ``((top, bottom), (left, right))`` as ONNX's ``[top, left, bottom, right]``."""
    (top, bottom), (left, right) = pads
    return [int(top), int(left), int(bottom), int(right)]


def _window_taps(layer, g: Graph, x: str, kernel, strides, dilation) -> list[str]:
    """Tap ``(i, j)`` of every window of the zero-padded channels-last ``x``: ``(batch, oh, ow, channels)``
    per tap, row-major over ``(i, j)`` as :func:`barenet.functional.im2col` orders them."""
    (top, bottom), (left, right) = layer._pads
    if top or bottom or left or right:
        pads = g.ints([0, top, left, 0, 0, bottom, right, 0], "pads")
        x = g.op("Pad", [x, pads, g.const(0.0, "zero")], mode="constant")
    oh, ow, _ = layer.image_shape(layer.output_shape)
    taps = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            r0, c0 = i * dilation[0], j * dilation[1]
            starts = g.ints([r0, c0], "starts")
            ends = g.ints([r0 + (oh - 1) * strides[0] + 1, c0 + (ow - 1) * strides[1] + 1], "ends")
            taps.append(g.op("Slice", [x, starts, ends, g.ints([1, 2], "axes"), g.ints(list(strides), "steps")]))
    return taps


def ungrouped(kernel: np.ndarray, groups: int) -> np.ndarray:
    """A grouped kernel ``(kh, kw, channels / groups, filters)`` as the ``(kh, kw, channels, filters)`` kernel of
    the same convolution with one group: each filter's weights at its group's channels, zeros elsewhere."""
    kh, kw, cg, filters = kernel.shape
    fg = filters // groups
    full = np.zeros((kh, kw, groups, cg, groups, fg), dtype=kernel.dtype)
    blocks = kernel.reshape(kh, kw, cg, groups, fg)
    for k in range(groups):
        full[:, :, k, :, k, :] = blocks[:, :, :, k, :]
    return full.reshape(kh, kw, groups * cg, filters)


@converts(L.Conv2D)
def _conv(layer: L.Conv2D, g: Graph, x: str) -> str:
    """ONNX Conv (NCHW, kernel ``(filters, channels / group, kh, kw)``) with the layer's explicit pads and
    groups; in float64, im2col written out: the window taps concatenated along channels, times the kernel
    matrix (a grouped kernel spread out with zeros, :func:`ungrouped`)."""
    kernel, bias = layer.params["kernel"], layer.params.get("bias")
    if native(g):
        inputs = [_to_first(layer, g, x), g.const(kernel.transpose(3, 2, 0, 1), "kernel")]
        if bias is not None:
            inputs.append(g.const(bias, "bias"))
        y = g.op("Conv", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                 dilations=list(layer.dilation_rate), pads=_onnx_pads(layer._pads), group=layer.groups)
        y = _from_first(layer, g, y)
    else:
        taps = _window_taps(layer, g, _to_last(layer, g, x), layer.kernel_size, layer.strides, layer.dilation_rate)
        cols = taps[0] if len(taps) == 1 else g.op("Concat", taps, axis=-1)
        kernel = ungrouped(kernel, layer.groups)
        y = g.op("MatMul", [cols, g.const(kernel.reshape(-1, layer.filters), "kernel")])
        if bias is not None:
            y = g.op("Add", [y, g.const(bias, "bias")])
        y = _from_last(layer, g, y)
    return activation(layer.activation, g, y)


@converts(L.Conv1D)
def _conv1d(layer: L.Conv1D, g: Graph, x: str) -> str:
    """ONNX Conv on ``(batch, channels, steps)`` (kernel ``(filters, channels / group, k)``), a ``Transpose``
    to and from it for channels-last sequences; in float64, im2col written out as for Conv2D."""
    kernel, bias = layer.params["kernel"], layer.params.get("bias")
    last = layer.data_format == "channels_last"
    left, right = layer._pads
    if native(g):
        inputs = [g.op("Transpose", [x], perm=[0, 2, 1]) if last else x, g.const(kernel.transpose(2, 1, 0), "kernel")]
        if bias is not None:
            inputs.append(g.const(bias, "bias"))
        y = g.op("Conv", inputs, kernel_shape=[layer.kernel_size], strides=[layer.strides],
                 dilations=[layer.dilation_rate], pads=[left, right], group=layer.groups)
        y = g.op("Transpose", [y], perm=[0, 2, 1]) if last else y
    else:
        x = x if last else g.op("Transpose", [x], perm=[0, 2, 1])
        if left or right:
            x = g.op("Pad", [x, g.ints([0, left, 0, 0, right, 0], "pads"), g.const(0.0, "zero")], mode="constant")
        steps = layer.output_shape[0] if last else layer.output_shape[1]
        taps = []
        for i in range(layer.kernel_size):
            start = i * layer.dilation_rate
            taps.append(g.op("Slice", [x, g.ints([start], "starts"), g.ints([start + (steps - 1) * layer.strides + 1],
                                                                              "ends"),
                                       g.ints([1], "axes"), g.ints([layer.strides], "steps")]))
        cols = taps[0] if len(taps) == 1 else g.op("Concat", taps, axis=-1)
        matrix = ungrouped(kernel[None], layer.groups).reshape(-1, layer.filters)
        y = g.op("MatMul", [cols, g.const(matrix, "kernel")])
        if bias is not None:
            y = g.op("Add", [y, g.const(bias, "bias")])
        y = y if last else g.op("Transpose", [y], perm=[0, 2, 1])
    return activation(layer.activation, g, y)


def _depthwise(layer: L.DepthwiseConv2D | L.SeparableConv2D, g: Graph, x: str, bias: np.ndarray | None) -> str:
    """The depthwise step: in float32 ONNX Conv with one group per channel on NCHW (its output in NCHW); in
    float64, on channels-last ``x``, each window tap times its per-channel weights, summed over the taps
    (its output channels-last)."""
    kernel = layer.params["depthwise_kernel"]
    kh, kw, c, dm = kernel.shape
    if native(g):
        inputs = [x, g.const(kernel.transpose(2, 3, 0, 1).reshape(c * dm, 1, kh, kw), "depthwise_kernel")]
        if bias is not None:
            inputs.append(g.const(bias, "bias"))
        return g.op("Conv", inputs, kernel_shape=[kh, kw], strides=list(layer.strides),
                    dilations=list(layer.dilation_rate), pads=_onnx_pads(layer._pads), group=c)
    total = None
    for k, tap in enumerate(_window_taps(layer, g, x, layer.kernel_size, layer.strides, layer.dilation_rate)):
        if dm > 1:  # (batch, oh, ow, channels, 1) times (channels, multiplier)
            tap = g.op("Reshape", [tap, g.ints([0, 0, 0, c, 1], "shape")])
        term = g.op("Mul", [tap, g.const(kernel[k // kw, k % kw] if dm > 1 else kernel[k // kw, k % kw, :, 0],
                                         "depthwise_kernel")])
        total = term if total is None else g.op("Add", [total, term])
    if dm > 1:
        total = g.op("Reshape", [total, g.ints([0, 0, 0, c * dm], "shape")])
    return total if bias is None else g.op("Add", [total, g.const(bias, "bias")])


@converts(L.DepthwiseConv2D)
def _depthwise_conv(layer: L.DepthwiseConv2D, g: Graph, x: str) -> str:
    """ONNX Conv with ``group`` = channels and weights ``(channels * multiplier, 1, kh, kw)``; in float64 the
    taps' per-channel products summed (:func:`_depthwise`)."""
    bias = layer.params.get("bias")
    if native(g):
        y = _from_first(layer, g, _depthwise(layer, g, _to_first(layer, g, x), bias))
    else:
        y = _from_last(layer, g, _depthwise(layer, g, _to_last(layer, g, x), bias))
    return activation(layer.activation, g, y)


@converts(L.SeparableConv2D)
def _separable_conv(layer: L.SeparableConv2D, g: Graph, x: str) -> str:
    """Two ONNX Conv nodes, the depthwise one (``group`` = channels) and a 1x1 one with the bias; in float64
    the depthwise taps summed, then a MatMul by the pointwise kernel."""
    pointwise, bias = layer.params["pointwise_kernel"], layer.params.get("bias")
    if native(g):
        d = _depthwise(layer, g, _to_first(layer, g, x), None)
        inputs = [d, g.const(pointwise.transpose(3, 2, 0, 1), "pointwise_kernel")]
        if bias is not None:
            inputs.append(g.const(bias, "bias"))
        y = _from_first(layer, g, g.op("Conv", inputs, kernel_shape=[1, 1]))
    else:
        d = _depthwise(layer, g, _to_last(layer, g, x), None)
        y = g.op("MatMul", [d, g.const(pointwise.reshape(-1, layer.filters), "pointwise_kernel")])
        if bias is not None:
            y = g.op("Add", [y, g.const(bias, "bias")])
        y = _from_last(layer, g, y)
    return activation(layer.activation, g, y)


@converts(L.MaxPooling2D)
def _max_pool(layer: L.MaxPooling2D, g: Graph, x: str) -> str:
    """MaxPool ignores padded positions, as barenet's -inf padding does."""
    y = g.op("MaxPool", [_to_first(layer, g, x)], kernel_shape=list(layer.pool_size), strides=list(layer.strides),
             pads=_onnx_pads(layer._pads))
    return _from_first(layer, g, y)


@converts(L.AveragePooling2D)
def _average_pool(layer: L.AveragePooling2D, g: Graph, x: str) -> str:
    """AveragePool with the layer's ``count_include_pad``; in float64 the window sum times 1 / (pixels
    counted)."""
    if native(g):
        y = g.op("AveragePool", [_to_first(layer, g, x)], kernel_shape=list(layer.pool_size),
                 strides=list(layer.strides), pads=_onnx_pads(layer._pads),
                 count_include_pad=int(layer.count_include_pad))
        return _from_first(layer, g, y)
    taps = _window_taps(layer, g, _to_last(layer, g, x), layer.pool_size, layer.strides, (1, 1))
    total = taps[0]
    for tap in taps[1:]:
        total = g.op("Add", [total, tap])
    y = g.op("Mul", [total, g.const(layer._scale[None, :, :, None], "inverse_count")])  # (1, oh, ow, 1)
    return _from_last(layer, g, y)


@converts(L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)
def _global_pool(layer: L.GlobalAveragePooling2D | L.GlobalMaxPooling2D, g: Graph, x: str) -> str:
    """GlobalAveragePool or GlobalMaxPool then Flatten to ``(batch, channels)``; ReduceMean or ReduceMax over the
    image axes in float64 (onnxruntime's GlobalMaxPool is float32 only)."""
    average = isinstance(layer, L.GlobalAveragePooling2D)
    if native(g):
        pooled = g.op("GlobalAveragePool" if average else "GlobalMaxPool", [_to_first(layer, g, x)])
        return g.op("Flatten", [pooled], axis=1)
    axes = [1, 2] if layer.data_format == "channels_last" else [2, 3]
    return g.reduce("ReduceMean" if average else "ReduceMax", x, axes, keepdims=0)


@converts(L.Add, L.Subtract, L.Multiply, L.Maximum)
def _merge(layer, g: Graph, xs: list[str]) -> str:
    op = {L.Add: "Add", L.Subtract: "Sub", L.Multiply: "Mul", L.Maximum: "Max"}[type(layer)]
    if op == "Max":
        return g.op("Max", list(xs))
    y = xs[0]
    for x in xs[1:]:
        y = g.op(op, [y, x])
    return y


@converts(L.Average)
def _average(layer: L.Average, g: Graph, xs: list[str]) -> str:
    return g.op("Mul", [g.op("Sum", list(xs)), g.const(np.array(1 / len(xs), dtype=layer.dtype))])


@converts(L.Concatenate)
def _concatenate(layer: L.Concatenate, g: Graph, xs: list[str]) -> str:
    return g.op("Concat", list(xs), axis=layer._sample_axis(len(layer.output_shape)) + 1)


@converts(L.MultiHeadAttention)
def _multi_head_attention(layer: L.MultiHeadAttention, g: Graph, xs: list[str], use_causal_mask: bool = False) -> str:
    """Projections as MatMuls on ``(batch, time, d)``, heads split by Reshape and Transpose, the masked softmax
    as Where and Softmax; a query with no allowed key gets zero weights (its row multiplied by 0), as in
    :func:`barenet.functional.scaled_dot_product_attention`."""
    heads = layer.num_heads
    (t, _), (s, _) = layer.input_shape[0], layer.input_shape[1]

    def project(x: str, name: str) -> str:
        kernel = layer.params[f"{name}_kernel"]
        width = kernel.shape[2]
        y = g.op("MatMul", [x, g.const(kernel.reshape(kernel.shape[0], -1), f"{name}_kernel")])
        if layer.use_bias:
            y = g.op("Add", [y, g.const(layer.params[f"{name}_bias"].reshape(-1), f"{name}_bias")])
        y = g.op("Reshape", [y, g.ints([0, 0, heads, width])])
        return g.op("Transpose", [y], perm=[0, 2, 1, 3])

    q, v, k = project(xs[0], "query"), project(xs[1], "value"), project(xs[2], "key")
    scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
    scores = g.op("Mul", [scores, g.const(1 / np.sqrt(layer.key_dim), "scale")])
    allowed = None
    if len(xs) == 4:
        allowed = g.op("Unsqueeze", [g.op("Not", [g.op("Equal", [xs[3], g.const(0.0, "zero")])]), g.ints([1])])
    if use_causal_mask:
        tri = g.const(np.tri(t, s, dtype=bool), "causal", dtype=bool)
        allowed = tri if allowed is None else g.op("And", [allowed, tri])
    if allowed is not None:
        scores = g.op("Where", [allowed, scores, g.const(-1e30, "masked")])
    probs = g.op("Softmax", [scores], axis=-1)
    if allowed is not None:
        any_allowed = g.reduce("ReduceMax", g.op("Cast", [allowed], to=g.elem_type), [-1], keepdims=1)
        probs = g.op("Mul", [probs, any_allowed])
    o = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    o = g.op("Reshape", [o, g.ints([0, 0, heads * layer.value_dim])])
    kernel = layer.params["output_kernel"]
    y = g.op("MatMul", [o, g.const(kernel.reshape(-1, kernel.shape[2]), "output_kernel")])
    if layer.use_bias:
        y = g.op("Add", [y, g.const(layer.params["output_bias"], "output_bias")])
    return y


@converts(L.UpSampling2D)
def _upsampling(layer: L.UpSampling2D, g: Graph, x: str) -> str:
    """Resize by whole scales in float32 (nearest: ``asymmetric`` coordinates rounded down, so output pixel ``o``
    copies ``o // size``; bilinear: ``half_pixel``); in float64, where onnxruntime has no Resize, the same linear
    maps as two MatMuls, :math:`A_h x A_w^\\top` (see :class:`~barenet.layers.UpSampling2D`)."""
    if native(g):
        scales = g.const(np.array([1, 1, *layer.size], dtype=np.float32), "scales", dtype=np.float32)
        if layer.interpolation == "nearest":
            y = g.op("Resize", [_to_first(layer, g, x), "", scales], mode="nearest",
                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        else:
            y = g.op("Resize", [_to_first(layer, g, x), "", scales], mode="linear",
                     coordinate_transformation_mode="half_pixel")
        return _from_first(layer, g, y)
    from ..layers.upsampling import bilinear_matrix

    h, w, _ = layer.image_shape(layer.input_shape)
    if layer.interpolation == "nearest":
        rows, cols = (np.repeat(np.eye(n), f, axis=0) for n, f in ((h, layer.size[0]), (w, layer.size[1])))
    else:
        rows, cols = bilinear_matrix(h, layer.size[0]), bilinear_matrix(w, layer.size[1])
    x = g.op("Transpose", [_to_last(layer, g, x)], perm=[0, 2, 3, 1])  # (N, W, C, H)
    x = g.op("MatMul", [x, g.const(rows.T, "rows")])  # (N, W, C, OH)
    x = g.op("Transpose", [x], perm=[0, 3, 2, 1])  # (N, OH, C, W)
    x = g.op("MatMul", [x, g.const(cols.T, "columns")])  # (N, OH, C, OW)
    return _from_last(layer, g, g.op("Transpose", [x], perm=[0, 1, 3, 2]))


@converts(L.ZeroPadding2D)
def _zero_padding(layer: L.ZeroPadding2D, g: Graph, x: str) -> str:
    (top, bottom), (left, right) = layer.padding
    if layer.data_format == "channels_last":
        pads = [0, top, left, 0, 0, bottom, right, 0]
    else:
        pads = [0, 0, top, left, 0, 0, bottom, right]
    return g.op("Pad", [x, g.ints(pads, "pads"), g.const(0.0, "zero")], mode="constant")


# ---------------------------------------------------------------------------------------- sequences
def _steps_first(layer, g: Graph, x: str) -> str:
    """``(N, C, L)`` for ONNX's pooling operators from the layer's layout, or back (the transpose is its own
    inverse)."""
    return x if layer.data_format == "channels_first" else g.op("Transpose", [x], perm=[0, 2, 1])


def _steps_last(layer, g: Graph, x: str) -> str:
    """``(N, L, C)`` from the layer's layout, or back."""
    return x if layer.data_format == "channels_last" else g.op("Transpose", [x], perm=[0, 2, 1])


@converts(L.MaxPooling1D)
def _max_pool_1d(layer: L.MaxPooling1D, g: Graph, x: str) -> str:
    (_, (before, after)) = layer._window()[2]
    y = g.op("MaxPool", [_steps_first(layer, g, x)], kernel_shape=[layer.pool_size], strides=[layer.strides],
             pads=[before, after])
    return _steps_first(layer, g, y)


@converts(L.AveragePooling1D)
def _average_pool_1d(layer: L.AveragePooling1D, g: Graph, x: str) -> str:
    """AveragePool with ``count_include_pad=0``; in float64 the window sums (strided Slices of the zero-padded
    sequence) times 1 / (steps inside)."""
    (_, (before, after)) = layer._window()[2]
    if native(g):
        y = g.op("AveragePool", [_steps_first(layer, g, x)], kernel_shape=[layer.pool_size],
                 strides=[layer.strides], pads=[before, after], count_include_pad=0)
        return _steps_first(layer, g, y)
    x = _steps_last(layer, g, x)
    if before or after:
        x = g.op("Pad", [x, g.ints([0, before, 0, 0, after, 0], "pads"), g.const(0.0, "zero")], mode="constant")
    out = layer.sequence_shape(layer.output_shape)[0]
    total = None
    for i in range(layer.pool_size):
        tap = g.op("Slice", [x, g.ints([i], "starts"), g.ints([i + (out - 1) * layer.strides + 1], "ends"),
                             g.ints([1], "axes"), g.ints([layer.strides], "steps")])
        total = tap if total is None else g.op("Add", [total, tap])
    return _steps_last(layer, g, g.op("Mul", [total, g.const(layer._scale.reshape(1, out, 1), "inverse_count")]))


@converts(L.GlobalAveragePooling1D, L.GlobalMaxPooling1D)
def _global_pool_1d(layer, g: Graph, x: str) -> str:
    """ReduceMean or ReduceMax over the steps."""
    op = "ReduceMean" if isinstance(layer, L.GlobalAveragePooling1D) else "ReduceMax"
    return g.reduce(op, x, [1 if layer.data_format == "channels_last" else 2], keepdims=0)
