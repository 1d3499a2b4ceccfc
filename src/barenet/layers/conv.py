"""Two-dimensional convolution, and the image-layout handling shared with the pooling layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import functional as F
from .. import initializers, threads
from ..errors import ConfigError, ShapeError
from . import activations
from .base import Cache, Layer, register

DATA_FORMATS = ("channels_last", "channels_first")

Pads = tuple[tuple[int, int], tuple[int, int]]

#: Values of im2col columns and outputs a convolution handles at a time (a few samples' worth, about 2 MB
#: in float32): small enough to be multiplied while still in cache. Unfolding the whole batch at once and keeping the
#: columns for backward was about 1.3 times slower on the example CNN's second convolution (one thread).
CHUNK_VALUES = 1 << 19


def normalize_pair(value: int | tuple[int, int] | list[int], what: str, owner: str) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(3, 2)`` stays; anything but one or two positive integers -> :class:`ConfigError`."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value) if isinstance(
        value, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                                 for v in pair):
        raise ConfigError(f"{owner} {what} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


class ImageLayer(Layer):
    """Base of layers over images ``(batch, height, width, channels)``.

    ``data_format="channels_last"`` is barenet's layout. With ``"channels_first"`` the layer takes and
    returns ``(batch, channels, height, width)`` (and ``input_shape`` is given in that order); it
    transposes at its edges and computes channels-last inside, so both layouts give the same numbers.
    """

    splits_batch = True

    def __init__(self, *, data_format: str = "channels_last", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if data_format not in DATA_FORMATS:
            raise ConfigError(f"{type(self).__name__} data_format must be one of {DATA_FORMATS}, got {data_format!r}")
        self.data_format = data_format

    def image_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(height, width, channels)`` of one sample in this layer's ``data_format``."""
        if len(input_shape) != 3:
            order = "(height, width, channels)" if self.data_format == "channels_last" else \
                "(channels, height, width)"
            raise ShapeError(f"{self.describe()} expects images {order} per sample, got sample shape "
                             f"{tuple(input_shape)}; add a Reshape layer first")
        if self.data_format == "channels_first":
            c, h, w = input_shape
            return h, w, c
        return tuple(input_shape)

    def sample_shape(self, h: int, w: int, c: int) -> tuple[int, ...]:
        """Inverse of :meth:`image_shape`."""
        return (c, h, w) if self.data_format == "channels_first" else (h, w, c)

    def to_last(self, x: np.ndarray) -> np.ndarray:
        """A channels-last view of a batch given in this layer's layout."""
        return x.transpose(0, 2, 3, 1) if self.data_format == "channels_first" else x

    def from_last(self, x: np.ndarray) -> np.ndarray:
        """A view of a channels-last batch in this layer's layout."""
        return x.transpose(0, 3, 1, 2) if self.data_format == "channels_first" else x

    def get_config(self):
        config = super().get_config()
        if self.data_format != "channels_last":
            config["data_format"] = self.data_format
        return config


