"""Which function writes which layer: ``layer class -> converter``.

A converter ``convert(layer, graph, x) -> y`` appends the nodes and initializers that compute the built
``layer``'s inference-mode forward pass on the tensor named ``x`` (laid out as the layer takes it, batch
first) and returns the name of the output tensor (laid out as the layer returns it). It writes the operator forms
of the graph's opset (``graph.opset``, from :data:`~barenet.onnx.graph.MIN_OPSET`); an operator that opset lacks
is refused by :meth:`Graph.op` with an :class:`OnnxExportError` naming the layer, the operator and the opset it
needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..layers.base import Layer
from .graph import Graph, OnnxExportError

Converter = Callable[[Any, Graph, str], str]
_CONVERTERS: dict[type[Layer], Converter] = {}


def converts(*classes: type[Layer]) -> Callable[[Converter], Converter]:
    """Decorator: register ``fn`` as the converter of exactly these classes (not their subclasses,
    whose ``forward`` may differ)."""
    def decorate(fn: Converter) -> Converter:
        for cls in classes:
            _CONVERTERS[cls] = fn
        return fn
    return decorate


def converter_for(layer: Layer) -> Converter:
    """The converter of ``type(layer)``, or :class:`OnnxExportError` naming the layer."""
    try:
        return _CONVERTERS[type(layer)]
    except KeyError:
        known = sorted(cls.__name__ for cls in _CONVERTERS)
        raise OnnxExportError(f"layer {type(layer).__qualname__} ({layer.describe()}, from module "
                              f"{type(layer).__module__}) has no ONNX form; exportable layers are {known}") from None


def convert(layer: Layer, graph: Graph, x: Any, **options: Any) -> str:
    """Append ``layer`` to ``graph`` on input ``x`` (a name, or a list of names for a layer of several inputs)
    with a graph call's ``options``; return the output tensor's name. While it runs, ``graph.layer`` is ``layer``,
    so that an operator the graph's opset lacks is refused naming it."""
    fn = converter_for(layer)
    outer, graph.layer = graph.layer, layer
    try:
        return fn(layer, graph, x, **options)
    finally:
        graph.layer = outer


def supported_layers() -> list[str]:
    """Names of the layer classes that can be exported."""
    return sorted(cls.__name__ for cls in _CONVERTERS)
