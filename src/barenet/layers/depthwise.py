"""Depthwise and depthwise-separable two-dimensional convolutions (MobileNet's building blocks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers, threads
from ..errors import ConfigError, ShapeError
from ..kernels import depthwise as kernels
from . import activations
from .base import Cache, register
from .conv import ImageLayer, Pads, normalize_padding, normalize_pair, padding_config, resolve_padding


class _Depthwise(activations.Activated, ImageLayer):
    """The depthwise step shared by :class:`DepthwiseConv2D` and :class:`SeparableConv2D`: argument checks,
    output shape, and the ``depthwise_kernel : (kh, kw, channels, depth_multiplier)`` parameter."""

    def __init__(self, kernel_size: int | tuple[int, int], strides: int | tuple[int, int], padding: Any,
                 depth_multiplier: int, dilation_rate: int | tuple[int, int],
                 activation: str | activations.Activation | None, *, use_bias: bool,
                 depthwise_initializer: str | initializers.Initializer,
                 bias_initializer: str | initializers.Initializer, l2: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", name)
        self.strides = normalize_pair(strides, "strides", name)
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate", name)
        self.padding = normalize_padding(padding, name)
        if not isinstance(depth_multiplier, (int, np.integer)) or isinstance(depth_multiplier, bool) \
                or depth_multiplier < 1:
            raise ConfigError(f"{name} depth_multiplier must be a positive integer, got {depth_multiplier!r}")
        self.depth_multiplier = int(depth_multiplier)
        if not l2 >= 0:
            raise ConfigError(f"{name} l2 must be >= 0, got {l2!r}")
        self.activation = activations.get(activation)
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.use_bias = bool(use_bias)
        self.l2 = float(l2)

    def _pads_for(self, h: int, w: int) -> Pads:
        return resolve_padding(self.padding, (h, w), self.kernel_size, self.strides, self.dilation_rate)

    def depthwise_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(out_height, out_width, channels * depth_multiplier)`` of the depthwise step."""
        h, w, c = self.image_shape(input_shape)
        out = kernels.output_size((h, w), self.kernel_size, self.strides, self.dilation_rate, self._pads_for(h, w))
        if min(out) < 1:
            raise ShapeError(f"{self.describe()} cannot slide a {self.kernel_size} kernel (dilation "
                             f"{self.dilation_rate}) over {h}x{w} images with padding {self.padding!r}; "
                             f"the output would be {out[0]}x{out[1]}")
        return out[0], out[1], c * self.depth_multiplier

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        h, w, c = self.image_shape(self.input_shape)
        self._pads = self._pads_for(h, w)
        kh, kw = self.kernel_size
        # Each output sees kh * kw inputs and each input feeds kh * kw * depth_multiplier outputs.
        shape = (kh, kw, c, self.depth_multiplier)
        self.add_param("depthwise_kernel", self.depthwise_initializer(shape, kh * kw, kh * kw * self.depth_multiplier,
                                                                      rng, self.dtype))

    def depthwise(self, x: np.ndarray) -> np.ndarray:
        """The depthwise step (no bias) on a channels-last batch."""
        return kernels.forward(x, self.params["depthwise_kernel"], None, self.strides, self.dilation_rate, self._pads)

    def depthwise_backward(self, g: np.ndarray, x: np.ndarray, input_grad: bool) -> np.ndarray | None:
        """Writes the depthwise kernel's gradient and returns dLoss/dx (channels-last) or ``None``."""
        dx, dkernel = kernels.backward(g, x, self.params["depthwise_kernel"], self.strides, self.dilation_rate,
                                       self._pads, input_grad)
        self.grads["depthwise_kernel"][...] = dkernel
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": padding_config(self.padding),
            "depth_multiplier": self.depth_multiplier,
            "dilation_rate": list(self.dilation_rate),
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "l2": self.l2,
        }

    def _repr_tail(self) -> str:
        text = ""
        for key, default in (("strides", (1, 1)), ("padding", "valid"), ("depth_multiplier", 1),
                             ("dilation_rate", (1, 1)), ("data_format", "channels_last")):
            if getattr(self, key) != default:
                text += f", {key}={getattr(self, key)!r}"
        if self.activation.kind != "linear":
            text += f", activation={self.activation.kind!r}"
        return text + ")"


