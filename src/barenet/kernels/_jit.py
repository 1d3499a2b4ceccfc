"""Whether compiled kernels are used, and the decorator that compiles them.

``BARENET_NUMBA=0`` in the environment forces the NumPy reference forms even where numba is installed
(read once, at import).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

numba = None
if os.environ.get("BARENET_NUMBA", "1") != "0":  # not even imported when switched off: it costs ~60 MB
    try:  # numba is optional: barenet runs, slower, with NumPy alone.
        import numba
    except ImportError:  # pragma: no cover - exercised where numba is absent
        pass

#: True when the compiled forms are in use.
NUMBA_ENABLED: bool = numba is not None


def njit(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any] | None]:
    """``numba.njit(*args, cache=True, nogil=True, **kwargs)`` when compiled kernels are enabled (without
    the GIL, so that :mod:`barenet.threads` runs them on several slices at once).

    Returns a decorator that gives the compiled function, or ``None`` when they are not, so a module
    writes ``fast = njit(...)(kernel)`` and picks ``fast or reference``.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any] | None:
        if not NUMBA_ENABLED:
            return None
        return numba.njit(*args, **{"cache": True, "nogil": True, **kwargs})(function)

    return decorate
