"""Converters of the feed-forward layers: Dense, activations, Dropout, RandomFlip, BatchNormalization,
Conv2D, Conv1D, DepthwiseConv2D, SeparableConv2D, pooling, Flatten, Reshape and Embedding.

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

from .. import layers as L
from ..layers.activations import Activation
from ..layers.conv import ImageLayer
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
        if g.opset >= 20 and native(g):  # onnxruntime's float64 Gelu is only float32-accurate
            return g.op("Gelu", [x], approximate="tanh")
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.op("Mul", [g.op("Mul", [x, x]), x])
        inner = g.op("Add", [x, g.op("Mul", [cube, g.const(0.044715, "gelu_a")])])
        t = g.op("Tanh", [g.op("Mul", [inner, g.const(np.sqrt(2 / np.pi), "gelu_c")])])
        half_x = g.op("Mul", [x, g.const(0.5, "half")])
        return g.op("Mul", [half_x, g.op("Add", [t, g.const(1.0, "one")])])
    raise OnnxExportError(f"activation {kind!r} has no ONNX form")


@converts(L.Linear, L.ReLU, L.LeakyReLU, L.ELU, L.GELU, L.Sigmoid, L.Tanh, L.Softmax)
def _activation_layer(layer: Activation, g: Graph, x: str) -> str:
    return activation(layer, g, x)


@converts(L.Dropout, L.RandomFlip)
def _identity(layer, g: Graph, x: str) -> str:
    """Dropout and random flips change training batches only; at inference they pass ``x`` through."""
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


@converts(L.Embedding)
def _embedding(layer: L.Embedding, g: Graph, x: str) -> str:
    """``embeddings[x]`` as Gather; ids arrive as int64 (a float input is cast first)."""
    return g.op("Gather", [g.const(layer.params["embeddings"], "embeddings"), x], axis=0)


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


@converts(L.GlobalAveragePooling2D)
def _global_average_pool(layer: L.GlobalAveragePooling2D, g: Graph, x: str) -> str:
    """GlobalAveragePool then Flatten to ``(batch, channels)``; ReduceMean over the image axes in float64."""
    if native(g):
        return g.op("Flatten", [g.op("GlobalAveragePool", [_to_first(layer, g, x)])], axis=1)
    axes = [1, 2] if layer.data_format == "channels_last" else [2, 3]
    return g.op("ReduceMean", [x, g.ints(axes, "axes")], keepdims=0)
