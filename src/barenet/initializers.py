r"""Weight initializers.

Each initializer is a callable ``init(shape, fan_in, fan_out, rng, dtype) -> ndarray``.
``fan_in``/``fan_out`` are the number of inputs and outputs feeding one unit (for a Dense
kernel of shape ``(in, out)`` they are ``in`` and ``out``; for a convolution kernel they are
multiplied by the receptive-field size).

Notes
-----
* He (Kaiming) for ReLU-like units keeps the forward variance: :math:`\mathrm{Var}(W) = 2 / n_{in}`.
* Glorot (Xavier) balances forward and backward: :math:`\mathrm{Var}(W) = 2 / (n_{in} + n_{out})`.
* A uniform on :math:`[-a, a]` has variance :math:`a^2/3`, hence the limits below.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .errors import ConfigError

#: The type of an initializer, ``init(shape, fan_in, fan_out, rng, dtype) -> ndarray`` of that shape and dtype.
Initializer = Callable[[tuple[int, ...], int, int, np.random.Generator, np.dtype], np.ndarray]


def he_normal(shape, fan_in, fan_out, rng, dtype):
    """Normal with standard deviation :math:`\\sqrt{2 / n_{in}}`."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def he_uniform(shape, fan_in, fan_out, rng, dtype):
    """Uniform on :math:`\\pm\\sqrt{6 / n_{in}}`."""
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape).astype(dtype)


def glorot_normal(shape, fan_in, fan_out, rng, dtype):
    """Normal with standard deviation :math:`\\sqrt{2 / (n_{in} + n_{out})}`."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))).astype(dtype)


def glorot_uniform(shape, fan_in, fan_out, rng, dtype):
    """Uniform on :math:`\\pm\\sqrt{6 / (n_{in} + n_{out})}`."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


class Normal:
    """Normal with a fixed standard deviation (the tutorials' ``np.random.randn(...) * 0.01``)."""

    def __init__(self, stddev: float = 0.01) -> None:
        self.stddev = float(stddev)

    def __call__(self, shape, fan_in, fan_out, rng, dtype):
        return (rng.standard_normal(shape) * self.stddev).astype(dtype)

    def __repr__(self) -> str:
        return f"Normal(stddev={self.stddev})"


def orthogonal(shape, fan_in, fan_out, rng, dtype):
    r"""A random (semi-)orthogonal matrix, the usual recurrent-kernel initializer.

    Notes
    -----
    The QR factorization :math:`A = QR` of a standard normal :math:`A` gives an orthonormal :math:`Q`;
    multiplying its columns by :math:`\operatorname{sign}(\operatorname{diag} R)` makes it uniformly
    distributed over orthogonal matrices (Saxe et al., 2014). Shapes of more than two axes are treated as
    ``(prod(shape[:-1]), shape[-1])``; for a wide matrix the rows are orthonormal instead of the columns.
    Repeated multiplication by an orthogonal matrix neither grows nor shrinks a vector, which keeps
    gradients through many time steps from exploding or vanishing at the start of training.
    """
    rows, cols = int(np.prod(shape[:-1])), int(shape[-1])
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    if rows < cols:
        q = q.T
    # QR returns Fortran-ordered factors; parameters are C-contiguous so that reshape(-1) is a view
    return np.ascontiguousarray(q.reshape(shape), dtype=dtype)


def uniform_fan_in(shape, fan_in, fan_out, rng, dtype):
    r"""Uniform on :math:`\pm 1/\sqrt{n_{in}}`, variance :math:`1/(3 n_{in})`: PyTorch's default for the weights
    and biases of its linear and convolution layers (used for biases, ``n_in`` is the kernel's)."""
    limit = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-limit, limit, shape).astype(dtype)


def uniform(shape, fan_in, fan_out, rng, dtype):
    """Uniform on :math:`\\pm 0.05` (a common default for embedding tables)."""
    return rng.uniform(-0.05, 0.05, shape).astype(dtype)


def zeros(shape, fan_in, fan_out, rng, dtype):
    """All zeros (the usual bias initializer)."""
    return np.zeros(shape, dtype=dtype)


def ones(shape, fan_in, fan_out, rng, dtype):
    """All ones (the usual batch-normalization scale initializer)."""
    return np.ones(shape, dtype=dtype)


_BY_NAME: dict[str, Initializer] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
    "normal": Normal(0.01),
    "orthogonal": orthogonal,
    "uniform": uniform,
    "uniform_fan_in": uniform_fan_in,
    "zeros": zeros,
    "ones": ones,
}


def get(init: str | Initializer) -> Initializer:
    """Resolve an initializer given by name (``"he_normal"``, ``"normal"`` ...) or as a callable."""
    if callable(init):
        return init
    if isinstance(init, str) and init in _BY_NAME:
        return _BY_NAME[init]
    raise ConfigError(f"unknown initializer {init!r}; expected one of {sorted(_BY_NAME)} or a callable")


def serialize(init: Initializer) -> str | dict:
    """The JSON form of an initializer: its name, or ``{"normal": stddev}``."""
    if isinstance(init, Normal):
        return {"normal": init.stddev}
    for name, fn in _BY_NAME.items():
        if fn is init:
            return name
    raise ConfigError(f"initializer {init!r} is a custom callable and cannot be saved; use a named one")


def deserialize(spec: str | dict) -> Initializer:
    """Inverse of :func:`serialize`."""
    if isinstance(spec, dict) and set(spec) == {"normal"}:
        return Normal(float(spec["normal"]))
    return get(spec)


__all__ = ["Initializer", "Normal", "deserialize", "get", "glorot_normal", "glorot_uniform", "he_normal",
    "he_uniform", "ones", "orthogonal", "serialize", "uniform", "uniform_fan_in", "zeros"]
