r"""Merge layers: several tensors of one shape in, one out (residual sums, concatenated features ...).

A merge layer is called on a list of tensors in the functional API (``Add()([x, y])``): its ``forward``
takes a list of arrays, its ``backward`` returns a list of gradients, one per input, and ``input_shape``
is the list of the inputs' sample shapes. Padding masks combine as in Keras (:meth:`Merge.compute_mask`,
:meth:`Concatenate.compute_mask`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, ShapeError
from .base import Layer, register


class Merge(Layer):
    """Base of the element-wise merges: every input has the same shape, and so has the output."""

    #: How many inputs the merge takes (``None`` for two or more).
    arity: ClassVar[int | None] = None
    supports_masking = True

    def compute_mask(self, xs, mask=None):
        """As Keras's element-wise merges: the union of the inputs' padding masks (a step is real where it is
        real in any input), or ``None`` unless every input carries one."""
        if mask is None or any(m is None for m in mask):
            return None
        out = np.array(mask[0], dtype=bool)
        for m in mask[1:]:
            out |= m
        return out

    def _shapes(self, input_shape: Any) -> list[tuple[int, ...]]:
        if not isinstance(input_shape, (list, tuple)) or not input_shape or \
                not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise ShapeError(f"{self.describe()} is called on a list of tensors, got one of shape {input_shape}")
        shapes = [tuple(int(d) for d in s) for s in input_shape]
        if self.arity is not None and len(shapes) != self.arity:
            raise ShapeError(f"{self.describe()} takes exactly {self.arity} inputs, got {len(shapes)}")
        if len(shapes) < 2:
            raise ShapeError(f"{self.describe()} takes at least 2 inputs, got {len(shapes)}")
        return shapes

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        for s in shapes[1:]:
            if s != shapes[0]:
                raise ShapeError(f"{self.describe()} needs inputs of one shape; got {(None, *shapes[0])} and "
                                 f"{(None, *s)}")
        return shapes[0]

    def _build_shapes(self, input_shape):
        shapes = self._shapes(input_shape)
        return shapes, self.compute_output_shape(shapes)

    def check_input(self, xs: list[np.ndarray]) -> None:
        if not self.built:
            super().check_input(xs)
        if not isinstance(xs, (list, tuple)) or len(xs) != len(self.input_shape):
            raise ShapeError(f"{self.describe()} expected a list of {len(self.input_shape)} arrays")
        for x, shape in zip(xs, self.input_shape, strict=True):
            if x.shape[1:] != shape:
                raise ShapeError(f"{self.describe()} expected inputs of shapes "
                                 f"{[(None, *s) for s in self.input_shape]}, got {[x.shape for x in xs]}")

    def get_config(self):
        config = super().get_config()
        config.pop("input_shape", None)
        return config


def _sum(xs: list[np.ndarray]) -> np.ndarray:
    """The element-wise sum of two or more arrays, in a new array."""
    y = xs[0] + xs[1]
    for x in xs[2:]:
        y += x
    return y


@register
class Add(Merge):
    r""":math:`y = \sum_i x_i`; each input's gradient is the output's."""

    def forward(self, xs, *, training=False, cache=None):
        self.check_input(xs)
        return _sum(xs)

    def backward(self, grad, cache):
        return [grad] * len(self.input_shape)


@register
class Subtract(Merge):
    r""":math:`y = x_0 - x_1`; gradients :math:`g` and :math:`-g`."""

    arity = 2

    def forward(self, xs, *, training=False, cache=None):
        self.check_input(xs)
        return xs[0] - xs[1]

    def backward(self, grad, cache):
        return [grad, -grad]


@register
class Multiply(Merge):
    r""":math:`y = \prod_i x_i`; :math:`\partial L/\partial x_i = g \prod_{j \ne i} x_j`."""

    def forward(self, xs, *, training=False, cache=None):
        self.check_input(xs)
        if cache is not None:
            cache["xs"] = list(xs)
        y = xs[0] * xs[1]
        for x in xs[2:]:
            y *= x
        return y

    def backward(self, grad, cache):
        xs = cache["xs"]
        out = []
        for i in range(len(xs)):
            d = grad.copy()
            for j, x in enumerate(xs):
                if j != i:
                    d *= x
            out.append(d)
        return out


@register
class Average(Merge):
    r""":math:`y = \frac1n \sum_i x_i`; each input's gradient is :math:`g/n`."""

    def forward(self, xs, *, training=False, cache=None):
        self.check_input(xs)
        y = _sum(xs)
        y *= y.dtype.type(1 / len(xs))
        return y

    def backward(self, grad, cache):
        share = grad * grad.dtype.type(1 / len(self.input_shape))
        return [share] * len(self.input_shape)


