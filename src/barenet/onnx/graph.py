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
#: The oldest opset the converters can write (``ReduceMean`` with axes as an input, ``Split`` by sizes).
MIN_OPSET = 18


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
        self._used: set[str] = set()

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
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, outs, name=self.fresh(base), domain=domain,
                                                     **attrs))
        return outs[0] if outputs == 1 else outs

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