@register
class DepthwiseConv2D(_Depthwise):
    r"""Depthwise convolution: each input channel convolved with its own ``depth_multiplier`` filters.

    Parameters
    ----------
    kernel_size, strides, padding, dilation_rate, data_format
        As for :class:`~barenet.layers.Conv2D` (``padding`` also ``((top, bottom), (left, right))``).
    depth_multiplier : int
        Filters per input channel; the output has ``in_channels * depth_multiplier`` channels.
    activation : str, Activation or None
        Applied to the output; ``None`` means linear.
    use_bias : bool
    depthwise_initializer, bias_initializer : str or callable
        See :mod:`barenet.initializers`; fans are ``kh * kw`` (the inputs of one output, as PyTorch counts
        them) and ``kh * kw * depth_multiplier`` (Keras counts ``kh * kw * in_channels`` as fan-in).
    l2 : float
        Weight penalty :math:`\lambda \sum K^2` added to the loss (the kernel only).

    Shapes
    ------
    ``x : (batch, height, width, in_channels)`` -> ``y : (batch, out_height, out_width, in_channels *
    depth_multiplier)``; ``depthwise_kernel : (kh, kw, in_channels, depth_multiplier)``, ``bias :
    (in_channels * depth_multiplier,)``. Output channel ``c * depth_multiplier + m`` is input channel ``c``
    under filter ``m`` (as Keras, and as PyTorch's ``Conv2d(groups=in_channels)`` orders its outputs).

    Notes
    -----
    With :math:`\tilde x` the padded input,
    :math:`z_{n,p,q,c,m} = b_{c,m} + \sum_{i,j} \tilde x_{n,\, p s_h + i d_h,\, q s_w + j d_w,\, c}\, K_{i,j,c,m}`:
    a grouped convolution with one group per channel, but no matrix product (each group's product would
    have an inner dimension of ``kh * kw``), so :mod:`barenet.kernels.depthwise` computes it as ``kh * kw``
    multiply-adds over the whole tensor, and the backward pass as their adjoints, the batch split across
    :mod:`barenet.threads`.
    """

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] | Pads = "valid",
        depth_multiplier: int = 1,
        dilation_rate: int | tuple[int, int] = 1,
        activation: str | activations.Activation | None = None,
        *,
        use_bias: bool = True,
        depthwise_initializer: str | initializers.Initializer = "glorot_uniform",
        bias_initializer: str | initializers.Initializer = "zeros",
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(kernel_size, strides, padding, depth_multiplier, dilation_rate, activation,
                         use_bias=use_bias, depthwise_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer, l2=l2, **kwargs)

    def compute_output_shape(self, input_shape):
        return self.sample_shape(*self.depthwise_shape(input_shape))

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        if self.use_bias:
            kh, kw = self.kernel_size
            channels = self.image_shape(self.input_shape)[2] * self.depth_multiplier
            self.add_param("bias", self.bias_initializer((channels,), kh * kw, kh * kw * self.depth_multiplier, rng,
                                                         self.dtype))
        self.activation.build(self.output_shape, rng, dtype)

    def forward_logits(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        """:math:`z`, before the activation; same layout as the input."""
        self.check_input(x)
        x = self.to_last(x)
        if cache is not None:
            cache["x"] = x
        bias = self.params["bias"] if self.use_bias else None
        return self.from_last(kernels.forward(x, self.params["depthwise_kernel"], bias, self.strides,
                                              self.dilation_rate, self._pads))

    def backward_logits(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        """Backward from :math:`\\partial L/\\partial z`, skipping the activation."""
        g = self.to_last(grad)
        if self.use_bias:
            np.sum(g, axis=(0, 1, 2), out=self.grads["bias"])
        dx = self.depthwise_backward(g, cache["x"], cache.input_grad)
        return None if dx is None else self.from_last(dx)

    def __repr__(self) -> str:
        return f"DepthwiseConv2D({self.kernel_size}" + self._repr_tail()


@register
class SeparableConv2D(_Depthwise):
    r"""Depthwise-separable convolution: a depthwise convolution, then a 1x1 convolution to ``filters``.

    Parameters
    ----------
    filters : int
        Output channels of the pointwise (1x1) step.
    kernel_size, strides, padding, dilation_rate, depth_multiplier, data_format
        Of the depthwise step, as for :class:`DepthwiseConv2D`.
    activation : str, Activation or None
        Applied to the output; ``None`` means linear.
    use_bias : bool
        A bias after the pointwise step (the depthwise step has none, as in Keras).
    depthwise_initializer, pointwise_initializer, bias_initializer : str or callable
        See :mod:`barenet.initializers`; the pointwise fans are ``in_channels * depth_multiplier`` and
        ``filters``.
    l2 : float
        Weight penalty :math:`\lambda \sum W^2` added to the loss (both kernels).

    Shapes
    ------
    ``x : (batch, height, width, in_channels)`` -> ``y : (batch, out_height, out_width, filters)``;
    ``depthwise_kernel : (kh, kw, in_channels, depth_multiplier)``, ``pointwise_kernel : (1, 1, in_channels *
    depth_multiplier, filters)``, ``bias : (filters,)``.

    Notes
    -----
    :math:`d = x \star_{depthwise} K` (see :class:`DepthwiseConv2D`) and
    :math:`z_{n,p,q,f} = b_f + \sum_k d_{n,p,q,k} P_{k,f}`, one matrix product over all pixels. Backward:
    :math:`\partial L/\partial P = D^\top G`, :math:`\partial L/\partial d = G P^\top`, then the depthwise backward.
    The call keeps ``x`` and ``d`` for the backward pass.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] | Pads = "valid",
        dilation_rate: int | tuple[int, int] = 1,
        depth_multiplier: int = 1,
        activation: str | activations.Activation | None = None,
        *,
        use_bias: bool = True,
        depthwise_initializer: str | initializers.Initializer = "glorot_uniform",
        pointwise_initializer: str | initializers.Initializer = "glorot_uniform",
        bias_initializer: str | initializers.Initializer = "zeros",
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(kernel_size, strides, padding, depth_multiplier, dilation_rate, activation,
                         use_bias=use_bias, depthwise_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer, l2=l2, **kwargs)
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters < 1:
            raise ConfigError(f"SeparableConv2D filters must be a positive integer, got {filters!r}")
        self.filters = int(filters)
        self.pointwise_initializer = initializers.get(pointwise_initializer)

    def compute_output_shape(self, input_shape):
        oh, ow, _ = self.depthwise_shape(input_shape)
        return self.sample_shape(oh, ow, self.filters)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        middle = self.image_shape(self.input_shape)[2] * self.depth_multiplier
        self.add_param("pointwise_kernel", self.pointwise_initializer((1, 1, middle, self.filters), middle,
                                                                      self.filters, rng, self.dtype))
        if self.use_bias:
            self.add_param("bias", self.bias_initializer((self.filters,), middle, self.filters, rng, self.dtype))
        self.activation.build(self.output_shape, rng, dtype)

    def forward_logits(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        """:math:`z`, before the activation; same layout as the input."""
        self.check_input(x)
        x = self.to_last(x)
        d = self.depthwise(x)
        if cache is not None:
            cache["x"], cache["d"] = x, d
        n, oh, ow, middle = d.shape
        pointwise = self.params["pointwise_kernel"].reshape(middle, self.filters)
        z = np.empty((n, oh, ow, self.filters), dtype=np.result_type(d, pointwise))
        bias = self.params["bias"] if self.use_bias else None

        def part(rows: slice) -> None:
            zr = z[rows].reshape(-1, self.filters)
            np.matmul(d[rows].reshape(-1, middle), pointwise, out=zr)
            if bias is not None:
                zr += bias

        threads.run(part, threads.parts(n, pointwise.size * oh * ow))
        return self.from_last(z)

    def backward_logits(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        """Backward from :math:`\\partial L/\\partial z`, skipping the activation."""
        d = cache["d"]
        n, oh, ow, middle = d.shape
        g = np.ascontiguousarray(self.to_last(grad))
        pointwise = self.params["pointwise_kernel"].reshape(middle, self.filters)
        threads.matmul_tn(d.reshape(-1, middle), g.reshape(-1, self.filters),
                          self.grads["pointwise_kernel"].reshape(middle, self.filters))
        if self.use_bias:
            np.sum(g, axis=(0, 1, 2), out=self.grads["bias"])
        dd = np.empty(d.shape, dtype=g.dtype)
        threads.run(lambda rows: np.matmul(g[rows].reshape(-1, self.filters), pointwise.T,
                                           out=dd[rows].reshape(-1, middle)),
                    threads.parts(n, pointwise.size * oh * ow))
        dx = self.depthwise_backward(dd, cache["x"], cache.input_grad)
        return None if dx is None else self.from_last(dx)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "pointwise_initializer": initializers.serialize(self.pointwise_initializer)}

    def __repr__(self) -> str:
        return f"SeparableConv2D({self.filters}, {self.kernel_size}" + self._repr_tail()
