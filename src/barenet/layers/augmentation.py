"""Data augmentation as layers: random changes applied to training batches only."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from .base import register
from .conv import ImageLayer

FLIP_MODES = {"horizontal": (2,), "vertical": (1,), "horizontal_and_vertical": (1, 2)}


@register
class RandomFlip(ImageLayer):
    r"""Mirror each training image with probability 1/2; the identity at inference.

    Placed first in an image network it gives the model a freshly flipped copy of the training set
    on every pass, which regularizes the way more data would, for images whose class survives the
    mirroring. Like :class:`~barenet.layers.Dropout` it draws from the model's generator, so a seeded
    model flips the same images on every run.

    Parameters
    ----------
    mode : "horizontal", "vertical" or "horizontal_and_vertical"
        Left-right mirroring, top-bottom, or each of the two drawn independently.
    data_format : "channels_last" or "channels_first"
        See :class:`~barenet.layers.conv.ImageLayer`.

    Shapes
    ------
    ``(batch, height, width, channels)`` to the same shape and dtype.

    Notes
    -----
    A flip only permutes pixels, :math:`y = P x`, so :math:`\partial L/\partial x = P^\top g = P g`:
    the gradient of a flipped image is flipped back the same way.
    """

    has_training_mode = True

    def __init__(self, mode: str = "horizontal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in FLIP_MODES:
            raise ConfigError(f"RandomFlip mode must be one of {sorted(FLIP_MODES)}, got {mode!r}")
        self.mode = mode

    def compute_output_shape(self, input_shape):
        self.image_shape(input_shape)  # checks that samples are images
        return tuple(input_shape)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        if not training:
            return x
        out = np.array(self.to_last(x))
        flipped = []
        for axis in FLIP_MODES[self.mode]:
            chosen = np.flatnonzero(self.rng.random(len(out)) < 0.5)
            out[chosen] = np.flip(out[chosen], axis=axis)
            flipped.append((axis, chosen))
        if cache is not None:
            cache["flipped"] = flipped
        return self.from_last(out)

    def backward(self, grad, cache):
        flipped = cache.get("flipped")
        if not flipped:
            return grad
        g = np.array(self.to_last(grad))
        for axis, chosen in reversed(flipped):
            g[chosen] = np.flip(g[chosen], axis=axis)
        return self.from_last(g)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


FILL_MODES = ("reflect", "wrap", "constant", "nearest")
INTERPOLATIONS = ("bilinear", "nearest")


def fix_index(index: np.ndarray, size: int, fill_mode: str) -> np.ndarray:
    """Map integer positions outside ``[0, size)`` back into it as ``fill_mode`` extends the input.

    ``"reflect"`` ``(d c b a | a b c d | d c b a)``, ``"wrap"`` ``(a b c d | a b c d | a b c d)``,
    ``"nearest"`` ``(a a a a | a b c d | d d d d)``; ``"constant"`` clips too, its taps outside are then dropped.
    """
    if fill_mode == "wrap":
        return index % size
    if fill_mode == "reflect":
        folded = index % (2 * size)
        return np.where(folded < size, folded, 2 * size - 1 - folded)
    return np.clip(index, 0, size - 1)


def shift_matrices(shifts: np.ndarray, size: int, fill_mode: str, interpolation: str,
                   dtype: Any) -> np.ndarray:
    r"""``(batch, size, size)`` matrices ``A`` that translate one image axis by ``shifts : (batch,)`` pixels.

    Notes
    -----
    Output position :math:`i` reads the input at :math:`s = i - \text{shift}`, Keras's convention (positive
    shifts move the content down or right). ``"nearest"`` takes the pixel :math:`\operatorname{round}(s)`
    (half to even); ``"bilinear"`` takes :math:`\lfloor s \rfloor` with weight :math:`1 - f` and
    :math:`\lfloor s \rfloor + 1` with weight :math:`f = s - \lfloor s \rfloor`. A tap outside the image reads
    the pixel :func:`fix_index` names, or, for ``"constant"``, nothing (its weight goes to the fill value).
    """
    n = len(shifts)
    source = np.arange(size)[None, :] - shifts[:, None]
    if interpolation == "nearest":
        taps = [(np.round(source), np.ones_like(source))]
    else:
        low = np.floor(source)
        taps = [(low, 1.0 - (source - low)), (low + 1, source - low)]
    matrix = np.zeros((n, size, size), dtype=dtype)
    rows = np.broadcast_to(np.arange(n)[:, None], source.shape)
    cols = np.broadcast_to(np.arange(size)[None, :], source.shape)
    for index, weight in taps:
        index = index.astype(np.int64)
        keep = (index >= 0) & (index < size) if fill_mode == "constant" else np.ones(index.shape, dtype=bool)
        np.add.at(matrix, (rows[keep], cols[keep], fix_index(index[keep], size, fill_mode)), weight[keep])
    return matrix


def translate(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill_value: float = 0.0) -> np.ndarray:
    r"""Apply per-sample axis matrices to channels-last images: ``y[n] = A_h[n] x[n] A_w[n]^T`` per channel,
    plus ``fill_value`` times the weight that ``"constant"`` taps outside the image left unassigned.

    ``x : (batch, height, width, channels)``, ``rows : (batch, height, height)``, ``cols : (batch, width, width)``
    (from :func:`shift_matrices`); returns an array of ``x``'s shape and dtype.

    Notes
    -----
    The weights of one output pixel sum to :math:`r_h[i]\, r_w[j]` with :math:`r = A\mathbf 1`; the missing
    :math:`1 - r_h[i]\, r_w[j]` is the share of taps that fall outside and read ``fill_value`` (zero for
    every mode other than ``"constant"``, whose rows sum to one).
    """
    y = np.matmul(cols[:, None], np.matmul(rows, x.reshape(len(x), x.shape[1], -1)).reshape(x.shape))
    if fill_value:
        inside = rows.sum(axis=2)[:, :, None] * cols.sum(axis=2)[:, None, :]
        y += (fill_value * (1 - inside)).astype(x.dtype)[..., None]
    return y


def _factor(value: Any, owner: str, name: str) -> tuple[float, float]:
    """``(lower, upper)`` of a Keras factor: ``f`` for ``(-|f|, |f|)``, or a pair sorted; each in [-1, 1]."""
    pair = (-abs(value), abs(value)) if _number(value) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(_number(v) and -1 <= v <= 1 for v in pair):
        raise ConfigError(f"{owner} {name} must be a number in [-1, 1] or a pair (lower, upper) of them, "
                          f"got {value!r}")
    lower, upper = sorted(float(v) for v in pair)
    return lower, upper


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and bool(np.isfinite(value))


@register
class RandomTranslation(ImageLayer):
    r"""Shift each training image by its own random offset; the identity at inference (Keras's layer).

    Each image moves by :math:`\delta_h = u_h \cdot \text{height}` rows and :math:`\delta_w = u_w \cdot
    \text{width}` columns, with :math:`u_h` and :math:`u_w` drawn uniformly between a factor's bounds
    (positive: down and right) from the model's generator, so a seeded model shifts the same images on
    every run. The pixels uncovered are filled as ``fill_mode`` says.

    Parameters
    ----------
    height_factor, width_factor : float or (float, float)
        Fractions of the height and width: ``f`` draws from ``[-|f|, |f|]``, ``(lower, upper)`` from that
        range; each bound in [-1, 1].
    fill_mode : "reflect", "wrap", "constant" or "nearest"
        How the input is extended beyond its edges: ``(d c b a | a b c d | d c b a)``,
        ``(a b c d | a b c d | a b c d)``, ``(k k k k | a b c d | k k k k)`` with ``k = fill_value``,
        ``(a a a a | a b c d | d d d d)``.
    interpolation : "bilinear" or "nearest"
        ``"bilinear"`` shifts by fractions of a pixel too (Keras's default); ``"nearest"`` rounds each
        shift to a whole number of pixels (half to even), so the pixels are moved, never blended.
    fill_value : float
        The value outside the input for ``fill_mode="constant"``.
    data_format : "channels_last" or "channels_first"
        See :class:`~barenet.layers.conv.ImageLayer`.

    Shapes
    ------
    ``(batch, height, width, channels)`` to the same shape and dtype.

    Notes
    -----
    A translation acts on the rows and the columns separately: :math:`y = A_h x A_w^\top` per channel, with
    per-image matrices from ``shift_matrices`` in this module (plus a constant for ``fill_value``), so the input
    gradient is :math:`\partial L/\partial x = A_h^\top g A_w`. Keras draws a seed of its own (``seed=``);
    barenet's random layers draw from the model's generator instead.
    """

    has_training_mode = True

    def __init__(self, height_factor: float | tuple[float, float], width_factor: float | tuple[float, float],
                 fill_mode: str = "reflect", interpolation: str = "bilinear", fill_value: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.height_bounds = _factor(height_factor, "RandomTranslation", "height_factor")
        self.width_bounds = _factor(width_factor, "RandomTranslation", "width_factor")
        if fill_mode not in FILL_MODES:
            raise ConfigError(f"RandomTranslation fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"RandomTranslation interpolation must be one of {INTERPOLATIONS}, "
                              f"got {interpolation!r}")
        if not _number(fill_value):
            raise ConfigError(f"RandomTranslation fill_value must be a finite number, got {fill_value!r}")
        self.height_factor = float(height_factor) if _number(height_factor) else list(self.height_bounds)
        self.width_factor = float(width_factor) if _number(width_factor) else list(self.width_bounds)
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def compute_output_shape(self, input_shape):
        self.image_shape(input_shape)  # checks that samples are images
        return tuple(input_shape)

    def draw_shifts(self, batch: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel offsets ``(rows, columns)``, each ``(batch,)`` float64, drawn from the layer's generator."""
        rows = self.rng.uniform(*self.height_bounds, batch) * height
        cols = self.rng.uniform(*self.width_bounds, batch) * width
        return rows, cols

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        if not training:
            return x
        images = self.to_last(x)
        n, h, w, _ = images.shape
        dy, dx = self.draw_shifts(n, h, w)
        rows = shift_matrices(dy, h, self.fill_mode, self.interpolation, x.dtype)
        cols = shift_matrices(dx, w, self.fill_mode, self.interpolation, x.dtype)
        if cache is not None and cache.input_grad:
            cache["rows"], cache["cols"] = rows, cols
        fill = self.fill_value if self.fill_mode == "constant" else 0.0
        return self.from_last(translate(np.ascontiguousarray(images), rows, cols, fill))

    def backward(self, grad, cache):
        if not cache.input_grad:
            return None
        if "rows" not in cache:  # inference call: the identity
            return grad
        g = np.ascontiguousarray(self.to_last(grad))
        rows, cols = cache["rows"], cache["cols"]
        return self.from_last(translate(g, rows.transpose(0, 2, 1), cols.transpose(0, 2, 1)))

    def get_config(self):
        return {**super().get_config(), "height_factor": self.height_factor, "width_factor": self.width_factor,
                "fill_mode": self.fill_mode, "interpolation": self.interpolation, "fill_value": self.fill_value}
