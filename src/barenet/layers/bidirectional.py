"""Bidirectional: run a recurrent layer forwards and a copy of it backwards in time, and merge the two."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import Layer, layer_class, register
from .recurrent import Recurrent

MERGE_MODES = ("concat", "sum", "mul", "ave")


@register
class Bidirectional(Layer):
    r"""Wrap a recurrent layer so that each output sees the whole sequence, past and future.

    Parameters
    ----------
    layer : Recurrent
        An unbuilt SimpleRNN, LSTM or GRU; it reads the sequence forwards, and a fresh layer with the same
        configuration (its own weights) reads it backwards.
    merge_mode : {"concat", "sum", "mul", "ave"}
        How the two outputs are combined.

    Shapes
    ------
    ``x : (batch, time, features)`` -> ``(batch, [time,] units)``, or ``2*units`` wide with ``"concat"``.
    The parameters are the two layers' under the names ``forward_<name>`` and ``backward_<name>``
    (``forward_kernel``, ``backward_recurrent_kernel`` ...); they are the sublayers' arrays themselves, so an
    optimizer updating them updates the sublayers. Initial states are set on the sublayers
    (``bi.forward_layer.initial_state = ...``).

    Notes
    -----
    With :math:`y^f = \mathrm{RNN}_f(x)` and :math:`y^b = \mathrm{rev}(\mathrm{RNN}_b(\mathrm{rev}(x)))`
    (``rev`` reverses time; applied to the output only with ``return_sequences``), the backward pass splits the
    output gradient :math:`g`: concat gives each half its slice, sum both :math:`g`, ave both :math:`g/2`, mul
    :math:`g \odot y^b` and :math:`g \odot y^f`; the input gradient is the sum of both paths.
    """

    def __init__(self, layer: Recurrent, merge_mode: str = "concat", **kwargs: Any) -> None:
        if not isinstance(layer, Recurrent):
            raise ConfigError(f"Bidirectional wraps a SimpleRNN, LSTM or GRU layer, got {type(layer).__name__}")
        if layer.built:
            raise ConfigError(f"Bidirectional needs an unbuilt layer; {layer.describe()} is already built")
        if merge_mode not in MERGE_MODES:
            raise ConfigError(f"Bidirectional merge_mode must be one of {MERGE_MODES}, got {merge_mode!r}")
        if layer.input_shape is not None:
            kwargs.setdefault("input_shape", layer.input_shape)
        super().__init__(**kwargs)
        self.forward_layer = layer
        self.backward_layer = type(layer).from_config(layer.get_config())
        self.merge_mode = merge_mode

    @property
    def l2(self) -> float:
        """The wrapped layer's weight penalty (applies to both directions' kernels)."""
        return self.forward_layer.l2

    @property
    def return_sequences(self) -> bool:
        return self.forward_layer.return_sequences

    @property
    def splits_batch(self) -> bool:  # type: ignore[override]
        """As the wrapped layer: split across barenet's threads when its time loop is compiled."""
        return self.forward_layer.splits_batch

    def compute_output_shape(self, input_shape):
        inner = self.forward_layer.compute_output_shape(input_shape)
        return (*inner[:-1], 2 * inner[-1]) if self.merge_mode == "concat" else inner

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        for sub in (self.forward_layer, self.backward_layer):
            sub.build(self.input_shape, rng, self.dtype)
        self._collect()

    def _collect(self) -> None:
        """Expose both directions' arrays (the same objects) as ``forward_<name>`` / ``backward_<name>``."""
        for prefix, sub in (("forward_", self.forward_layer), ("backward_", self.backward_layer)):
            self.params.update({prefix + k: v for k, v in sub.params.items()})
            self.grads.update({prefix + k: v for k, v in sub.grads.items()})

    def move_parameters(self, place):
        self.forward_layer.move_parameters(place)
        self.backward_layer.move_parameters(place)
        self._collect()

    def _reverse(self, y: np.ndarray) -> np.ndarray:
        return y[:, ::-1] if self.return_sequences else y

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        yf = self.forward_layer.forward(x, training=training, cache=None if cache is None else cache.child("forward"))
        yb = self._reverse(self.backward_layer.forward(x[:, ::-1], training=training,
                                                       cache=None if cache is None else cache.child("backward")))
        if cache is not None and self.merge_mode == "mul":
            cache["yf"], cache["yb"] = yf, yb
        if self.merge_mode == "concat":
            return np.concatenate([yf, yb], axis=-1)
        if self.merge_mode == "sum":
            return yf + yb
        if self.merge_mode == "mul":
            return yf * yb
        return (yf + yb) * self.dtype.type(0.5)

    def backward(self, grad, cache):
        if self.merge_mode == "concat":
            n = self.forward_layer.units
            gf, gb = grad[..., :n], grad[..., n:]
        elif self.merge_mode == "sum":
            gf = gb = grad
        elif self.merge_mode == "mul":
            gf, gb = grad * cache["yb"], grad * cache["yf"]
        else:
            gf = gb = grad * self.dtype.type(0.5)
        dxf = self.forward_layer.backward(np.ascontiguousarray(gf), cache["forward"])
        dxb = self.backward_layer.backward(np.ascontiguousarray(self._reverse(gb)), cache["backward"])
        if not cache.input_grad:
            return None
        return dxf + dxb[:, ::-1]

    def get_config(self):
        inner = self.forward_layer.get_config()
        inner.pop("input_shape", None)
        return {
            **super().get_config(),
            "layer": {"class": type(self.forward_layer).__name__, "config": inner},
            "merge_mode": self.merge_mode,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        spec = config["layer"]
        config["layer"] = layer_class(spec["class"]).from_config(spec.get("config", {}))
        return super().from_config(config)

    def __repr__(self) -> str:
        return f"Bidirectional({self.forward_layer!r}, merge_mode={self.merge_mode!r})"