def resolve_padding(padding: str | tuple[int, int] | Pads, image: tuple[int, int], kernel: tuple[int, int],
                    strides: tuple[int, int], dilation: tuple[int, int]) -> Pads:
    """Pixels to add ``((top, bottom), (left, right))`` for a padding spec on ``image = (height, width)``:
    ``"valid"``, ``"same"``, ``(ph, pw)`` (each on both sides) or ``((top, bottom), (left, right))``."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return tuple(F.same_padding(n, k, s, d) for n, k, s, d in zip(image, kernel, strides, dilation, strict=True))
    return tuple((int(p), int(p)) if isinstance(p, (int, np.integer)) else (int(p[0]), int(p[1])) for p in padding)


def _count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0


def normalize_padding(padding: Any, owner: str) -> str | tuple[int, int] | Pads:
    """A 2-d padding spec checked and in its one stored form, or :class:`ConfigError`.

    ``"valid"`` and ``"same"`` stay; an integer ``p`` is ``(p, p)``; a pair ``(ph, pw)`` stays; a pair of
    ``(before, after)`` pairs ``((top, bottom), (left, right))`` (Keras's ``ZeroPadding2D`` nesting; either
    entry may also be one integer for both sides) stays, or becomes ``(ph, pw)`` when both axes are symmetric.
    """
    if isinstance(padding, str):
        if padding in ("valid", "same"):
            return padding
    else:
        pair = (padding, padding) if _count(padding) else tuple(padding) if isinstance(padding, (tuple, list)) else ()
        sides = [(p, p) if _count(p) else tuple(p) if isinstance(p, (tuple, list)) else () for p in pair]
        if len(pair) == 2 and all(len(s) == 2 and all(_count(v) for v in s) for s in sides):
            (top, bottom), (left, right) = ((int(a), int(b)) for a, b in sides)
            return (top, left) if top == bottom and left == right else ((top, bottom), (left, right))
    raise ConfigError(f"{owner} padding must be 'valid', 'same', an int >= 0, a pair (height, width) of them, or "
                      f"((top, bottom), (left, right)), got {padding!r}")


def padding_config(padding: str | tuple[int, int] | Pads) -> str | list[int] | list[list[int]]:
    """The JSON form of a padding spec stored by :func:`normalize_padding`."""
    if isinstance(padding, str):
        return padding
    return [list(p) if isinstance(p, tuple) else p for p in padding]


def check_groups(groups: Any, filters: int, owner: str) -> int:
    """``groups`` as an int dividing ``filters``, or :class:`ConfigError`."""
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ConfigError(f"{owner} groups must be a positive integer, got {groups!r}")
    if filters % groups:
        raise ConfigError(f"{owner} cuts its {filters} filters into {groups} groups; filters must be a multiple "
                          f"of groups")
    return int(groups)


def _chunks(batch: slice, per_sample: int) -> list[slice]:
    """``batch`` cut into runs of samples whose columns and outputs (``per_sample`` values each) take
    about :data:`CHUNK_VALUES` values."""
    step = max(1, CHUNK_VALUES // per_sample)
    return [slice(i, min(i + step, batch.stop)) for i in range(batch.start, batch.stop, step)]


def convolve(xp: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, strides: tuple[int, int],
             dilation: tuple[int, int], groups: int = 1) -> np.ndarray:
    r"""Cross-correlation of padded channels-last images with a kernel: the forward pass of :class:`Conv2D`.

    Parameters
    ----------
    xp : (batch, height, width, channels)
        Images with their padding already added.
    kernel : (kh, kw, channels / groups, filters)
        Filter ``f`` belongs to group ``f // (filters / groups)`` and sees that group's input channels only.
    bias : (filters,) or None

    Returns
    -------
    ``z : (batch, out_height, out_width, filters)`` in the result type of ``xp`` and ``kernel``.

    Notes
    -----
    Each thread of :mod:`barenet.threads` takes a slice of the batch and, a few samples at a time
    (:data:`CHUNK_VALUES`), unfolds them (:func:`~barenet.functional.im2col`) and multiplies; the columns
    are not kept (backward unfolds again). With groups, the columns come out group-major
    (:func:`~barenet.functional.im2col_groups`) and one batched product over the group axis multiplies
    each group's columns by its block of the kernel.
    """
    n = xp.shape[0]
    kh, kw, _, filters = kernel.shape
    oh, ow = (F.conv_output_length(size, k, s, d)
              for size, k, s, d in zip(xp.shape[1:3], (kh, kw), strides, dilation, strict=True))
    z = np.empty((n, oh * ow, filters), dtype=np.result_type(xp, kernel))
    per_sample = oh * ow * (kh * kw * xp.shape[3] + filters)
    if groups == 1:
        matrix = kernel.reshape(-1, filters)

        def part(batch: slice) -> None:
            for chunk in _chunks(batch, per_sample):
                cols = F.im2col(xp[chunk], (kh, kw), strides, dilation)
                zc = z[chunk].reshape(-1, filters)
                np.matmul(cols, matrix, out=zc)
                if bias is not None:
                    zc += bias
    else:
        fg = filters // groups
        blocks = kernel.reshape(-1, groups, fg).transpose(1, 0, 2)  # (groups, kh * kw * channels/groups, fg)

        def part(batch: slice) -> None:
            for chunk in _chunks(batch, per_sample):
                cols = F.im2col_groups(xp[chunk], (kh, kw), strides, dilation, groups)
                zc = z[chunk].reshape(-1, filters)
                zc.reshape(-1, groups, fg)[...] = np.matmul(cols, blocks).transpose(1, 0, 2)
                if bias is not None:
                    zc += bias

    threads.run(part, threads.parts(n, kernel.size * oh * ow))
    return z.reshape(n, oh, ow, filters)


def convolve_backward(xp: np.ndarray, g: np.ndarray, kernel: np.ndarray, strides: tuple[int, int],
                      dilation: tuple[int, int], groups: int, dkernel: np.ndarray, dbias: np.ndarray | None,
                      input_grad: bool) -> np.ndarray | None:
    r"""Backward pass of :func:`convolve`: writes :math:`\partial L/\partial W` into ``dkernel`` (the kernel's
    shape) and :math:`\partial L/\partial b` into ``dbias`` (when given), and returns
    :math:`\partial L/\partial x_p` (the padded input's shape) when ``input_grad``, else ``None``.

    Notes
    -----
    With :math:`G = \partial L/\partial Z` in the row order of the columns :math:`X_{col}`:
    :math:`\partial L/\partial W = X_{col}^\top G`, :math:`\partial L/\partial b = \sum_{rows} G`, and
    :math:`\partial L/\partial x_p = \mathrm{col2im}(G W^\top)` (computed per kernel tap, :math:`G W_{ij}^\top`,
    so that col2im reads contiguous blocks); per group with groups. Each thread takes a slice of the batch
    and, a few samples at a time, unfolds them again and adds their share of the kernel and bias gradients
    (summed over the threads afterwards), and computes their input gradient.
    """
    n = xp.shape[0]
    kh, kw, cg, filters = kernel.shape
    g = np.ascontiguousarray(g).reshape(n, -1, filters)
    fg = filters // groups
    if groups == 1:
        taps_kernel = kernel.reshape(kh * kw, cg, filters).transpose(0, 2, 1)
    else:  # (kh * kw, groups, fg, channels/groups): tap (i, j) of each group's block, transposed
        taps_kernel = kernel.reshape(kh * kw, cg, groups, fg).transpose(0, 2, 3, 1)
    dxp = np.empty(xp.shape, dtype=g.dtype) if input_grad else None
    per_sample = g.shape[1] * (kh * kw * xp.shape[3] + filters)

    def part(batch: slice) -> tuple[np.ndarray, np.ndarray | None]:
        if groups == 1:
            dk = np.zeros((kh * kw * cg, filters), dtype=g.dtype)
        else:
            dk = np.zeros((groups, kh * kw * cg, fg), dtype=g.dtype)
        for chunk in _chunks(batch, per_sample):
            gc = g[chunk].reshape(-1, filters)
            if groups == 1:
                cols = F.im2col(xp[chunk], (kh, kw), strides, dilation)
                dk += cols.T @ gc
                taps = np.matmul(gc, taps_kernel) if dxp is not None else None
            else:
                cols = F.im2col_groups(xp[chunk], (kh, kw), strides, dilation, groups)
                gg = gc.reshape(-1, groups, fg).transpose(1, 0, 2)  # (groups, rows, fg)
                dk += np.matmul(cols.transpose(0, 2, 1), gg)
                # (kh * kw, groups, rows, channels/groups) -> tap-major (kh * kw, rows, channels)
                taps = np.matmul(gg[None], taps_kernel).transpose(0, 2, 1, 3) if dxp is not None else None
            if dxp is not None:
                F.col2im(taps, (chunk.stop - chunk.start, *xp.shape[1:]), (kh, kw), strides, dilation,
                         out=dxp[chunk])
        return dk, g[batch].sum(axis=(0, 1)) if dbias is not None else None

    sums = threads.run(part, threads.parts(n, kernel.size * g.shape[1]))
    if groups == 1:
        np.sum([s[0] for s in sums], axis=0, out=dkernel.reshape(-1, filters))
    else:
        np.sum([s[0] for s in sums], axis=0, out=dkernel.reshape(-1, groups, fg).transpose(1, 0, 2))
    if dbias is not None:
        np.sum([s[1] for s in sums], axis=0, out=dbias)
    return dxp


@register
class Conv2D(activations.Activated, ImageLayer):
    r"""Two-dimensional convolution (cross-correlation, as in every deep-learning library) over images.

    Parameters
    ----------
    filters : int
        Number of output channels.
    kernel_size : int or (int, int)
        Window height and width.
    strides : int or (int, int)
        Step between windows.
    padding : "valid", "same", int, (int, int) or ((int, int), (int, int))
        ``"valid"`` adds nothing; ``"same"`` adds zeros so that there are ``ceil(size / stride)`` outputs
        (an odd total puts the extra row/column at the bottom/right, as Keras does); an integer ``p``
        or a pair ``(ph, pw)`` adds that many zero rows/columns on each side (PyTorch's ``padding``);
        ``((top, bottom), (left, right))`` adds those amounts (Keras's ``ZeroPadding2D`` nesting, ONNX's
        ``pads``).
    dilation_rate : int or (int, int)
        Gap between kernel taps (1: adjacent pixels).
    activation : str, Activation or None
        Applied to the convolution output; ``None`` means linear.
    groups : int
        Grouped convolution (Keras's and PyTorch's ``groups``): the input channels and the filters are cut
        into ``groups`` equal blocks, and the filters of block ``k`` see the input channels of block ``k``
        only. Both counts must be divisible by it.
    use_bias : bool
    kernel_initializer, bias_initializer : str or callable
        See :mod:`barenet.initializers`; fans are ``kh * kw * in_channels / groups`` and ``kh * kw * filters``
        (as in Keras and PyTorch).
    l2 : float
        Weight penalty :math:`\lambda \sum W^2` added to the loss (kernel only).
    data_format : "channels_last" or "channels_first"
        See ``barenet.layers.conv.ImageLayer``.

    Shapes
    ------
    ``x : (batch, height, width, in_channels)`` -> ``y : (batch, out_height, out_width, filters)``;
    ``kernel : (kh, kw, in_channels / groups, filters)``, ``bias : (filters,)``. Output dtype is the input dtype.

    Notes
    -----
    With :math:`\tilde x` the padded input,

    .. math:: z_{n,p,q,f} = b_f + \sum_{i,j,c} \tilde x_{n,\, p s_h + i d_h,\, q s_w + j d_w,\, c}\, W_{i,j,c,f}

    computed as one matrix product :math:`Z = X_{col} W_{mat}` with ``X_col = im2col(x)`` of shape
    ``(batch * out_h * out_w, kh * kw * in_channels)``. Backward, with :math:`G = \partial L/\partial Z`
    in the same row order: :math:`\partial L/\partial W = X_{col}^\top G`,
    :math:`\partial L/\partial b = \sum_{rows} G`, and :math:`\partial L/\partial x = \mathrm{col2im}(G W^\top)`
    (computed per kernel tap, :math:`G W_{ij}^\top`, so that col2im reads contiguous blocks),
    cropped to remove the padding. The rows of these products are independent per sample, so they are
    computed a few samples at a time (``CHUNK_VALUES``, unfolded again in backward rather than kept)
    and the batch is split across :mod:`barenet.threads` (``convolve``, ``convolve_backward``).
    With groups the sum over :math:`c` runs over filter :math:`f`'s group of channels, and the products
    are batched over the groups.

    For 3x3 kernels on channels-last data two alternatives were measured against im2col and not kept
    (second convolution of ``examples/fashion_cnn.py``, 128 images 14x14x32 -> 64, one thread): adding
    the nine shifted products of the padded, flattened input (no column copy; 27.9 ms against 16.2 ms
    for im2col and its product), and three row-shifted products of width ``3C`` (27.8 ms); on the first
    convolution (one input channel) the shifted products took 83.5 ms against 5.4 ms. Products with an
    inner dimension of ``C`` or ``3C`` run far below BLAS's rate; the column copy costs less than that.
    A compiled direct loop for one input channel was slower still (8.4-12 ms against 5.8-6.8 ms).
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] | Pads = "valid",
        dilation_rate: int | tuple[int, int] = 1,
        activation: str | activations.Activation | None = None,
        *,
        groups: int = 1,
        use_bias: bool = True,
        kernel_initializer: str | initializers.Initializer = "glorot_uniform",
        bias_initializer: str | initializers.Initializer = "zeros",
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters < 1:
            raise ConfigError(f"Conv2D filters must be a positive integer, got {filters!r}")
        self.filters = int(filters)
        self.kernel_size = normalize_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = normalize_pair(strides, "strides", "Conv2D")
        self.dilation_rate = normalize_pair(dilation_rate, "dilation_rate", "Conv2D")
        self.padding = normalize_padding(padding, "Conv2D")
        self.groups = check_groups(groups, self.filters, "Conv2D")
        if l2 < 0:
            raise ConfigError(f"Conv2D l2 must be >= 0, got {l2!r}")
        self.activation = activations.get(activation)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.use_bias = bool(use_bias)
        self.l2 = float(l2)

    def compute_output_shape(self, input_shape):
        h, w, c = self.image_shape(input_shape)
        if c % self.groups:
            raise ShapeError(f"{self.describe()} cuts its input channels into {self.groups} groups, but the input "
                             f"has {c} channels, not a multiple of {self.groups}")
        pads = resolve_padding(self.padding, (h, w), self.kernel_size, self.strides, self.dilation_rate)
        out = [F.conv_output_length(n, k, s, d, sum(p))
               for n, k, s, d, p in zip((h, w), self.kernel_size, self.strides, self.dilation_rate, pads, strict=True)]
        if min(out) < 1:
            raise ShapeError(f"{self.describe()} cannot slide a {self.kernel_size} kernel (dilation "
                             f"{self.dilation_rate}) over {h}x{w} images with padding {self.padding!r}; "
                             f"the output would be {out[0]}x{out[1]}")
        return self.sample_shape(out[0], out[1], self.filters)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        h, w, c = self.image_shape(self.input_shape)
        self._pads = resolve_padding(self.padding, (h, w), self.kernel_size, self.strides, self.dilation_rate)
        kh, kw = self.kernel_size
        fan_in, fan_out = kh * kw * c // self.groups, kh * kw * self.filters
        shape = (kh, kw, c // self.groups, self.filters)
        self.add_param("kernel", self.kernel_initializer(shape, fan_in, fan_out, rng, self.dtype))
        if self.use_bias:
            self.add_param("bias", self.bias_initializer((self.filters,), fan_in, fan_out, rng, self.dtype))
        self.activation.build(self.output_shape, rng, dtype)

    def forward_logits(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        """:math:`z = x \\star W + b`, before the activation; same layout as the input."""
        self.check_input(x)
        xp = F.pad_spatial(self.to_last(x), self._pads)
        if cache is not None:
            cache["xp"] = xp
        bias = self.params["bias"] if self.use_bias else None
        z = convolve(xp, self.params["kernel"], bias, self.strides, self.dilation_rate, self.groups)
        return self.from_last(z)

    def backward_logits(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        """Backward from :math:`\\partial L/\\partial z`, skipping the activation."""
        dxp = convolve_backward(cache["xp"], self.to_last(grad), self.params["kernel"], self.strides,
                                self.dilation_rate, self.groups, self.grads["kernel"], self.grads.get("bias"),
                                cache.input_grad)
        if dxp is None:
            return None
        (top, bottom), (left, right) = self._pads
        dx = dxp[:, top:dxp.shape[1] - bottom, left:dxp.shape[2] - right, :]
        return self.from_last(dx)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": padding_config(self.padding),
            "dilation_rate": list(self.dilation_rate),
            **({"groups": self.groups} if self.groups != 1 else {}),
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "l2": self.l2,
        }

    def __repr__(self) -> str:
        text = f"Conv2D({self.filters}, {self.kernel_size}"
        if self.strides != (1, 1):
            text += f", strides={self.strides}"
        if self.padding != "valid":
            text += f", padding={self.padding!r}"
        if self.dilation_rate != (1, 1):
            text += f", dilation_rate={self.dilation_rate}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.activation.kind != "linear":
            text += f", activation={self.activation.kind!r}"
        return text + ")"
