"""Converters of SimpleRNN, LSTM, GRU and Bidirectional.

float32 layers become ONNX's RNN, LSTM and GRU operators. ONNX lays a layer's weights out per direction as
``W : (dirs, gates*units, features)``, ``R : (dirs, gates*units, units)`` and ``B : (dirs, 2*gates*units)``
(input biases, then recurrent biases), i.e. barenet's ``kernel.T`` and ``recurrent_kernel.T``. Gate orders:

========  =====================  ======================
layer     barenet                ONNX
========  =====================  ======================
LSTM      input, forget, cell,   input, output, forget,
          output (i f g o)       cell (i o f c)
GRU       update, reset,         update, reset,
          candidate (z r h)      hidden (z r h)
========  =====================  ======================

GRU's ``reset_after=True`` is ONNX's ``linear_before_reset=1``; its bias rows are ONNX's input and
recurrent biases. The operators run time-major, so the input is transposed to ``(time, batch, features)``.

onnxruntime runs those operators in float32 only, and SimpleRNN's activation may be one ONNX's RNN does
not offer; such layers are unrolled over their (fixed) number of time steps into MatMul, Add and the
activations, step by step as barenet computes them.
"""

from __future__ import annotations

import numpy as np

from .. import layers as L
from ..layers.recurrent import Recurrent
from .graph import Graph
from .layers import activation, native
from .registry import converts

_LSTM_ORDER = (0, 3, 1, 2)  # barenet's (i, f, g, o) blocks in ONNX's (i, o, f, c) order
_RNN_ACTIVATIONS = {"tanh": "Tanh", "relu": "Relu", "sigmoid": "Sigmoid"}


