"""The graph under construction: nodes, initializers and fresh names, in one dtype.

Converters (see :mod:`barenet.onnx.layers`) call :meth:`Graph.op` and :meth:`Graph.const` and pass tensor
*names* around; nothing here knows about layers. ``onnx`` is imported lazily, so that importing barenet
never needs it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BarenetError

#: The opset written when none is asked for: supported by onnxruntime >= 1.18 and onnx >= 1.16.
DEFAULT_OPSET = 21
#: The oldest opset the converters can write: from 13 ``Split`` takes its sizes, ``Unsqueeze`` and ``ReduceSum``
#: their axes, ``Pad``, ``Clip``, ``Slice`` and ``Resize`` their arguments as inputs, as the converters write them.
#: Operators added later are written out below the opset that brought them (``HardSwish`` 14, ``Shape`` with
#: ``start`` 15, ``LayerNormalization`` 17, ``Mish`` 18, ``Gelu`` 20) and the reductions take ``axes`` as an
#: attribute below 18 (see :meth:`Graph.reduce`).
MIN_OPSET = 13


class OnnxExportError(BarenetError, ValueError):
    """A model (or one of its layers) cannot be written as an ONNX graph, or the opset is unusable."""


class MissingOnnxError(BarenetError, ImportError):
    """The optional ``onnx`` package is not installed."""


def require_onnx():
    """The ``onnx`` module, or :class:`MissingOnnxError` saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise MissingOnnxError('ONNX export needs the onnx package; install it with pip install "barenet[onnx]"') \
            from None
    return onnx


