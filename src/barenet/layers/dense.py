"""Fully connected layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers, threads
from ..errors import ConfigError, ShapeError
from ..kernels import activation as kernels
from . import activations
from .base import Cache, Layer, register


@register
class Dense(activations.Activated, Layer):
    r"""Affine map followed by an optional activation: :math:`y = f(xW + b)`.

    Parameters
    ----------
    units : int
        Number of outputs.
    activation : str, Activation or None
        Applied to :math:`z = xW + b`; ``None`` means linear.
    input_dim : int, optional
        Number of input features, for the first layer of a model.
    kernel_initializer, bias_initializer : str or callable
        See :mod:`barenet.initializers`.
    use_bias : bool
    l2 : float
        Weight penalty :math:`\lambda \sum W^2` added to the loss (kernel only).

    Shapes
    ------
    ``x : (batch, ..., in)`` -> ``y : (batch, ..., units)``; ``kernel : (in, units)``, ``bias : (units,)``.

    Notes
    -----
    Backward, with :math:`g = \partial L/\partial z` flattened to rows:
    :math:`\partial L/\partial W = x^\top g`, :math:`\partial L/\partial b = \sum_{rows} g`,
    :math:`\partial L/\partial x = g W^\top`.
    """

    supports_masking = True  # acts on each step alone: a padding mask passes on unchanged

    def __init__(
        self,
        units: int,
        activation: str | activations.Activation | None = None,
        *,
        input_dim: int | None = None,
        kernel_initializer: str | initializers.Initializer = "glorot_uniform",
        bias_initializer: str | initializers.Initializer = "zeros",
        use_bias: bool = True,
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if input_dim is not None:
            kwargs.setdefault("input_shape", (int(input_dim),))
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ConfigError(f"Dense units must be a positive integer, got {units!r}")
        if l2 < 0:
            raise ConfigError(f"Dense l2 must be >= 0, got {l2!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.use_bias = bool(use_bias)
        self.l2 = float(l2)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 1:
            raise ShapeError(f"{self.describe()} needs inputs with a feature axis, got sample shape {input_shape}")
        return (*input_shape[:-1], self.units)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        fan_in = self.input_shape[-1]
        self.add_param("kernel", self.kernel_initializer((fan_in, self.units), fan_in, self.units, rng, self.dtype))
        if self.use_bias:
            self.add_param("bias", self.bias_initializer((self.units,), fan_in, self.units, rng, self.dtype))
        self.activation.build(self.output_shape, rng, dtype)

    # Inside barenet.threads.engine the products run on several threads: z = xW + b and dx = g W^T on
    # slices of the batch's rows (db = sum(g) added over the slices), dW = x^T g in blocks of columns.
    def forward_logits(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        """:math:`z = xW + b`, before the activation."""
        self.check_input(x)
        if cache is not None:
            cache["x"] = x
        return self._product(x, None)[0]

    def _product(self, x: np.ndarray, fused: str | None) -> tuple[np.ndarray, np.ndarray]:
        """``(z, y)``: :math:`z = xW + b` and, with ``fused``, the activation :math:`y = f(z)` computed with the
        bias in one pass (``kernels.bias_relu``: ``y`` is ``z``, written over; ``kernels.bias_gelu_kernels``:
        ``z`` kept for the backward pass); without it ``y`` is ``z``."""
        kernel = self.params["kernel"]
        x2 = x.reshape(-1, x.shape[-1])
        z = np.empty((x2.shape[0], self.units), dtype=np.result_type(x2, kernel))
        y = np.empty_like(z) if fused == "gelu" else z
        bias_gelu = kernels.bias_gelu_kernels(z.dtype)[0] if fused == "gelu" else None

        def part(rows: slice) -> None:
            np.matmul(x2[rows], kernel, out=z[rows])
            if fused == "relu":
                kernels.bias_relu(z[rows], self.params["bias"])
            elif bias_gelu is not None:
                bias_gelu(z[rows], self.params["bias"], y[rows])
            elif self.use_bias:
                z[rows] += self.params["bias"]

        slices = threads.parts(len(x2), kernel.size)
        if len(slices) == 1:  # small batches: no hand-off
            part(slices[0])
        else:
            threads.run(part, slices)
        shape = (*x.shape[:-1], self.units)
        return z.reshape(shape), y.reshape(shape)

    def backward_logits(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        """Backward from :math:`\\partial L/\\partial z`, skipping the activation."""
        return self._backward(grad, cache, None)

    def _backward(self, grad: np.ndarray, cache: Cache, fused: str | None) -> np.ndarray | None:
        """The kernel gradient :math:`x^\\top g`, the bias gradient :math:`\\sum g` and the input gradient
        :math:`g W^\\top` (when needed), with ``g = grad`` or, with ``fused``, :math:`g = \\text{grad}\\,f'(z)`
        computed with the bias gradient in one pass (``kernels.relu_bias_backward``: ``grad * [y > 0]``;
        ``kernels.bias_gelu_kernels``)."""
        x_in = cache["x"]
        x = x_in.reshape(-1, x_in.shape[-1])
        grad = np.ascontiguousarray(grad).reshape(-1, self.units)
        kernel = self.params["kernel"]
        y = cache["y"].reshape(-1, self.units) if fused else None
        z = cache["z"].reshape(-1, self.units) if fused == "gelu" else None
        gelu_backward = kernels.bias_gelu_kernels(z.dtype)[1] if fused == "gelu" else None
        dz = np.empty(grad.shape, dtype=grad.dtype) if fused else grad
        dx = np.empty(x.shape, dtype=grad.dtype) if cache.input_grad else None

        def part(rows: slice) -> np.ndarray | None:
            if fused:
                dbias = np.empty(self.units, dtype=grad.dtype)
                if gelu_backward is None:
                    kernels.relu_bias_backward(grad[rows], y[rows], dz[rows], dbias)
                else:
                    gelu_backward(grad[rows], z[rows], y[rows], dz[rows], dbias)
            else:
                dbias = dz[rows].sum(axis=0) if self.use_bias else None
            if dx is not None:
                np.matmul(dz[rows], kernel.T, out=dx[rows])
            return dbias

        blocks = threads.parts(len(x), kernel.size)
        if fused:  # dz is made by the parts: the kernel's gradient, which reads all of it, comes after them
            dbiases = threads.run(part, blocks)
            threads.matmul_tn(x, dz, out=self.grads["kernel"])
        else:  # dz is grad: each part also computes its share of the kernel gradient's columns (one hand-off)
            k, dkernel = len(blocks), self.grads["kernel"]

            def both(i: slice) -> np.ndarray | None:
                columns = slice(self.units * i.start // k, self.units * i.stop // k)
                np.matmul(x.T, dz[:, columns], out=dkernel[:, columns])
                return part(blocks[i.start])

            dbiases = threads.run(both, [slice(i, i + 1) for i in range(k)])
        if self.use_bias:
            np.sum(dbiases, axis=0, out=self.grads["bias"])
        return None if dx is None else dx.reshape(*x_in.shape[:-1], x.shape[-1])

    # Bias + activation in one pass each way (kernels.activation): ReLU, the usual hidden layer, and the exact
    # GELU of Transformer feed-forward blocks (where its compiled kernels serve the dtype).
    def _fused(self, x: np.ndarray) -> str | None:
        """``"relu"``, ``"gelu"`` or ``None``: which fused path serves a call on ``x``."""
        if not self.use_bias:
            return None
        kind = type(self.activation)
        if kind is activations.ReLU:
            return "relu"
        if (kind is activations.GELU and not self.activation.approximate
                and kernels.bias_gelu_kernels(np.result_type(x, self.params["kernel"])) is not None):
            return "gelu"
        return None

    def forward(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        fused = self._fused(x)
        if fused is None:
            return super().forward(x, training=training, cache=cache)
        self.check_input(x)
        z, y = self._product(x, fused)
        if cache is not None:
            cache["x"], cache["y"], cache["fused"] = x, y, fused
            if fused == "gelu":
                cache["z"] = z
        return y

    def backward(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        if "fused" not in cache:
            return super().backward(grad, cache)
        return self._backward(grad, cache, cache["fused"])

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "use_bias": self.use_bias,
            "l2": self.l2,
        }

    def __repr__(self) -> str:
        act = self.activation.kind
        return f"Dense({self.units}" + (f", activation={act!r})" if act != "linear" else ")")