def _blocks(a: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    """Reorder the gate blocks along the last axis of ``a``."""
    parts = np.split(a, len(order), axis=-1)
    return np.concatenate([parts[k] for k in order], axis=-1)


def _onnx_weights(layer: Recurrent) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(W, R, B)`` of one direction: ``(gates*units, features)``, ``(gates*units, units)``, ``(2*gates*units,)``."""
    W, U, b = layer.params["kernel"], layer.params["recurrent_kernel"], layer.params["bias"]
    if isinstance(layer, L.GRU):
        b_in, b_rec = (b[0], b[1]) if layer.reset_after else (b, np.zeros_like(b))
    else:
        b_in, b_rec = b, np.zeros_like(b)
    if isinstance(layer, L.LSTM):
        W, U, b_in, b_rec = (_blocks(a, _LSTM_ORDER) for a in (W, U, b_in, b_rec))
    return W.T, U.T, np.concatenate([b_in, b_rec])


def _native_possible(layer: Recurrent, g: Graph) -> bool:
    if not native(g):
        return False
    return not isinstance(layer, L.SimpleRNN) or layer._activation.kind in _RNN_ACTIVATIONS


def _native(layers: list[Recurrent], g: Graph, x: str) -> list[str]:
    """One ONNX recurrent node for one layer (or a forward/backward pair); returns per direction the output,
    ``(batch, time, units)`` with ``return_sequences`` else ``(batch, units)``."""
    first = layers[0]
    op = {L.SimpleRNN: "RNN", L.LSTM: "LSTM", L.GRU: "GRU"}[type(first)]
    weights = [_onnx_weights(layer) for layer in layers]
    W, R, B = (np.stack([w[k] for w in weights]) for k in range(3))
    attrs = {"hidden_size": first.units, "direction": "bidirectional" if len(layers) == 2 else "forward"}
    if isinstance(first, L.GRU):
        attrs["linear_before_reset"] = int(first.reset_after)
    if isinstance(first, L.SimpleRNN):
        attrs["activations"] = [_RNN_ACTIVATIONS[first._activation.kind]] * len(layers)
    xt = g.op("Transpose", [x], perm=[1, 0, 2])
    Y, Y_h = g.op(op, [xt, g.const(W, "W"), g.const(R, "R"), g.const(B, "B")], outputs=2, **attrs)
    outs = []
    for d in range(len(layers)):
        if first.return_sequences:  # Y : (time, dirs, batch, units)
            y = g.op("Gather", [Y, g.ints(d, "direction")], axis=1)
            outs.append(g.op("Transpose", [y], perm=[1, 0, 2]))
        else:  # Y_h : (dirs, batch, units)
            outs.append(g.op("Gather", [Y_h, g.ints(d, "direction")], axis=0))
    return outs


def _zeros_state(layer: Recurrent, g: Graph, x: str) -> str:
    """Zeros ``(batch, units)`` in the graph's dtype, the batch taken from ``x``."""
    batch = g.batch_size(x)
    shape = g.op("Concat", [batch, g.ints([layer.units], "units")], axis=0)
    zero = g.onnx.helper.make_tensor("zero", g.elem_type, [1], [0.0])
    return g.op("ConstantOfShape", [shape], value=zero)


def _split(g: Graph, a: str, parts: int, units: int) -> list[str]:
    out = g.op("Split", [a, g.ints([units] * parts, "split")], outputs=parts, axis=-1)
    return out if parts > 1 else [out]


def _unrolled(layer: Recurrent, g: Graph, x: str, reverse: bool) -> str:
    """The recurrence written out step by step; reads ``x`` backwards in time when ``reverse`` and then puts
    each output at the position of the step that produced it, as :class:`~barenet.layers.Bidirectional` does."""
    n, steps = layer.units, layer.input_shape[0]
    W, U, b = layer.params["kernel"], layer.params["recurrent_kernel"], layer.params["bias"]
    gru_after = isinstance(layer, L.GRU) and layer.reset_after
    XW = g.op("Add", [g.op("MatMul", [x, g.const(W, "kernel")]), g.const(b[0] if gru_after else b, "bias")])
    if isinstance(layer, L.GRU) and not gru_after:  # the candidate's recurrent product comes after the reset
        U_zr, U_h = g.const(U[:, :2 * n], "recurrent_kernel_zr"), g.const(U[:, 2 * n:], "recurrent_kernel_h")
    else:
        U_name = g.const(U, "recurrent_kernel")
    b_rec = g.const(b[1], "recurrent_bias") if gru_after else None
    h = _zeros_state(layer, g, x)
    c = h if isinstance(layer, L.LSTM) else None
    outputs: dict[int, str] = {}
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        a = g.op("Gather", [XW, g.ints(t, "step")], axis=1)  # (batch, gates*units)
        if isinstance(layer, L.SimpleRNN):
            h = activation(layer._activation, g, g.op("Add", [a, g.op("MatMul", [h, U_name])]))
        elif isinstance(layer, L.LSTM):
            i, f, cand, o = _split(g, g.op("Add", [a, g.op("MatMul", [h, U_name])]), 4, n)
            i, f, o = (g.op("Sigmoid", [v]) for v in (i, f, o))
            c = g.op("Add", [g.op("Mul", [f, c]), g.op("Mul", [i, g.op("Tanh", [cand])])])
            h = g.op("Mul", [o, g.op("Tanh", [c])])
        else:
            a_zr, a_h = g.op("Split", [a, g.ints([2 * n, n], "split")], outputs=2, axis=-1)
            if gru_after:
                u_zr, u_h = g.op("Split", [g.op("Add", [g.op("MatMul", [h, U_name]), b_rec]),
                                           g.ints([2 * n, n], "split")], outputs=2, axis=-1)
                z, r = _split(g, g.op("Sigmoid", [g.op("Add", [a_zr, u_zr])]), 2, n)
                hh = g.op("Tanh", [g.op("Add", [a_h, g.op("Mul", [r, u_h])])])
            else:
                z, r = _split(g, g.op("Sigmoid", [g.op("Add", [a_zr, g.op("MatMul", [h, U_zr])])]), 2, n)
                hh = g.op("Tanh", [g.op("Add", [a_h, g.op("MatMul", [g.op("Mul", [r, h]), U_h])])])
            h = g.op("Add", [hh, g.op("Mul", [z, g.op("Sub", [h, hh])])])
        outputs[t] = h
    if not layer.return_sequences:
        return h
    steps_out = [g.op("Unsqueeze", [outputs[t], g.ints([1], "axes")]) for t in range(steps)]
    return steps_out[0] if steps == 1 else g.op("Concat", steps_out, axis=1)


@converts(L.SimpleRNN, L.LSTM, L.GRU)
def _recurrent(layer: Recurrent, g: Graph, x: str) -> str:
    if _native_possible(layer, g):
        return _native([layer], g, x)[0]
    return _unrolled(layer, g, x, reverse=False)


@converts(L.Bidirectional)
def _bidirectional(layer: L.Bidirectional, g: Graph, x: str) -> str:
    """Both directions (one ``direction="bidirectional"`` node when native), merged as ``merge_mode`` says."""
    fwd, bwd = layer.forward_layer, layer.backward_layer
    if _native_possible(fwd, g):
        yf, yb = _native([fwd, bwd], g, x)
    else:
        yf, yb = _unrolled(fwd, g, x, reverse=False), _unrolled(bwd, g, x, reverse=True)
    if layer.merge_mode == "concat":
        return g.op("Concat", [yf, yb], axis=-1)
    if layer.merge_mode == "sum":
        return g.op("Add", [yf, yb])
    if layer.merge_mode == "mul":
        return g.op("Mul", [yf, yb])
    return g.op("Mul", [g.op("Add", [yf, yb]), g.const(0.5, "half")])
