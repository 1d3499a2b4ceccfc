"""Random number generators. Randomness is always passed in, never taken from NumPy's global state."""

from __future__ import annotations

import numpy as np

Seed = int | np.random.Generator | None


def make_rng(seed: Seed = None) -> np.random.Generator:
    """Return a ``numpy.random.Generator``: a new one from an int seed (or fresh entropy for ``None``),
    or ``seed`` itself when it already is a generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and not isinstance(seed, (int, np.integer)):
        from .errors import ConfigError

        raise ConfigError(f"seed must be an int, a numpy Generator or None, got {type(seed).__name__}")
    return np.random.default_rng(seed)
