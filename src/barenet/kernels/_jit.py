"""Whether compiled kernels are used, and the decorator that compiles them when first called.

``BARENET_NUMBA=0`` in the environment forces the NumPy reference forms even where numba is installed
(read once, at import).

numba, with LLVM under it, takes about 0.3 s and 60 MB of resident memory to import and as much again to load
the first kernel from its disk cache: more than the rest of barenet together. So nothing here imports it:
whether it is installed is asked of the import system (:func:`importlib.util.find_spec`), and :func:`njit`
gives a :class:`LazyKernel` that imports numba and builds the dispatcher when the kernel first runs.
``import barenet``, the command line's ``--help``, ``--version`` and ``summary``, and models that call no
compiled kernel never load numba.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError


def _numba_wanted() -> bool:
    """numba is installed and ``BARENET_NUMBA`` is not ``0`` (without importing numba)."""
    return os.environ.get("BARENET_NUMBA", "1") != "0" and importlib.util.find_spec("numba") is not None


#: True when the compiled forms are in use (numba installed and not switched off); numba itself is
#: imported when the first compiled kernel runs.
NUMBA_ENABLED: bool = _numba_wanted()

# One lock for every module's first load: two threads that start kernels of one module at once build its
# dispatchers once.
_load_lock = threading.RLock()


class LazyKernel:
    """A function compiled with numba (or loaded from numba's disk cache) when it is first called.

    Calling it calls the compiled function with the same arguments. The first call of any lazy kernel of a
    module imports numba and replaces every lazy kernel among that module's globals (the kernel itself, the
    names that alias it, the kernels it calls) by its numba dispatcher: numba resolves the functions a kernel
    calls from its module's globals when it compiles, and needs dispatchers there to call and inline them;
    later calls through the module's names then reach the dispatcher directly. Other references (a dict of
    kernels, a name bound before the load) keep calling through this object.

    Parameters
    ----------
    function : callable
        The kernel's Python source, a function of a module's top level.
    options : dict
        Keyword arguments of ``numba.njit``.
    """

    __slots__ = ("function", "options", "_dispatcher")

    def __init__(self, function: Callable[..., Any], options: dict[str, Any]) -> None:
        self.function = function
        self.options = options
        self._dispatcher: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        dispatcher = self._dispatcher
        if dispatcher is None:
            dispatcher = self.load()
        return dispatcher(*args)

    @property
    def loaded(self) -> bool:
        """Whether numba's dispatcher has been built (the compiled code itself is built or read from the disk
        cache per argument types, at the first call with them)."""
        return self._dispatcher is not None

    def load(self) -> Callable[..., Any]:
        """Build the dispatchers of this kernel's module (see the class notes); returns this kernel's."""
        with _load_lock:
            if self._dispatcher is None:
                namespace = self.function.__globals__
                for name, value in list(namespace.items()):
                    if isinstance(value, LazyKernel):
                        namespace[name] = value._build()
            return self._build()  # also when held elsewhere than in a global (a dict of kernels)

    def _build(self) -> Callable[..., Any]:
        if self._dispatcher is None:
            self._dispatcher = _numba().njit(**self.options)(self.function)
        return self._dispatcher

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "not loaded yet"
        return f"<LazyKernel {self.function.__module__}.{self.function.__qualname__} ({state})>"


def _numba() -> Any:
    """The numba module, imported on first use."""
    try:
        return importlib.import_module("numba")
    except ImportError as exc:
        raise ConfigError(f"numba is installed but does not import ({exc}); reinstall it with "
                          "'pip install \"barenet[fast]\"', or set BARENET_NUMBA=0 to use the NumPy forms") from exc


def njit(**kwargs: Any) -> Callable[[Callable[..., Any]], LazyKernel | None]:
    """``numba.njit(cache=True, nogil=True, **kwargs)`` on first call when compiled kernels are enabled (without
    the GIL, so that :mod:`barenet.threads` runs them on several slices at once).

    Returns a decorator that gives a :class:`LazyKernel`, or ``None`` when compiled kernels are not enabled,
    so a module writes ``fast = njit(...)(kernel)`` and picks ``fast or reference``.
    """
    options = {"cache": True, "nogil": True, **kwargs}

    def decorate(function: Callable[..., Any]) -> LazyKernel | None:
        return LazyKernel(function, options) if NUMBA_ENABLED else None

    return decorate