class Graph:
    """Nodes and initializers of one ONNX graph whose float tensors all have ``dtype``.

    Parameters
    ----------
    dtype : float32 or float64
        The element type of every float initializer made by :meth:`const`.
    opset : int
        The default-domain opset the graph will declare; converters read it to choose operator forms.
    """

    def __init__(self, dtype: Any, opset: int) -> None:
        self.onnx = require_onnx()
        self.dtype = np.dtype(dtype)
        self.opset = int(opset)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.domains: dict[str, int] = {}
        #: The layer being converted (set by :func:`barenet.onnx.registry.convert`), named in errors.
        self.layer: Any = None
        self._used: set[str] = set()
        self._known: set[tuple[str, str]] = set()

    @property
    def elem_type(self) -> int:
        """The ONNX element type of ``dtype`` (``TensorProto.FLOAT`` or ``DOUBLE``)."""
        return self.onnx.helper.np_dtype_to_tensor_dtype(self.dtype)

    def fresh(self, base: str) -> str:
        """A tensor or node name starting with ``base`` that is not used yet."""
        name, k = base, 1
        while name in self._used:
            name, k = f"{base}_{k}", k + 1
        self._used.add(name)
        return name

    def reserve(self, name: str) -> str:
        """Claim an exact name (a graph input or output); it must be free."""
        if name in self._used:
            raise OnnxExportError(f"the graph already has a tensor named {name!r}")
        self._used.add(name)
        return name

    def const(self, value: Any, base: str = "const", *, dtype: Any = None) -> str:
        """Add ``value`` as an initializer (floats in the graph's dtype unless ``dtype`` says otherwise)."""
        array = np.asarray(value)
        if dtype is not None:
            array = array.astype(dtype)
        elif array.dtype.kind == "f":
            array = array.astype(self.dtype)
        elif array.dtype.kind in "iub":
            array = array.astype(np.int64)
        name = self.fresh(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(array.copy(order="C"), name))
        return name

    def ints(self, values: Any, base: str = "shape") -> str:
        """An int64 initializer (shapes, axes, indices)."""
        return self.const(np.asarray(values, dtype=np.int64), base, dtype=np.int64)

    def op(self, op_type: str, inputs: list[str], *, outputs: int = 1, domain: str = "", name: str | None = None,
           out_names: list[str] | None = None, **attrs: Any) -> Any:
        """Append a node; return its output name (or the list of names when ``outputs > 1``).

        ``attrs`` set to ``None`` are left out. ``domain`` other than the default one (``ai.onnx.ml``)
        is recorded so the model declares it.
        """
        base = name or op_type.lower()
        outs = out_names or [self.fresh(f"{base}_out" if outputs == 1 else f"{base}_out{k}") for k in range(outputs)]
        if domain:
            self.domains[domain] = 3 if domain == "ai.onnx.ml" else 1
        self._require(op_type, domain)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outs, name=self.fresh(base), domain=domain,
                                                     **attrs))
        return outs[0] if outputs == 1 else outs

    def reduce(self, op_type: str, x: str, axes: list[int], *, keepdims: int) -> str:
        """``op_type`` (``ReduceMean``, ``ReduceMax``, ``ReduceSum``, ...) of ``x`` over ``axes``: the axes as an
        int64 input from opset 18 (``ReduceSum``: from 13), as the ``axes`` attribute before."""
        if self.opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, [x, self.ints(axes, "axes")], keepdims=keepdims)
        return self.op(op_type, [x], axes=[int(a) for a in axes], keepdims=keepdims)

    def batch_size(self, x: str) -> str:
        """The int64 tensor ``[batch]``: the first entry of ``Shape(x)`` (``Shape`` with ``end`` from opset 15,
        a ``Slice`` of it before)."""
        if self.opset >= 15:
            return self.op("Shape", [x], start=0, end=1)
        return self.op("Slice", [self.op("Shape", [x]), self.ints([0], "starts"), self.ints([1], "ends")])

    def _require(self, op_type: str, domain: str) -> None:
        """Refuse an operator the graph's opset (of its domain) does not have, naming the layer being converted,
        the operator and the first opset that has it. Operators of domains onnx does not define (a runtime's own)
        are not checked, as onnx's checker does not check them."""
        if (op_type, domain) in self._known or domain not in ("", "ai.onnx.ml"):
            return
        defs = self.onnx.defs
        version = self.domains.get(domain, 1) if domain else self.opset
        try:
            defs.get_schema(op_type, version, domain)
        except defs.SchemaError:
            where = self.layer.describe() if self.layer is not None else "the graph"
            since = min((s.since_version for s in defs.get_all_schemas_with_history()
                         if s.name == op_type and s.domain == domain), default=None)
            if since is None:
                raise OnnxExportError(f"{where} needs the ONNX operator {op_type!r}, which this onnx package does not "
                                      f"know in domain {domain or 'ai.onnx'!r}") from None
            if domain:
                raise OnnxExportError(f"{where} needs the ONNX operator {op_type!r}, which version {version} of domain "
                                      f"{domain!r} does not have; it needs version {since} or newer") from None
            raise OnnxExportError(f"{where} needs the ONNX operator {op_type!r}, which opset {version} does not have; "
                                  f"it needs opset {since} or newer (export with opset={since})") from None
        self._known.add((op_type, domain))

    def simplify(self, outputs: list[str]) -> None:
        """Drop pairs of Transposes that undo each other (channels-last layers side by side put one
        after the other) and every node no graph output depends on."""
        producer = {out: node for node in self.nodes for out in node.output}
        rename: dict[str, str] = {}
        for node in self.nodes:
            if node.op_type != "Transpose" or node.domain:
                continue
            first = producer.get(rename.get(node.input[0], node.input[0]))
            if first is None or first.op_type != "Transpose":
                continue
            p1 = list(self.onnx.helper.get_attribute_value(first.attribute[0]))
            p2 = list(self.onnx.helper.get_attribute_value(node.attribute[0]))
            if [p1[i] for i in p2] == list(range(len(p1))):
                rename[node.output[0]] = first.input[0]
        def resolve(name: str) -> str:
            while name in rename:
                name = rename[name]
            return name

        for node in self.nodes:
            for k, name in enumerate(node.input):
                node.input[k] = resolve(name)
        for name in outputs:
            if name in rename:  # a graph output must stay the named tensor: keep an Identity
                self.nodes.append(self.onnx.helper.make_node("Identity", [resolve(name)], [name],
                                                             name=self.fresh("identity")))
        needed = set(outputs)
        kept = []
        for node in reversed(self.nodes):
            if any(out in needed for out in node.output) and not (node.op_type == "Transpose"
                                                                  and node.output[0] in rename):
                kept.append(node)
                needed.update(node.input)
        self.nodes = kept[::-1]
        self.initializers = [t for t in self.initializers if t.name in needed]

