"""One-dimensional convolution over sequences, computed as the convolution of images one pixel high."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from .. import initializers
from ..errors import ConfigError, ShapeError
from . import activations
from .base import Cache, Layer, register
from .conv import DATA_FORMATS, check_groups, convolve, convolve_backward

PADDINGS = ("valid", "same", "causal")


def _positive(value: Any, what: str) -> int:
    """``3`` or ``(3,)`` -> ``3``; anything but one positive integer -> :class:`ConfigError`."""
    single = value[0] if isinstance(value, (tuple, list)) and len(value) == 1 else value
    if not isinstance(single, (int, np.integer)) or isinstance(single, bool) or single < 1:
        raise ConfigError(f"Conv1D {what} must be a positive integer, got {value!r}")
    return int(single)


def _padding(padding: Any) -> str | tuple[int, int]:
    """``"valid"``, ``"same"`` or ``"causal"``; an int ``p`` -> ``(p, p)``; ``(left, right)`` stays."""
    if isinstance(padding, str):
        if padding in PADDINGS:
            return padding
    else:
        pair = (padding, padding) if isinstance(padding, (int, np.integer)) else tuple(padding) \
            if isinstance(padding, (tuple, list)) else ()
        if len(pair) == 2 and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) and p >= 0
                                  for p in pair):
            return int(pair[0]), int(pair[1])
    raise ConfigError(f"Conv1D padding must be 'valid', 'same', 'causal', an int >= 0 or a pair (left, right) of "
                      f"them, got {padding!r}")


@register
class Conv1D(activations.Activated, Layer):
    r"""One-dimensional convolution (cross-correlation) over sequences, as Keras's ``Conv1D``.

    Parameters
    ----------
    filters : int
        Number of output channels.
    kernel_size : int
        Window length.
    strides : int
        Step between windows.
    padding : "valid", "same", "causal", int or (int, int)
        ``"valid"`` adds nothing; ``"same"`` adds zeros so that there are ``ceil(steps / stride)`` outputs
        (an odd total puts the extra step at the end); ``"causal"`` adds ``(kernel_size - 1) * dilation_rate``
        zeros at the start only, so that output ``t`` sees inputs up to ``t * stride`` and none after
        (WaveNet); an integer ``p`` adds ``p`` on each side (PyTorch's ``padding``), ``(left, right)`` those
        amounts.
    dilation_rate : int
        Gap between kernel taps.
    groups : int
        Grouped convolution, as :class:`~barenet.layers.Conv2D`'s ``groups``.
    activation : str, Activation or None
        Applied to the convolution output; ``None`` means linear.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        See :mod:`barenet.initializers`; fans are ``kernel_size * in_channels / groups`` and
        ``kernel_size * filters``.
    l2 : float
        Weight penalty :math:`\lambda \sum W^2` added to the loss (kernel only).
    data_format : "channels_last" or "channels_first"
        ``(batch, steps, channels)`` (Keras) or ``(batch, channels, steps)`` (PyTorch); ``input_shape`` is
        given in that order.

    Shapes
    ------
    ``x : (batch, steps, in_channels)`` -> ``y : (batch, out_steps, filters)``; ``kernel : (kernel_size,
    in_channels / groups, filters)``, ``bias : (filters,)``. Output dtype is the input dtype.

    Notes
    -----
    With :math:`\tilde x` the padded input, :math:`z_{n,t,f} = b_f + \sum_{i,c} \tilde x_{n,\, t s + i d,\, c}\,
    W_{i,c,f}` (the sum over :math:`c` running over filter :math:`f`'s group). A sequence is an image one
    pixel high, so this is :class:`~barenet.layers.Conv2D`'s computation
    (:func:`~barenet.layers.conv.convolve`, :func:`~barenet.layers.conv.convolve_backward`: im2col and one
    matrix product, the batch split across :mod:`barenet.threads`) on ``x[:, None]`` with the kernel
    ``W[None]``; both are views, nothing is copied but the padded input and the columns.
    """

    splits_batch = True

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int],
        strides: int | tuple[int] = 1,
        padding: str | int | tuple[int, int] = "valid",
        dilation_rate: int | tuple[int] = 1,
        groups: int = 1,
        activation: str | activations.Activation | None = None,
        *,
        use_bias: bool = True,
        kernel_initializer: str | initializers.Initializer = "glorot_uniform",
        bias_initializer: str | initializers.Initializer = "zeros",
        l2: float = 0.0,
        data_format: str = "channels_last",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = _positive(filters, "filters")
        self.kernel_size = _positive(kernel_size, "kernel_size")
        self.strides = _positive(strides, "strides")
        self.dilation_rate = _positive(dilation_rate, "dilation_rate")
        self.padding = _padding(padding)
        self.groups = check_groups(groups, self.filters, "Conv1D")
        if data_format not in DATA_FORMATS:
            raise ConfigError(f"Conv1D data_format must be one of {DATA_FORMATS}, got {data_format!r}")
        self.data_format = data_format
        if not l2 >= 0:
            raise ConfigError(f"Conv1D l2 must be >= 0, got {l2!r}")
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.use_bias = bool(use_bias)
        self.l2 = float(l2)

    def sequence_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """``(steps, channels)`` of one sample in this layer's ``data_format``."""
        if len(input_shape) != 2:
            order = "(steps, channels)" if self.data_format == "channels_last" else "(channels, steps)"
            raise ShapeError(f"{self.describe()} expects sequences {order} per sample, got sample shape "
                             f"{tuple(input_shape)}")
        return tuple(input_shape) if self.data_format == "channels_last" else tuple(input_shape[::-1])

    def pads(self, steps: int) -> tuple[int, int]:
        """Steps of zeros ``(left, right)`` added to sequences of ``steps`` steps."""
        if self.padding == "valid":
            return 0, 0
        if self.padding == "same":
            return F.same_padding(steps, self.kernel_size, self.strides, self.dilation_rate)
        if self.padding == "causal":
            return (self.kernel_size - 1) * self.dilation_rate, 0
        return self.padding

    def compute_output_shape(self, input_shape):
        steps, channels = self.sequence_shape(input_shape)
        if channels % self.groups:
            raise ShapeError(f"{self.describe()} cuts its input channels into {self.groups} groups, but the input "
                             f"has {channels} channels, not a multiple of {self.groups}")
        out = F.conv_output_length(steps, self.kernel_size, self.strides, self.dilation_rate, sum(self.pads(steps)))
        if out < 1:
            raise ShapeError(f"{self.describe()} cannot slide a kernel of {self.kernel_size} (dilation "
                             f"{self.dilation_rate}) over sequences of {steps} steps with padding {self.padding!r}")
        return (out, self.filters) if self.data_format == "channels_last" else (self.filters, out)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        steps, channels = self.sequence_shape(self.input_shape)
        self._pads = self.pads(steps)
        k = self.kernel_size
        fan_in, fan_out = k * channels // self.groups, k * self.filters
        self.add_param("kernel", self.kernel_initializer((k, channels // self.groups, self.filters), fan_in, fan_out,
                                                         rng, self.dtype))
        if self.use_bias:
            self.add_param("bias", self.bias_initializer((self.filters,), fan_in, fan_out, rng, self.dtype))
        self.activation.build(self.output_shape, rng, dtype)

    def _last(self, x: np.ndarray) -> np.ndarray:
        """``(batch, steps, channels)`` view of a batch in this layer's layout (and back: the swap is its own
        inverse)."""
        return x if self.data_format == "channels_last" else x.transpose(0, 2, 1)

    def forward_logits(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        """:math:`z = x \\star W + b`, before the activation; same layout as the input."""
        self.check_input(x)
        xp = F.pad_spatial(self._last(x)[:, None], ((0, 0), self._pads))  # (batch, 1, padded steps, channels)
        if cache is not None:
            cache["xp"] = xp
        bias = self.params["bias"] if self.use_bias else None
        z = convolve(xp, self.params["kernel"][None], bias, (1, self.strides), (1, self.dilation_rate), self.groups)
        return self._last(z[:, 0])

    def backward_logits(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        """Backward from :math:`\\partial L/\\partial z`, skipping the activation."""
        dxp = convolve_backward(cache["xp"], self._last(grad)[:, None], self.params["kernel"][None],
                                (1, self.strides), (1, self.dilation_rate), self.groups, self.grads["kernel"][None],
                                self.grads.get("bias"), cache.input_grad)
        if dxp is None:
            return None
        left, right = self._pads
        return self._last(dxp[:, 0, left:dxp.shape[2] - right])

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "l2": self.l2,
            **({"data_format": self.data_format} if self.data_format != "channels_last" else {}),
        }

    def __repr__(self) -> str:
        text = f"Conv1D({self.filters}, {self.kernel_size}"
        for key, default in (("strides", 1), ("padding", "valid"), ("dilation_rate", 1), ("groups", 1),
                             ("data_format", "channels_last")):
            if getattr(self, key) != default:
                text += f", {key}={getattr(self, key)!r}"
        if self.activation.kind != "linear":
            text += f", activation={self.activation.kind!r}"
        return text + ")"