@register
class Maximum(Merge):
    r""":math:`y = \max_i x_i` element-wise; the gradient goes to the first input holding the maximum (as
    PyTorch's ``torch.maximum`` chained left to right does for ties, it goes to one input only)."""

    def forward(self, xs, *, training=False, cache=None):
        self.check_input(xs)
        stack = np.stack(xs)
        winner = stack.argmax(axis=0)
        if cache is not None:
            cache["winner"] = winner
        return np.take_along_axis(stack, winner[None], axis=0)[0]

    def backward(self, grad, cache):
        winner = cache["winner"]
        return [np.where(winner == i, grad, grad.dtype.type(0)) for i in range(len(self.input_shape))]


@register
class Concatenate(Merge):
    r"""Join the inputs along ``axis`` (Keras's meaning: the batch axis is 0, default the last); the output
    gradient is cut back into the inputs' widths.

    Shapes: inputs equal but along ``axis``; ``(batch, ..., sum of widths, ...)`` out.
    """

    def __init__(self, axis: int = -1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or axis == 0:
            raise ConfigError(f"Concatenate axis must be a non-zero integer (axis 0 is the batch), got {axis!r}")
        self.axis = int(axis)

    def _sample_axis(self, ndim: int) -> int:
        """The axis within one sample's shape of ``ndim`` axes."""
        axis = self.axis - 1 if self.axis > 0 else ndim + self.axis
        if not 0 <= axis < ndim:
            raise ShapeError(f"{self.describe()} cannot join axis {self.axis} of samples with {ndim} axes")
        return axis

    def compute_output_shape(self, input_shape):
        shapes = self._shapes(input_shape)
        if len({len(s) for s in shapes}) > 1:
            raise ShapeError(f"{self.describe()} needs inputs with the same number of axes; got "
                             f"{[(None, *s) for s in shapes]}")
        axis = self._sample_axis(len(shapes[0]))
        rest = [s[:axis] + s[axis + 1:] for s in shapes]
        for s, r in zip(shapes[1:], rest[1:], strict=True):
            if r != rest[0]:
                raise ShapeError(f"{self.describe()} needs inputs equal but along axis {self.axis}; got "
                                 f"{(None, *shapes[0])} and {(None, *s)}")
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def check_input(self, xs):
        if not self.built:
            super().check_input(xs)
        if not isinstance(xs, (list, tuple)) or [x.shape[1:] for x in xs] != list(self.input_shape):
            raise ShapeError(f"{self.describe()} expected inputs of shapes {[(None, *s) for s in self.input_shape]}"
                             f", got {[getattr(x, 'shape', None) for x in xs]}")

    def compute_mask(self, xs, mask=None):
        """As Keras's: an input without a padding mask counts as real everywhere; joined along the time axis (axis
        1) the masks are joined too, along another axis a step is real where it is real in any input."""
        if mask is None or all(m is None for m in mask):
            return None
        full = [np.ones(x.shape[:2], dtype=bool) if m is None else m for x, m in zip(xs, mask, strict=True)]
        if self._sample_axis(np.ndim(xs[0]) - 1) == 0:
            return np.concatenate(full, axis=1)
        return np.logical_or.reduce(full)

    def forward(self, xs, *, training=False, cache=None):
        self.check_input(xs)
        return np.concatenate(xs, axis=self._sample_axis(len(self.output_shape)) + 1)

    def backward(self, grad, cache):
        axis = self._sample_axis(len(self.output_shape)) + 1
        edges = np.cumsum([s[axis - 1] for s in self.input_shape])[:-1]
        return [np.ascontiguousarray(part) for part in np.split(grad, edges, axis=axis)]

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
