"""The importer's part for Transformers: attention subgraphs as one MultiHeadAttention, per-position constants as
a PositionEmbedding, and steps taken from a sequence (a pooler's first token) as Cropping1D.

:class:`TransformerImport` is a base of the importer's translator; its methods use the translator's bookkeeping
(``_add``, ``_call``, ``_data``, ``values`` ...). The attention subgraphs are found before the walk
(:func:`._attention_scan.find_regions`); while the walk is inside one, :meth:`TransformerImport._attention_node`
follows the values symbolically (:mod:`._attention`) instead of making layers, and at its end makes the layer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import layers as L
from ..errors import BarenetError
from ._attention import BLOCKED, NanTest, Scores, Space, Sym, add_bias, project, read_attention, source_sym
from ._attention_scan import Region, find_regions, unflatten_rows
from ._checks import TENSOR_TYPES, bad, node_label
from ._fold import BATCH, Filled, has_batch, int_list, resolve_shape, slice_arguments, slice_index
from ._patterns import _constants

#: Operators read only inside attention subgraphs (besides those the importer reads anyway).
TRANSFORMER_OPS = frozenset({"IsNaN", "Split"})
#: (fewest, most) inputs of the operators added for Transformers.
TRANSFORMER_ARITY = {"Split": (1, 2), "GatherElements": (2, 2), "Equal": (2, 2), "And": (2, 2), "Mod": (2, 2),
                     "Range": (3, 3), "Trilu": (1, 2)}
_SYMBOLIC = (Sym, Scores, NanTest)


class TransformerImport:
    """Translator methods for Transformer models (a base class of the importer's translator)."""

    attention: dict[int, Region]

    def _prepare_transformer(self, order: list[Any]) -> list[Any]:
        """Pick out the attention subgraphs of the walk's ``order``; return the order with the projections that
        fold the batch into their rows unfolded (:func:`._attention_scan.unflatten_rows`)."""
        self.attention = find_regions(self.graph, order)
        consts = _constants(self.graph, order, self.opset, self.budget)
        order = unflatten_rows(self.graph, order, consts, set(self.attention), self.opset)
        self.attention = find_regions(self.graph, order)
        self._attention_spaces: dict[tuple[int, int], Space] = {}  # (region, tensor) -> the input's space
        self._positions: dict[int, L.PositionEmbedding] = {}  # id of an Add made here -> its PositionEmbedding
        return order

    def _in_attention(self, node: Any, inputs: list[Any]) -> bool:
        """Whether ``node`` belongs to an attention subgraph; a node outside one that reads a value inside one
        (other than its shape) is refused."""
        if id(node) in self.attention:
            return True
        if node.op_type != "Shape" and any(isinstance(x, _SYMBOLIC) for x in inputs):
            raise bad(f"{node_label(node)} reads a value from inside an attention computation; barenet imports "
                      "that computation as one MultiHeadAttention, whose intermediate values it does not keep")
        return False

    # ----------------------------------------------------------------- attention
    def _attention_node(self, node: Any, inputs: list[Any], attrs: dict[str, Any]) -> list[Any]:
        region = self.attention[id(node)]
        batch = self.fixed_batch or 2
        args = [self._attention_value(x, region, batch, node) for x in inputs]
        for x in {id(x.tensor): x for x in inputs if hasattr(x, "axes")}.values():
            self._consume(x, node)
        op = _OPERATORS.get(node.op_type)
        if op is None:
            raise bad(f"{node_label(node)} is a {node.op_type} inside {region.label}, where barenet reads only moves, "
                      "projections, the scores, their mask and softmax")
        outs = op(self, node, args, attrs, region.label)
        outs = outs if isinstance(outs, list) else [outs]
        for out in outs:
            if out is not None and math.prod(out.shape) > self.budget:
                raise bad(f"{node_label(node)} would make a tensor of shape {tuple(out.shape)} inside {region.label}, "
                          f"more than the {self.budget} elements allowed for a file of this size")
        if node.output[0] != region.end:
            return outs
        end = outs[0]
        if not isinstance(end, Sym):
            raise bad(f"{region.label} does not end in a projection of the attention's result")
        return [self._attention_layer(end, batch, region)]

    def _attention_value(self, x: Any, region: Region, batch: int, node: Any) -> Any:
        """An input of a node inside an attention subgraph: a data-path value becomes the subgraph's input
        (a :class:`Sym` over a space per barenet tensor), the batch size in folded constants ``batch``."""
        if hasattr(x, "axes"):  # a Data
            if any(a is not None and a < 0 for a in x.axes):
                raise bad(f"{node_label(node)} reads a bidirectional recurrent output inside {region.label}")
            key = (id(region), id(x.tensor))
            if math.prod(x.shape) * batch > self.budget:
                raise bad(f"{node_label(node)} reads samples of shape {x.shape} into {region.label}, more than the "
                          f"{self.budget} elements allowed for a file of this size")
            if key not in self._attention_spaces:
                self._attention_spaces[key] = Space((batch, *x.shape), tensor=x.tensor)
            return source_sym(self._attention_spaces[key], x.axes)
        if isinstance(x, Filled):
            if math.prod(batch if d is BATCH else d for d in x.shape) > self.budget:
                raise bad(f"{node_label(node)} reads a constant of shape {x.shape} larger than the file allows")
            return np.full(tuple(batch if d is BATCH else d for d in x.shape), x.value)
        if isinstance(x, np.ndarray) and has_batch(x):
            return np.array([batch if v is BATCH else v for v in x.reshape(-1)], dtype=np.int64).reshape(x.shape)
        return x

    def _attention_layer(self, end: Sym, batch: int, region: Region) -> Any:
        """The MultiHeadAttention the subgraph ending in ``end`` computes, called on the subgraph's inputs."""
        spec = read_attention(end, batch, region.label)
        query = spec.sources[0]
        layer = L.MultiHeadAttention(spec.heads, spec.key_dim, value_dim=spec.value_dim, use_bias=spec.use_bias,
                                     output_shape=None if spec.out_dim == query.shape[-1] else spec.out_dim)
        xs = [self._data(space.shape[1:], tuple(range(len(space.shape))), space.tensor) for space in spec.sources]
        try:
            shape = layer.compute_output_shape([x.shape for x in xs])
        except BarenetError as exc:  # the layer's own complaint about the sizes found
            raise bad(f"cannot import {region.label} as {layer.describe()}: {exc}") from None
        tensor = self._call(layer, xs, False, spec.arrays)
        if spec.causal:
            tensor.call.options = {"use_causal_mask": True}
        return self._data(shape, tuple(range(len(shape) + 1)), tensor)

    # ----------------------------------------------------------------- constants and steps
    def _add_constant(self, node: Any, x: Any, c: Any, refusal: str) -> Any:
        """``x + c`` for ``c`` one constant vector per position of ``(batch, time, features)`` sequences (position
        and token-type embeddings an exporter folded): a :class:`~barenet.layers.PositionEmbedding` holding
        ``c``, added by an :class:`~barenet.layers.Add`; a second such constant joins the first's table."""
        if not isinstance(c, np.ndarray) or c.dtype.kind != "f" or not x.plain or len(x.shape) != 2 \
                or c.ndim > len(x.axes):
            raise bad(refusal)
        table = c
        if table.ndim == len(x.axes) and table.shape[0] != 1:  # the batch size an export was made for
            if table.shape[0] != self.fixed_batch or np.any(table != table[:1]):
                raise bad(refusal)
            table = table[:1]
        table = table.reshape(table.shape[table.ndim - 2:]) if table.ndim > 2 and \
            all(d == 1 for d in table.shape[:-2]) else table
        if table.shape != x.shape:
            raise bad(refusal)
        table = self._weights(table, "constant", node, None)
        add = self._last_open((L.Add,), x)
        if add is not None and id(add) in self._positions:
            self._arrays(self._positions[id(add)])["embeddings"] += table
            return self._data(x.shape, x.axes)
        position = L.PositionEmbedding(x.shape[0], initializer="zeros")
        rows = self._add(position, x, embeddings=table)
        out = self._join(node, [x, rows], L.Add())
        self._positions[id(out.tensor.call.layer)] = position
        return out

    def _crop(self, node: Any, x: Any, axis: int, picked: range, keep: bool) -> Any:
        """Steps ``picked`` (consecutive) of ``(batch, time, features)`` sequences as
        :class:`~barenet.layers.Cropping1D` (``keep=False``: one step, its axis dropped, as ``Gather`` does)."""
        if not x.plain or len(x.shape) != 2 or axis != 1 or picked.step != 1 or not len(picked):
            raise bad(f"{node_label(node)} selects part of the data path {list(x.onnx_shape)}; barenet imports the "
                      "selection of consecutive steps of a sequence (batch, time, features) as Cropping1D, and of "
                      "the last step of a recurrent layer's output")
        steps, features = x.shape
        out = self._add(L.Cropping1D((picked.start, steps - picked.stop)), x)
        return out if keep else self._reshape(out, [BATCH, features], 0, node)


# --------------------------------------------------------------------- operators inside an attention subgraph
def _scalar(c: Any, node: Any, label: str) -> float:
    if not isinstance(c, np.ndarray) or c.dtype.kind not in "fiu" or c.size != 1:
        raise bad(f"{node_label(node)} scales a value inside {label} by something other than one constant number")
    value = float(c.reshape(-1)[0])
    if not math.isfinite(value) or value == 0:
        raise bad(f"{node_label(node)} scales a value inside {label} by {value}")
    return value


def _sym(x: Any, node: Any, label: str) -> Sym:
    if not isinstance(x, Sym):
        raise bad(f"{node_label(node)} moves something other than the queries, keys, values or result inside {label}")
    return x


def _moved(x: Sym, ref: np.ndarray) -> Sym:
    return Sym(np.asarray(ref), x.space, x.scale)


def _reshape(t, node, args, attrs, label):
    x, target = _sym(args[0], node, label), args[1]
    if not isinstance(target, np.ndarray) or target.ndim != 1 or target.dtype.kind not in "iu":
        raise bad(f"{node_label(node)} reshapes to a shape that is not a constant vector")
    shape = resolve_shape(list(x.shape), [int(d) for d in target], attrs.get("allowzero", 0), node)
    return _moved(x, x.ref.reshape(shape))


def _transpose(t, node, args, attrs, label):
    x = _sym(args[0], node, label)
    perm = attrs.get("perm", list(range(x.ref.ndim))[::-1])
    if sorted(perm) != list(range(x.ref.ndim)):
        raise bad(f"{node_label(node)} has perm {perm}, not a permutation of {x.ref.ndim} axes")
    return _moved(x, x.ref.transpose(perm))


def _squeeze(t, node, args, attrs, label):
    x = _sym(args[0], node, label)
    axes = t.folder._axes(node, args, attrs)
    try:
        return _moved(x, np.squeeze(x.ref, axis=None if axes is None else tuple(axes)))
    except ValueError as exc:
        raise bad(f"cannot evaluate {node_label(node)}: {exc}") from None


def _unsqueeze(t, node, args, attrs, label):
    x = _sym(args[0], node, label)
    axes = t.folder._axes(node, args, attrs)
    rank = x.ref.ndim + len(axes or [])
    if not axes or any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise bad(f"{node_label(node)} has axes {axes} for a {x.ref.ndim}-d tensor")
    return _moved(x, np.expand_dims(x.ref, tuple(a % rank for a in axes)))


def _flatten(t, node, args, attrs, label):
    x = _sym(args[0], node, label)
    axis = attrs.get("axis", 1)
    if not -x.ref.ndim <= axis <= x.ref.ndim:
        raise bad(f"{node_label(node)} has axis {axis} for a {x.ref.ndim}-d tensor")
    return _moved(x, x.ref.reshape(math.prod(x.shape[:axis]), -1))


def _identity(t, node, args, attrs, label):
    return args[0]


def _cast(t, node, args, attrs, label):
    to = TENSOR_TYPES.get(attrs.get("to"))
    if to is None or to[0].kind != "f":
        raise bad(f"{node_label(node)} casts a value inside {label} to ONNX type {attrs.get('to')}")
    return args[0]


def _dropout(t, node, args, attrs, label):
    if len(node.output) > 1 and node.output[1] and t.uses.get(node.output[1]):
        raise bad(f"{node_label(node)} outputs its mask; barenet imports inference-mode Dropout only")
    if len(args) > 2 and args[2] is not None and np.any(args[2]):
        raise bad(f"{node_label(node)} is in training mode; export the model in eval mode")
    return [args[0], None]


def _gather(t, node, args, attrs, label):
    x, idx = _sym(args[0], node, label), args[1]
    if not isinstance(idx, np.ndarray) or idx.dtype.kind not in "iu":
        raise bad(f"{node_label(node)} gathers with indices that are not constant integers")
    axis = attrs.get("axis", 0)
    try:
        return _moved(x, np.take(x.ref, idx, axis=axis))
    except (IndexError, ValueError, np.exceptions.AxisError) as exc:
        raise bad(f"cannot evaluate {node_label(node)}: {exc}") from None


def _split(t, node, args, attrs, label):
    x = _sym(args[0], node, label)
    axis = attrs.get("axis", 0)
    if not -x.ref.ndim <= axis < x.ref.ndim:
        raise bad(f"{node_label(node)} splits axis {axis} of a {x.ref.ndim}-d tensor")
    length = x.shape[axis]
    if len(args) > 1 and args[1] is not None:
        sizes = int_list(args[1], "split", node)
    elif "split" in attrs:
        sizes = attrs["split"]
    else:
        parts = attrs.get("num_outputs", len(node.output))
        step = -(-length // parts)
        sizes = [min(step, length - k * step) for k in range(parts)]
    if sum(sizes) != length or len(sizes) != len(node.output) or min(sizes) < 0:
        raise bad(f"{node_label(node)} splits {length} entries into {sizes} for {len(node.output)} outputs")
    return [_moved(x, part) for part in np.split(x.ref, np.cumsum(sizes)[:-1], axis=axis)]


def _slice(t, node, args, attrs, label):
    x = _sym(args[0], node, label)
    index = slice_index(list(x.shape), *slice_arguments(node, args, attrs, t.opset), node)
    return _moved(x, x.ref[tuple(index)])


def _mul(t, node, args, attrs, label, divide=False):
    k = 0 if isinstance(args[0], _SYMBOLIC) else 1
    x, c = args[k], args[1 - k]
    if divide and k != 0:
        raise bad(f"{node_label(node)} divides a constant by a value inside {label}")
    if isinstance(x, Scores) and x.softmax and not divide:
        return _weights_times(x, c, node, label)
    value = _scalar(c, node, label)
    value = 1 / value if divide else value
    if isinstance(x, Scores) and not x.softmax:
        x.scale *= value
        x.bias = x.bias * value
        return x
    x = _sym(x, node, label)
    return Sym(x.ref, x.space, x.scale * value)


def _div(t, node, args, attrs, label):
    return _mul(t, node, args, attrs, label, divide=True)


def _weights_times(probs: Scores, c: Any, node: Any, label: str) -> Scores:
    """A ``Mul`` of the attention weights by a constant that keeps them (1 on every row with an allowed key, 0 on
    rows without one, as barenet's own export writes it)."""
    if not isinstance(c, np.ndarray) or c.dtype.kind not in "fiub":
        raise bad(f"{node_label(node)} multiplies the attention weights inside {label} by a non-constant")
    try:
        c = np.broadcast_to(c.astype(np.float64), probs.shape)
    except ValueError:
        raise bad(f"{node_label(node)} multiplies the attention weights by a constant of shape {c.shape}") from None
    open_rows = ~(probs.blocked | (probs.bias <= BLOCKED)).all(axis=-1, keepdims=True)
    if np.any(np.where(open_rows, c != 1, c != 0)):
        raise bad(f"{node_label(node)} multiplies the attention weights inside {label} by a constant other than "
                  "1 (0 where a query may attend to no key); barenet's attention does not reweight them")
    return probs


def _add(t, node, args, attrs, label, sign=1.0):
    k = 0 if isinstance(args[0], _SYMBOLIC) else 1
    x, c = args[k], args[1 - k]
    if sign < 0 and k != 0:
        raise bad(f"{node_label(node)} subtracts a value inside {label} from a constant")
    if not isinstance(c, np.ndarray) or c.dtype.kind != "f":
        raise bad(f"{node_label(node)} adds a non-constant or non-float value inside {label}")
    if isinstance(x, Scores) and not x.softmax:
        try:
            x.bias = x.bias + sign * np.broadcast_to(c.astype(np.float64), x.shape)
        except ValueError:
            raise bad(f"{node_label(node)} adds a constant of shape {c.shape} to scores of shape "
                      f"{list(x.shape)}") from None
        return x
    return add_bias(_sym(x, node, label), sign * c, node_label(node))


def _sub(t, node, args, attrs, label):
    return _add(t, node, args, attrs, label, sign=-1.0)


def _where(t, node, args, attrs, label):
    cond, a, b = args
    if isinstance(cond, NanTest):  # Where(IsNaN(p), 0, p): zero weights for rows that allow no key
        if b is not cond.probs or not isinstance(a, np.ndarray) or np.any(a != 0):
            raise bad(f"{node_label(node)} replaces NaN attention weights by something other than 0")
        return b
    scores = a if isinstance(a, Scores) else b
    fill = b if scores is a else a
    if not isinstance(scores, Scores) or scores.softmax or not isinstance(cond, np.ndarray) \
            or cond.dtype != np.bool_ or not isinstance(fill, np.ndarray) or fill.dtype.kind != "f":
        raise bad(f"{node_label(node)} selects inside {label} other than a constant mask of the scores")
    if np.any(fill > BLOCKED):
        raise bad(f"{node_label(node)} fills masked scores with {float(np.max(fill))}; barenet masks with a large "
                  "negative value (a key is blocked)")
    try:
        blocked = np.broadcast_to(~cond if scores is a else cond, scores.shape)
    except ValueError:
        raise bad(f"{node_label(node)} masks scores of shape {list(scores.shape)} with {list(cond.shape)}") from None
    scores.blocked = scores.blocked | blocked
    return scores


def _is_nan(t, node, args, attrs, label):
    if not isinstance(args[0], Scores) or not args[0].softmax:
        raise bad(f"{node_label(node)} tests for NaN inside {label} other than the attention weights")
    return NanTest(args[0])


def _softmax(t, node, args, attrs, label):
    scores = args[0]
    if not isinstance(scores, Scores) or scores.softmax:
        raise bad(f"{node_label(node)} takes a softmax inside {label} of something other than the scores")
    rank = len(scores.shape)
    axis = attrs.get("axis", -1 if t.opset >= 13 else 1)
    if axis % rank != rank - 1:
        raise bad(f"{node_label(node)} takes the softmax of the scores over axis {axis}; attention takes it over "
                  "the keys (the last axis)")
    scores.softmax = True
    return scores


def _matmul(t, node, args, attrs, label):
    a, b = args
    if isinstance(a, Sym) and isinstance(b, Sym):  # the scores
        if a.ref.ndim != b.ref.ndim or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
            raise bad(f"{node_label(node)} multiplies {list(a.shape)} by {list(b.shape)}; attention multiplies "
                      "queries (..., T, d) by keys (..., d, S)")
        shape = (*a.shape[:-1], b.shape[-1])
        return Scores(a, b, bias=np.zeros(shape), blocked=np.zeros(shape, dtype=bool))
    if isinstance(a, Scores) and isinstance(b, Sym):  # the weights times the values
        if not a.softmax or b.shape[:-1] != (*a.shape[:-2], a.shape[-1]):
            raise bad(f"{node_label(node)} multiplies the attention scores (before their softmax, or of shape "
                      f"{list(a.shape)}) by values of shape {list(b.shape)}")
        shape = (*a.shape[:-1], b.shape[-1])
        space = Space(shape, scores=a, values=b)
        return Sym(np.arange(math.prod(shape), dtype=np.int64).reshape(shape), space)
    x = _sym(a, node, label)
    w = t._weights(b, "weight", node, (2,))
    if w.shape[0] != x.shape[-1]:
        raise bad(f"{node_label(node)} has weights {w.shape} for {x.shape[-1]} input features")
    return project(x, w.astype(np.float64))


def _gemm(t, node, args, attrs, label):
    x = _sym(args[0], node, label)
    if attrs.get("transA", 0) or x.ref.ndim != 2:
        raise bad(f"{node_label(node)} must take a 2-d, untransposed input inside {label}")
    w = t._weights(args[1], "weight B", node, (2,)).astype(np.float64)
    w = (w.T if attrs.get("transB", 0) else w) * attrs.get("alpha", 1.0)
    if w.shape[0] != x.shape[-1]:
        raise bad(f"{node_label(node)} has weights {w.shape} for {x.shape[-1]} input features")
    y = project(x, w)
    if len(args) > 2 and args[2] is not None:
        y = add_bias(y, t._weights(args[2], "bias C", node, None) * attrs.get("beta", 1.0), node_label(node))
    return y


_OPERATORS = {
    "Reshape": _reshape, "Transpose": _transpose, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze, "Flatten": _flatten,
    "Identity": _identity, "Cast": _cast, "Dropout": _dropout, "Gather": _gather, "Split": _split, "Slice": _slice,
    "Mul": _mul, "Div": _div, "Add": _add, "Sub": _sub, "Where": _where, "IsNaN": _is_nan, "Softmax": _softmax,
    "MatMul": _matmul, "Gemm": _gemm,
}
